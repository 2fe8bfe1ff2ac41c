"""Parameter files: TOML -> a validated, fully resolved configuration dict.

Errors are :class:`~meanfield.errors.ParameterError` naming the file, the key,
what was expected and what was found. The sections and their common keys are
listed in ``SECTIONS``; model-, law- and integrator-specific keys are checked
by the registries that own them.
"""

from __future__ import annotations

import copy
import json
import os
import tomllib

from .. import schema
from ..errors import ParameterError, is_real
from ..models._params import MODEL
from ..schema import MISSING, Checked, Derived, Flag, Key, Number, OneOf, Real

#: What ``[output] save`` may list: positions, momenta, the MLP velocity of accelerated blocks, and
#: the state after each attention sub-step of a block (``x_mid``).
SAVE_FIELDS = ("x", "y", "v", "x_mid")

#: ``solver.kind``: simulate particles, or solve the mean-field equation (docs/models.md §9).
SOLVER_KINDS = ("particles", "pde")
#: Cells per axis of a pde run when ``solver.grid`` is not given.
DEFAULT_GRID = 512


def _is_grid(v) -> bool:
    cells = v if isinstance(v, list) else [v]
    return 1 <= len(cells) <= 2 and all(is_real(c, integer=True) and c >= 2 for c in cells)


def _is_domain(v) -> bool:
    return isinstance(v, list) and len(v) == 2 and all(is_real(x) for x in v) and v[0] < v[1]


_COUNT = Number(integer=True, minimum=1)
_AT_LEAST_ONE = Real("an integer >= 1", lambda v: v >= 1, integer=True)
schema.section("run").declare(
    Key("t0", Number(), 0.0, "start time (nesterov damping needs t0 > 0)", "time"),
    Key("t1", Number(), MISSING, "end time (exactly one of t1, steps, oracle_calls, layers)", "time",
        resumable=True),
    Key("steps", _COUNT, MISSING, "number of steps instead of t1", resumable=True),
    Key("oracle_calls", _COUNT, MISSING, "budget of field evaluations instead of t1", resumable=True),
    Key("layers", Flag(), MISSING, "one pass through per-layer weights: t1 = t0 + L", resumable=True),
    Key("save_every", _COUNT, 1, "steps between saves (the first and last state are always saved)",
        resumable=True),
    Key("save_at", Checked("a non-empty list of times", lambda v: isinstance(v, list) and bool(v) and not any(
        isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)), MISSING,
        "explicit save times in (t0, t1], instead of save_every", "time", resumable=True),
    Key("saves_per_decade", _COUNT, MISSING, "a logarithmic save clock t = 10^(j/K), instead of save_every",
        resumable=True),
    Key("stop_clusters", _COUNT, MISSING, "sphere particle runs: stop when n_clusters <= this",
        resumable=True),
    Key("dtype", OneOf(("float64", "float32")), "float64", "floating type of the state"),
    Key("check_every", _COUNT, MISSING, "steps between NaN / blow-up checks (default: every step)",
        resumable=True),
    Key("max_wall_time", Number(positive=True), MISSING, "seconds; then the run stops cleanly", "s",
        resumable=True),
)
schema.section("output").declare(
    Key("path", Checked("a file name", lambda v: isinstance(v, str) and bool(v)), "run.h5",
        "the HDF5 file (-o on the command line)"),
    Key("save", Checked(f"a list drawn from {list(SAVE_FIELDS)}",
                        lambda v: isinstance(v, list) and all(s in SAVE_FIELDS for s in v)), ["x", "y"],
        "trajectories to store; diagnostics are always stored"),
)
schema.section("diagnostics").declare(
    Key("dissipation", OneOf(("auto", "step", "save", "off")), "auto",
        "residual of dH/dt = -2 alpha K: every step, at saves, off, or auto"),
    Key("moment_ode", Flag(), False, "solve the closed moment ODE alongside (bilinear, gaussian-type laws)"),
    Key("cluster_tol", Real("a number in (0, 2)", lambda v: 0 < v < 2), Derived("1e-3"),
        "clusters: <theta_i, theta_j> > 1 - cluster_tol (sphere models, networks)"),
    Key("network", Flag(), Derived("true"), "full per-head network diagnostics at every save (networks)"),
)
schema.section("solver").declare(
    Key("kind", OneOf(SOLVER_KINDS), "particles", "simulate particles, or solve the mean-field equation"),
    Key("grid", Checked("cells per axis: an integer >= 2, or [cells in position, cells in momentum] for "
                        "phase space", _is_grid), Derived(f"{DEFAULT_GRID} (pde runs)"),
        "cells per axis of a pde run"),
    Key("domain", Checked("[lo, hi], two finite numbers with lo < hi", _is_domain), MISSING,
        "the grid's extent in position (default: from the initial law)"),
    Key("momentum_max", Number(positive=True), MISSING, "the phase-space grid's momentum extent |y| <= this"),
)
schema.section("cluster").declare(
    # resumable: the sharded passes give the same bits on any cluster (a resume may move a run)
    Key("scheduler", Checked('"local" or the address of a running dask scheduler ("tcp://host:8786")',
                             lambda v: isinstance(v, str) and (v == "local" or "://" in v)), "local",
        '"local" (a LocalCluster) or "tcp://host:8786"', resumable=True),
    Key("workers", _AT_LEAST_ONE, Derived("all cores"), "local worker processes", resumable=True),
    Key("threads_per_worker", _AT_LEAST_ONE, 1, "threads of each local worker", resumable=True),
)

