"""docs/ cannot drift from the code: every accepted key is documented, and nothing stale is.

Also: the README and docs point only to files a user's checkout has.
"""

import os
import re

import pytest

from meanfield.initial import COMMON_KEYS, LAW_KEYS, LAWS, MOMENTA, MOMENTUM_KEYS
from meanfield.integrators import INTEGRATORS
from meanfield.io.config import SECTIONS
from meanfield.models import MODELS
from meanfield.models.mlp import MLP_KEYS
from meanfield.schedules import SCHEDULE_KEYS, SCHEDULES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def accepted_keys() -> set:
    """Every ``section.key`` some registry of the code accepts."""
    keys = {f"model.{k}" for cls in MODELS.values() for k in cls.keys}
    keys |= {f"model.{k}" for k in MLP_KEYS}
    keys |= {"damping.schedule"} | {f"damping.{k}" for ks in SCHEDULE_KEYS.values() for k in ks}
    keys |= {"integrator.name", "integrator.h"}
    keys |= {f"integrator.{k}" for by_kind in INTEGRATORS.values() for cls in by_kind.values()
             for k in cls.options}
    keys |= {f"initial.{k}" for k in COMMON_KEYS}
    keys |= {f"initial.{k}" for ks in LAW_KEYS.values() for k in ks}
    keys |= {f"initial.{k}" for ks in MOMENTUM_KEYS.values() for k in ks}
    for section in ("run", "output", "diagnostics", "solver"):
        keys |= {f"{section}.{k}" for k in SECTIONS[section]}
    return keys


def documented_keys(text) -> set:
    """``section.key`` in the first column of the tables of parameters.md."""
    return set(re.findall(r"^\| `([a-z]+\.[A-Za-z_0-9]+)` \|", text, re.M))


def test_parameters_md_lists_every_key_and_no_other():
    text = read("docs", "parameters.md")
    doc, code = documented_keys(text), accepted_keys()
    assert not code - doc, f"keys the code accepts but docs/parameters.md does not list: {sorted(code - doc)}"
    assert not doc - code, f"keys docs/parameters.md lists but the code rejects: {sorted(doc - code)}"


def test_parameters_md_names_every_choice():
    text = read("docs", "parameters.md")
    names = set(LAWS) | set(MOMENTA) | set(SCHEDULES) | set(INTEGRATORS) | set(MODELS)
    missing = {n for n in names if f"`{n}`" not in text}
    assert not missing, missing


@pytest.mark.parametrize("path", ["README.md", "docs/models.md", "docs/parameters.md",
                                  "docs/file-format.md"])
def test_links_point_into_the_checkout(path):
    text = read(path)
    assert "shared/" not in text and "SPEC §" not in text and "SPEC.md" not in text
    base = os.path.dirname(os.path.join(ROOT, path))
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if target.startswith("http"):
            continue
        assert os.path.exists(os.path.join(base, target)), f"{path} links to missing {target}"


def test_models_md_covers_every_model_and_integrator():
    text = read("docs", "models.md")
    for name in list(MODELS) + list(INTEGRATORS) + list(SCHEDULES):
        assert name in text, name
    for scheme in ("post_ln", "pre_ln", "peri_ln", "causal"):
        assert scheme in text


def test_exit_statuses_documented():
    for path in ("README.md", "docs/file-format.md"):
        text = read(path)
        for status in ("0", "1", "2", "130"):
            assert re.search(rf"\b{status}\b", text), (path, status)
    assert "130" in read("README.md").split("## Python API")[0]  # in the command-line section
