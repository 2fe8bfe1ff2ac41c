"""Parameter files: TOML -> a validated, fully resolved configuration dict.

Errors are :class:`~meanfield.errors.ParameterError` naming the file, the key,
what was expected and what was found. The sections and their common keys are
listed in ``SECTIONS``; model-, law- and integrator-specific keys are checked
by the registries that own them.
"""

from __future__ import annotations

import copy
import json
import math
import os
import tomllib

from ..errors import ParameterError, check_real

#: Sections of a parameter file and the keys checked here (None: checked by a registry).
SECTIONS = {
    "model": None,
    "damping": None,
    "integrator": None,
    "initial": None,
    "run": ("t0", "t1", "steps", "oracle_calls", "layers", "save_every", "save_at", "saves_per_decade",
            "stop_clusters", "dtype", "check_every", "max_wall_time"),
    "output": ("path", "save"),
    "diagnostics": ("dissipation", "moment_ode", "cluster_tol", "network"),
    "solver": ("kind", "grid", "domain", "momentum_max"),
    # one run's exact pair passes on a dask cluster (meanfield/cluster.py); checked by Run
    "cluster": ("scheduler", "workers", "threads_per_worker"),
}

#: What ``[output] save`` may list: positions, momenta, the MLP velocity of accelerated blocks, and
#: the state after each attention sub-step of a block (``x_mid``).
SAVE_FIELDS = ("x", "y", "v", "x_mid")

#: What every parameter file must set (the rest has defaults).
REQUIRED = ("integrator.h", "one of run.t1 / run.steps / run.oracle_calls")

#: ``solver.kind``: simulate particles, or solve the mean-field equation (docs/models.md §9).
SOLVER_KINDS = ("particles", "pde")
#: Cells per axis of a pde run when ``solver.grid`` is not given.
DEFAULT_GRID = 512

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


def _number(sec, key, value, *, positive=False, integer=False, minimum=None):
    full = f"{sec}.{key}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParameterError(full, "an integer" if integer else "a number", value)
    check_real(full, value, "an integer" if integer else "a finite number", integer=integer)
    if positive and not value > 0:
        raise ParameterError(full, "a number > 0", value)
    if minimum is not None and value < minimum:
        raise ParameterError(full, f"a number >= {minimum}", value)
    return value


def _resolve_solver(sol: dict) -> None:
    """Check ``[solver]`` in place; a pde run gets the default grid. Particle runs ignore grid keys."""
    kind = sol.setdefault("kind", "particles")
    if kind not in SOLVER_KINDS:
        raise ParameterError("solver.kind", " or ".join(f'"{k}"' for k in SOLVER_KINDS), kind)
    if kind == "pde":
        sol.setdefault("grid", DEFAULT_GRID)
    grid = sol.get("grid")
    if grid is not None:
        cells = grid if isinstance(grid, list) else [grid]
        if not 1 <= len(cells) <= 2 or any(isinstance(c, bool) or not isinstance(c, int) or c < 2
                                           for c in cells):
            raise ParameterError("solver.grid", "cells per axis: an integer >= 2, or [cells in position, "
                                 "cells in momentum] for phase space", grid)
    if "domain" in sol:
        dom = sol["domain"]
        if (not isinstance(dom, list) or len(dom) != 2
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                       for v in dom) or not dom[0] < dom[1]):
            raise ParameterError("solver.domain", "[lo, hi], two finite numbers with lo < hi", dom)
    if "momentum_max" in sol:
        _number("solver", "momentum_max", sol["momentum_max"], positive=True)


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
    """Check ``save_at`` (increasing times in (t0, t1]), ``saves_per_decade`` and ``stop_clusters``."""
    clocks = [k for k in ("save_at", "saves_per_decade") if k in run]
    if len(clocks) > 1 or (clocks and run.get("save_every", 1) != 1):
        raise ParameterError(f"run.{clocks[-1]}", "one save clock: save_every, save_at or saves_per_decade",
                             ", ".join(k for k in ("save_every", *clocks) if k in run))
    if clocks and "t1" not in run:
        raise ParameterError(f"run.{clocks[0]}", "a run bounded by run.t1 (save times need an end time)",
                             "no run.t1")
    if "save_at" in run:
        times = run["save_at"]
        if (not isinstance(times, list) or not times
                or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in times)):
            raise ParameterError("run.save_at", "a non-empty list of times", times)
        if any(not b > a for a, b in zip(times, times[1:])):
            raise ParameterError("run.save_at", "strictly increasing times", times)
        if not (times[0] > run["t0"] and times[-1] <= run["t1"]):
            raise ParameterError("run.save_at", f"times in (t0, t1] = ({run['t0']}, {run['t1']}]",
                                 f"[{times[0]}, ..., {times[-1]}]")
    if "saves_per_decade" in run:
        _number("run", "saves_per_decade", run["saves_per_decade"], integer=True, minimum=1)
        if run["t0"] < 0:
            raise ParameterError("run.saves_per_decade", "a run from t0 >= 0 (times 10^(j/K))", run["t0"])
    if "stop_clusters" in run:
        _number("run", "stop_clusters", run["stop_clusters"], integer=True, minimum=1)