#: Sections of a parameter file -> the keys checked here (None: checked by a registry).
SECTIONS = {name: (None if sec.choice else sec.keys_of()) for name, sec in schema.SECTIONS.items()}

#: What every parameter file must set (the rest has defaults).
REQUIRED = ("integrator.h", "one of run.t1 / run.steps / run.oracle_calls")

#: The built-in default example: bilinear model, convex potential, accelerated (nesterov).
DEFAULT = {
    "model": {
        "name": "bilinear",
        "dynamics": "accelerated",
        "d": 3,
        "A": "identity",
        "Q": [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]],
        "m": [1.0, -0.5, 0.25],
    },
    "damping": {"schedule": "nesterov", "r": 3.0},
    "integrator": {"name": "exp_euler", "h": 0.01},
    "initial": {
        "law": "gaussian",
        "n": 2000,
        "mean": [0.5, 0.0, 0.0],
        "cov": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "momentum": "affine",
        "S": [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]],
        "b": [0.0, 0.0, 0.0],
        "seed": 0,
    },
    "run": {"t0": 1.0, "t1": 61.0, "save_every": 10, "dtype": "float64"},
    "output": {"path": "run.h5", "save": ["x", "y"]},
    "diagnostics": {"dissipation": "auto"},
}


def parse_value(text: str):
    """Parse an override value as TOML (numbers, booleans, lists, strings); bare words are strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(raw: dict, overrides, choices=None) -> dict:
    """Apply ``section.key=value`` and ``section={...}`` strings to a raw config (returns a new dict).

    Parameters
    ----------
    raw : dict
        Sections as read from a parameter file (not changed).
    overrides : sequence of str, or dict
        ``section.key=value`` sets one key (a dict ``{"section.key": value}`` gives values as
        they are); ``section={key = value, ...}`` (a TOML inline
        table) replaces the whole section, as a sweep's grid does.
    choices : dict or None
        ``"section.key" -> keys(value)`` for keys that choose a variant (``damping.schedule``,
        ``initial.law``, ...): ``keys(value)`` is the tuple of keys that variant takes (None
        for a value that is no variant). An
        override switching a choice drops the keys of the old variant that the new one does
        not take and no override sets, and says which in one warning.

    Warns
    -----
    UserWarning
        Naming the keys a switched choice dropped.
    """
    import warnings

    out = copy.deepcopy(raw)
    before = copy.deepcopy(raw)
    replaced, assigned = set(), []
    for item in override_items(overrides):
        if isinstance(item, tuple):  # from a dict: the value is given, not TOML text
            path, value = item
            item = f"{path}={value!r}"
        elif "=" not in item:
            raise ParameterError("--set", "section.key=value", item)
        else:
            path, text = item.split("=", 1)
            value = parse_value(text.strip())
        parts = str(path).strip().split(".")
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise ParameterError("--set", "section.key=value (e.g. integrator.h=0.01) or "
                                 "section={key = value, ...}", item)
        section = parts[0]
        if section not in SECTIONS:
            raise ParameterError(f"--set {section}", f"a section among {list(SECTIONS)}", section)
        if len(parts) == 1:
            if not isinstance(value, dict):
                raise ParameterError(f"--set {section}", f"a TOML inline table replacing [{section}] "
                                     '(e.g. damping={schedule = "constant", a = 1.0}) or section.key=value',
                                     value)
            out[section] = value
            replaced.add(section)
            continue
        out.setdefault(section, {})[parts[1]] = value
        assigned.append((section, parts[1], item))
    set_keys = {(s, k) for s, k, _ in assigned}
    for section, key, item in assigned:
        keys_of = (choices or {}).get(f"{section}.{key}")
        old = before.get(section, {}).get(key) if isinstance(before.get(section), dict) else None
        new = out[section].get(key)
        if keys_of is None or section in replaced or old is None or old == new:
            continue
        new_keys = keys_of(new)
        if new_keys is None:  # not a valid choice: its own error says so, nothing is dropped
            continue
        dropped = [k for k in keys_of(old) or () if k not in new_keys and k in out[section]
                   and (section, k) not in set_keys]
        for k in dropped:
            del out[section][k]
        if dropped:
            warnings.warn(f"--set {item.strip()} drops {', '.join(f'{section}.{k}' for k in dropped)} "
                          f"(keys of {section}.{key} = {json.dumps(old)})", UserWarning, stacklevel=2)
    return out


def override_items(overrides) -> list:
    """Overrides as a list: ``"section.key=value"`` strings, or ``(path, value)`` pairs of a dict.

    A dict (``{"run.t1": 5.0}``, the Python API's form) gives its values as they are;
    strings are TOML text (the command line's ``--set``).
    """
    if isinstance(overrides, dict):
        return list(overrides.items())
    if isinstance(overrides, str):  # one override, not a sequence of characters
        return [overrides]
    return list(overrides or ())


def read_toml(path: str) -> dict:
    """Read a TOML file; syntax errors become a one-line ParameterError."""
    if not os.path.exists(path):
        raise ParameterError("(file)", "an existing parameter file", str(path))
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ParameterError("(syntax)", "valid TOML", str(exc), file=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ParameterError("(file)", "a readable UTF-8 TOML file", str(exc), file=str(path)) from None


def plain(value):
    """``value`` with numpy scalars and arrays turned into Python numbers and lists (recursively).

    A dict built in Python often holds ``np.int64(50)`` or an array; TOML never does, and
    the checks (an integer, a list of numbers) are written for TOML's types.
    """
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__ == "numpy":
        import numpy as np

        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()  # bool_ -> bool, integer -> int, floating -> float, arrays -> lists
    return value


def _resolve_clock(run: dict) -> None:
    """Check that ``save_at`` (times in (t0, t1]) and ``saves_per_decade`` fit the run's times."""
    clocks = [k for k in ("save_at", "saves_per_decade") if k in run]
    if len(clocks) > 1 or (clocks and run["save_every"] != 1):
        raise ParameterError(f"run.{clocks[-1]}", "one save clock: save_every, save_at or saves_per_decade",
                             ", ".join(k for k in ("save_every", *clocks) if k in run))
    if clocks and "t1" not in run:
        raise ParameterError(f"run.{clocks[0]}", "a run bounded by run.t1 (save times need an end time)",
                             "no run.t1")
    if "save_at" in run:
        times = run["save_at"]
        if any(not b > a for a, b in zip(times, times[1:])):
            raise ParameterError("run.save_at", "strictly increasing times", times)
        if not (times[0] > run["t0"] and times[-1] <= run["t1"]):
            raise ParameterError("run.save_at", f"times in (t0, t1] = ({run['t0']}, {run['t1']}]",
                                 f"[{times[0]}, ..., {times[-1]}]")
    if "saves_per_decade" in run and run["t0"] < 0:
        raise ParameterError("run.saves_per_decade", "a run from t0 >= 0 (times 10^(j/K))", run["t0"])


def _resolve_run(run: dict) -> None:
    """The rules of ``[run]`` that tie keys together (each value is checked by the schema)."""
    bounds = [k for k in ("t1", "steps", "oracle_calls") if k in run]
    if run.get("layers"):
        bounds.append("layers")
    if len(bounds) != 1:
        raise ParameterError("run.t1/steps/oracle_calls", "exactly one of t1, steps, oracle_calls "
                             "(or layers = true)", bounds or None)
    if "t1" in run and not run["t1"] > run["t0"]:
        raise ParameterError("run.t1", f"t1 > t0 = {run['t0']}", run["t1"])
    _resolve_clock(run)


#: Sections whose keys the schema checks here (the others by their registries: model, law, ...).
GENERIC = ("run", "output", "diagnostics", "solver", "cluster")


def resolve(raw: dict, file: str | None = None) -> dict:
    """Check section names and the generic sections' keys, fill their defaults; returns a new dict.

    The generic sections (:data:`GENERIC`) are checked against :mod:`meanfield.schema`;
    model, schedule, integrator and initial-law keys are validated later by their
    registries (:func:`meanfield.run.Run`), against the same schema.
    """
    try:
        if not isinstance(raw, dict):
            raise ParameterError("(top level)", "a table of sections", type(raw).__name__)
        raw = plain(raw)
        for name, body in raw.items():
            if name not in SECTIONS:
                raise ParameterError(name, f"a section among {list(SECTIONS)}", name)
            if not isinstance(body, dict):
                raise ParameterError(name, "a table [section]", body)
            if name in GENERIC:
                schema.section(name).check_keys(body)
        cfg = {s: dict(raw.get(s, {})) for s in SECTIONS}
        if not cfg["cluster"]:  # optional: a run without it computes in this process
            del cfg["cluster"]
        cfg["damping"].setdefault("schedule", schema.section("damping").default("schedule"))
        model = cfg["model"]
        model.setdefault("name", MODEL.default("name"))
        # a network from a weight file runs its forward pass: first order (models/network.py)
        model.setdefault("dynamics", MODEL.default("dynamics", "network" if "weights" in model else model["name"]))
        if "name" not in cfg["integrator"]:
            cfg["integrator"]["name"] = "exp_euler" if cfg["model"]["dynamics"] == "accelerated" else "euler"
        if not any(raw.values()):  # an empty file: say everything it needs, and where to start
            raise ParameterError("(file)", f"parameters with at least {' and '.join(REQUIRED)} "
                                 "(meanfield init prints a commented template)", "an empty file")
        # h may be absent for adaptive methods (their first step is then chosen): Run checks it
        if "h" in cfg["integrator"]:
            schema.section("integrator").check({"h": cfg["integrator"]["h"]})
        for name in GENERIC:
            if name in cfg:
                sec = schema.section(name)
                sec.check(cfg[name])
                if name != "cluster":  # ClusterSpec fills these: a remote scheduler takes no worker counts
                    for k, v in sec.defaults().items():
                        cfg[name].setdefault(k, v)
        _resolve_run(cfg["run"])
        if cfg["solver"]["kind"] == "pde":
            cfg["solver"].setdefault("grid", DEFAULT_GRID)
        return cfg
    except ParameterError as exc:
        raise exc.in_file(file) from None
