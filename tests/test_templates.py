"""``meanfield init`` templates: they run, their energy stays finite and bounded, they list every option.

A template is what users copy, so each one is run as printed (only ``n``
reduced to keep the suite fast; the models are mean-field, so the behaviour
does not depend on n), accelerated and first-order.
"""

import re
import tomllib

import numpy as np
import pytest
from click.testing import CliRunner
from meanfield_cli.main import cli
from meanfield_cli.templates import TEMPLATES

import meanfield
from meanfield.initial import LAWS, MOMENTA
from meanfield.integrators import names_for
from meanfield.io.config import SECTIONS
from meanfield.models import MODELS
from meanfield.schedules import SCHEDULES

SPHERE_LAWS = {"sphere_uniform", "equiangular", "von_mises"}  # laws on the sphere (von_mises: the circle)


def _printed(model):
    res = CliRunner().invoke(cli, ["init", "--model", model])
    assert res.exit_code == 0, res.output
    assert res.output == TEMPLATES[model]
    return res.output


def _variant(model, dynamics):
    cfg = tomllib.loads(_printed(model))
    cfg["initial"]["n"] = 200
    if cfg["model"]["dynamics"] != dynamics:
        cfg["model"]["dynamics"] = dynamics
        if dynamics == "first_order":
            cfg["integrator"]["name"] = "rk4" if model == "sphere" else "euler"
            cfg["damping"] = {"schedule": "none"}
            cfg["initial"] = {k: v for k, v in cfg["initial"].items()
                              if k not in ("momentum", "S", "b", "momentum_scale")}
        else:
            cfg["integrator"]["name"] = "exp_euler"
            cfg["damping"] = {"schedule": "constant", "a": 1.0}
    return cfg


@pytest.mark.parametrize("dynamics", ["accelerated", "first_order"])
@pytest.mark.parametrize("model", sorted(TEMPLATES))
def test_template_runs_and_energy_stays_bounded(model, dynamics, one_thread):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a template must not need a warning
        res = meanfield.Run(_variant(model, dynamics)).simulate()
    E = np.asarray(res["energy"])
    assert res.status == "finished"
    assert np.all(np.isfinite(E))
    E0 = E[0]
    scale = 1.0 + abs(E0)
    # damped or gradient dynamics: the energy goes down (up to discretization error) and settles
    assert E[-1] < E0
    assert E.max() <= E0 + 1e-3 * scale
    assert E.min() >= E0 - 20.0 * scale, f"energy ran away: {E.min():.3g} from {E0:.3g}"
    late = E[len(E) * 3 // 4:]
    assert np.ptp(late) <= 0.1 * (E0 - E[-1]), "energy still moving a lot at the end"
    assert np.abs(res.x).max() < 100.0
    if res.y is not None:
        assert np.abs(res.y).max() < 100.0


@pytest.mark.parametrize("model", sorted(TEMPLATES))
def test_template_lists_every_option(model):
    text = _printed(model)
    words = set(re.findall(r"[A-Za-z_0-9]+", text))
    names = set(names_for("first_order")) | set(names_for("accelerated"))
    missing = names - words
    assert not missing, f"integrators missing from the {model} template: {missing}"
    assert not set(SCHEDULES) - words
    laws = SPHERE_LAWS | {"file"} if model == "sphere" else set(LAWS) - SPHERE_LAWS
    if model == "bilinear":  # tokens embed ids by a network's weight file (softmax with model.weights)
        laws -= {"tokens"}
    assert not laws - words, laws - words
    assert not set(MOMENTA) - words - ({"affine"} if model == "sphere" else set())
    assert not set(MODELS[model].keys) - words, set(MODELS[model].keys) - words
    for section in ("run", "output", "diagnostics"):
        keys = set(SECTIONS[section]) - ({"cluster_tol"} if model != "sphere" else set())
        keys -= {"network"} if model != "softmax" else set()  # networks from weights: the softmax model
        keys -= {"moment_ode"} if model != "bilinear" else set()
        assert not keys - words, (section, keys - words)