def resolve(raw: dict, file: str | None = None) -> dict:
    """Check section names and the generic keys, fill defaults; returns a new dict.

    Model, schedule, integrator and initial-law keys are validated later by
    their registries (:func:`meanfield.run.Run`).
    """
    try:
        if not isinstance(raw, dict):
            raise ParameterError("(top level)", "a table of sections", type(raw).__name__)
        raw = plain(raw)
        for section, body in raw.items():
            if section not in SECTIONS:
                raise ParameterError(section, f"a section among {list(SECTIONS)}", section)
            if not isinstance(body, dict):
                raise ParameterError(section, "a table [section]", body)
            allowed = SECTIONS[section]
            if allowed is not None:
                for key in body:
                    if key not in allowed:
                        raise ParameterError(f"{section}.{key}",
                                             f"a key of [{section}] (valid: {', '.join(allowed)})", key)
        cfg = {s: dict(raw.get(s, {})) for s in SECTIONS}
        if not cfg["cluster"]:  # optional: a run without it computes in this process
            del cfg["cluster"]
        for s, defaults in (("damping", {"schedule": "none"}), ("diagnostics", {"dissipation": "auto"}),
                            ("output", {"path": "run.h5", "save": ["x", "y"]})):
            for k, v in defaults.items():
                cfg[s].setdefault(k, v)
        cfg["model"].setdefault("name", "bilinear")
        # a network from a weight file runs its forward pass: first order (models/network.py)
        cfg["model"].setdefault("dynamics", "first_order" if "weights" in cfg["model"] else "accelerated")
        if "name" not in cfg["integrator"]:
            cfg["integrator"]["name"] = "exp_euler" if cfg["model"]["dynamics"] == "accelerated" else "euler"
        if not any(raw.values()):  # an empty file: say everything it needs, and where to start
            raise ParameterError("(file)", f"parameters with at least {' and '.join(REQUIRED)} "
                                 "(meanfield init prints a commented template)", "an empty file")
        # h may be absent for adaptive methods (their first step is then chosen): Run checks it
        if "h" in cfg["integrator"]:
            _number("integrator", "h", cfg["integrator"]["h"], positive=True)

        run = cfg["run"]
        run.setdefault("t0", 0.0)
        _number("run", "t0", run["t0"])
        if "layers" in run and not isinstance(run["layers"], bool):
            raise ParameterError("run.layers", "true or false", run["layers"])
        bounds = [k for k in ("t1", "steps", "oracle_calls") if k in run]
        if run.get("layers"):
            bounds.append("layers")
        if len(bounds) != 1:
            raise ParameterError("run.t1/steps/oracle_calls", "exactly one of t1, steps, oracle_calls "
                                 "(or layers = true)", bounds or None)
        if "t1" in run:
            _number("run", "t1", run["t1"])
            if not run["t1"] > run["t0"]:
                raise ParameterError("run.t1", f"t1 > t0 = {run['t0']}", run["t1"])
        if "steps" in run:
            _number("run", "steps", run["steps"], integer=True, minimum=1)
        if "oracle_calls" in run:
            _number("run", "oracle_calls", run["oracle_calls"], integer=True, minimum=1)
        run.setdefault("save_every", 1)
        _number("run", "save_every", run["save_every"], integer=True, minimum=1)
        if "check_every" in run:
            _number("run", "check_every", run["check_every"], integer=True, minimum=1)
        _resolve_clock(run)
        if "max_wall_time" in run:
            _number("run", "max_wall_time", run["max_wall_time"], positive=True)
        run.setdefault("dtype", "float64")
        if run["dtype"] not in ("float64", "float32"):
            raise ParameterError("run.dtype", '"float64" or "float32"', run["dtype"])

        out = cfg["output"]
        if not isinstance(out["path"], str) or not out["path"]:
            raise ParameterError("output.path", "a file name", out["path"])
        save = out["save"]
        if not isinstance(save, list) or any(s not in SAVE_FIELDS for s in save):
            raise ParameterError("output.save", f"a list drawn from {list(SAVE_FIELDS)}", save)
        diss = cfg["diagnostics"]["dissipation"]
        if diss not in ("auto", "step", "save", "off"):
            raise ParameterError("diagnostics.dissipation", '"auto", "step", "save" or "off"', diss)
        _resolve_solver(cfg["solver"])
        for key in ("moment_ode", "network"):
            if not isinstance(cfg["diagnostics"].get(key, False), bool):
                raise ParameterError(f"diagnostics.{key}", "true or false", cfg["diagnostics"][key])
        return cfg
    except ParameterError as exc:
        raise exc.in_file(file) from None
