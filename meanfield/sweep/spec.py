"""The sweep specification: a sweep file parsed and expanded into its runs (pure: no dask, no files written).

:func:`load_sweep` reads ``base``, ``seeds``, ``[grid]`` and ``[output]``;
:func:`expand` makes one :class:`Job` per grid point and seed, named by a
hash of its full parameters (stable across invocations).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field

from .. import schema
from ..errors import ParameterError
from ..io import config as _config
from ..schema import Derived, Key, Kind

#: Top-level keys of a sweep file (declared in the schema).
SWEEP_KEYS = schema.SWEEP_SECTIONS["sweep"].declare(
    Key("base", Kind("an existing parameter file (relative to the sweep file)"), Derived("required"),
        "the parameter file the grid varies"),
    Key("seeds", Kind("a list of seeds"), Derived("none"), "sets initial.seed, one run per seed"),
    Key("grid", Kind('a table of "section.key" = [values]'), Derived("one run"),
        "the cartesian product of its lists"),
    Key("output", Kind("a table [output] with dir"), Derived("[output] dir"), "where the runs go"))
#: Keys of ``[output]`` in a sweep file.
OUTPUT_KEYS = schema.SWEEP_SECTIONS["sweep.output"].declare(
    Key("dir", Kind("a directory name"), Derived("<sweep file name>-out"),
        "one run file per point, index.csv and index.json"))
#: Statuses a re-run leaves alone.
_DONE = ("finished", "stopped")
#: Status of a grid point whose parameters are rejected (the message column says why).
BAD = "bad parameters"


@dataclass
class Job:
    """One run of a sweep, as plain data (what a worker receives, as a dict).

    Attributes
    ----------
    id : str
        10 hex digits of a hash of the full parameters (base + grid values).
    name : str
        File stem, ``<slug>-<id>``.
    params : dict
        The grid values of this run, ``{"section.key": value}`` (``initial.seed`` for seeds).
    config : dict
        Raw parameters (base file with the grid values set; ``output.path`` = ``path``).
    base_dir : str
        Directory of the base file (relative paths in ``[initial]`` refer to it).
    path : str
        Absolute path of the run's HDF5 file.
    """

    id: str
    name: str
    params: dict
    config: dict
    base_dir: str
    path: str

    def as_dict(self) -> dict:
        """The job as a JSON-able dict: ``id``, ``name``, ``params``, ``config``, ``base_dir``, ``path``."""
        return {"id": self.id, "name": self.name, "params": self.params, "config": self.config,
                "base_dir": self.base_dir, "path": self.path}


@dataclass
class Sweep:
    """A parsed sweep file and its runs.

    Attributes
    ----------
    file : str
        The sweep file.
    base : str
        Absolute path of the base parameter file.
    grid : dict
        ``{"section.key": [values]}`` in file order.
    seeds : list of int or None
    out_dir : str
        Absolute output directory.
    jobs : list of Job
        Cartesian product of the grid values, then seeds (last axis fastest).
    """

    file: str
    base: str
    grid: dict
    seeds: list | None
    out_dir: str
    jobs: list = field(default_factory=list)


@dataclass
class SweepResult:
    """What :func:`run_sweep` returns.

    Attributes
    ----------
    rows : list of dict
        One index row per run, in the order of ``Sweep.jobs``.
    out_dir, index_csv, index_json : str
    """

    rows: list
    out_dir: str
    index_csv: str
    index_json: str

    def count(self, prefix: str, column: str = "status") -> int:
        """Number of rows whose ``column`` starts with ``prefix``."""
        return sum(str(r.get(column, "")).startswith(prefix) for r in self.rows)

    @property
    def ok(self) -> bool:
        """True when every run is finished (or stopped at its wall-time limit)."""
        return all(str(r["status"]).startswith(_DONE) for r in self.rows)


def load_sweep(path) -> Sweep:
    """Read and check a sweep file, expand it into jobs.

    Raises
    ------
    ParameterError
        Naming the sweep file, the key, what was expected and what was found.
    """
    file = os.fspath(path)
    raw = _config.read_toml(file)
    here = os.path.dirname(os.path.abspath(file))
    try:
        for key in raw:
            if key not in SWEEP_KEYS:
                raise ParameterError(key, f"a sweep key among {list(SWEEP_KEYS)}", key)
        base = raw.get("base")
        if not isinstance(base, str) or not base:
            raise ParameterError("base", "a parameter file name (relative to the sweep file)", base)
        base_path = os.path.normpath(os.path.join(here, base))
        if not os.path.isfile(base_path):
            raise ParameterError("base", "an existing parameter file (relative to the sweep file)",
                                 base)
        seeds = _check_seeds(raw.get("seeds"))
        grid = _check_grid(raw.get("grid", {}))
        if seeds is not None and "initial.seed" in grid:
            raise ParameterError("seeds", 'either seeds or grid "initial.seed", not both', seeds)
        out = raw.get("output", {})
        if not isinstance(out, dict):
            raise ParameterError("output", "a table [output] with dir", out)
        for key in out:
            if key not in OUTPUT_KEYS:
                raise ParameterError(f"output.{key}",
                                     f"a key of [output] (valid: {', '.join(OUTPUT_KEYS)})", key)
        default_dir = os.path.splitext(os.path.basename(file))[0] + "-out"
        out_dir = out.get("dir", default_dir)
        if not isinstance(out_dir, str) or not out_dir:
            raise ParameterError("output.dir", "a directory name", out_dir)
        out_dir = os.path.normpath(os.path.join(here, out_dir))
        if os.path.exists(out_dir) and not os.path.isdir(out_dir):
            raise ParameterError("output.dir", "a directory (or a name not taken yet)", out_dir)
        if not os.path.isdir(os.path.dirname(out_dir)):  # as run -o: a typo creates no tree of folders
            raise ParameterError("output.dir", "a directory in an existing folder (only the last "
                                 "level is created)", out_dir)
    except ParameterError as exc:
        raise exc.in_file(file) from None
    base_raw = _config.read_toml(base_path)  # its syntax errors name the base file
    if "cluster" in base_raw or any(str(k).split(".")[0] == "cluster" for k in grid):
        # each run of a sweep computes in one worker: a [cluster] there would start a cluster in a worker
        raise ParameterError("cluster", "no [cluster] section in a sweep's runs (a sweep runs each run in "
                             "one dask worker; give the sweep its scheduler with --scheduler)", "[cluster]",
                             file=base_path if "cluster" in base_raw else file)
    sweep = Sweep(file=file, base=base_path, grid=grid, seeds=seeds, out_dir=out_dir)
    sweep.jobs = expand(base_raw, grid, seeds, out_dir, os.path.dirname(base_path))
    return sweep


def _check_seeds(seeds):
    if seeds is None:
        return None
    if not isinstance(seeds, list) or not seeds:
        raise ParameterError("seeds", "a non-empty list of integers >= 0", seeds)
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            raise ParameterError("seeds", "a non-empty list of integers >= 0", seeds)
    if len(set(seeds)) != len(seeds):
        raise ParameterError("seeds", "seeds without repeats", seeds)
    return list(seeds)


def _check_grid(grid) -> dict:
    if not isinstance(grid, dict):
        raise ParameterError("grid", 'a table [grid] of "section.key" = [values]', grid)
    flat = {}
    for key, values in grid.items():
        # `integrator.name = [...]` without quotes is a nested table in TOML: accept it
        if isinstance(values, dict):
            for sub, v in values.items():
                if isinstance(v, dict):
                    raise ParameterError(f"grid.{key}.{sub}", '"section.key" = [values]', v)
                flat[f"{key}.{sub}"] = v
        else:
            flat[key] = values
    for key, values in flat.items():
        parts = key.split(".")
        if len(parts) == 1 and key in _config.SECTIONS and key != "output":
            # a whole section per grid value: damping = [{schedule = "constant", a = 1.0}, ...]
            if not isinstance(values, list) or not values or \
                    not all(isinstance(v, dict) for v in values):
                raise ParameterError(f"grid.{key}", f"a non-empty list of [{key}] tables", values)
            parts = [key, ""]
        elif len(parts) != 2 or not all(parts):
            raise ParameterError(f"grid.{key}", 'a key "section.key" (e.g. "integrator.h")', key)
        if parts[0] not in _config.SECTIONS:
            raise ParameterError(f"grid.{key}", f"a section among {list(_config.SECTIONS)}",
                                 parts[0])
        if key == "output.path":
            raise ParameterError(f"grid.{key}",
                                 "a parameter other than output.path (set by the sweep)", key)
        if not isinstance(values, list) or not values:
            raise ParameterError(f"grid.{key}", "a non-empty list of values", values)
        canon = [_canonical(v) for v in values]
        if len(set(canon)) != len(canon):
            raise ParameterError(f"grid.{key}", "values without repeats", values)
    return flat


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _slug_part(key: str, value) -> str:
    tail = key.split(".")[-1]
    if isinstance(value, dict):  # a whole section: its values, e.g. "constant_1.0"
        text = "_".join(v if isinstance(v, str) else _canonical(v) for v in value.values())
    else:
        text = value if isinstance(value, str) else f"{tail}{_canonical(value)}"
    text = re.sub(r"[^A-Za-z0-9.+-]+", "_", text).strip("_.")
    return text[:24] or tail


def expand(base_raw: dict, grid: dict, seeds, out_dir: str, base_dir: str) -> list:
    """The cartesian product of ``grid`` values x ``seeds`` as a list of :class:`Job`.

    Parameters
    ----------
    base_raw : dict
        The base parameter file as read (not yet validated).
    grid : dict
        ``{"section.key": [values]}``.
    seeds : list of int or None
    out_dir, base_dir : str
        Absolute output directory; directory of the base file.
    """
    keys = list(grid)
    axes = [grid[k] for k in keys]
    if seeds is not None:
        keys.append("initial.seed")
        axes.append(seeds)
    jobs = []
    for values in itertools.product(*axes):
        params = dict(zip(keys, values))
        config = _merge(base_raw, params)
        ident = hashlib.sha1(_canonical(_identity(config)).encode()).hexdigest()[:10]
        slug = "_".join(_slug_part(k, v) for k, v in params.items())[:80].strip("_") or "run"
        name = f"{slug}-{ident}"
        path = os.path.join(out_dir, name + ".h5")
        if isinstance(config.get("output"), dict):
            config["output"]["path"] = path
        jobs.append(Job(id=ident, name=name, params=params, config=config, base_dir=base_dir,
                        path=path))
    return jobs


def _merge(base_raw: dict, params: dict) -> dict:
    """Base parameters with ``section.key`` values set (a bad section type is left to Run)."""
    config = copy.deepcopy(base_raw)
    for key, value in params.items():
        if "." not in key:  # a whole section
            config[key] = copy.deepcopy(value)
            continue
        section, name = key.split(".")
        body = config.setdefault(section, {})
        if isinstance(body, dict):
            body[name] = copy.deepcopy(value)
    out = config.setdefault("output", {})
    if isinstance(out, dict):  # the schema's default, written out: it is part of a run's identity
        out.setdefault("save", schema.section("output").default("save"))
    return config


def _identity(config: dict) -> dict:
    """What names a run: its parameters without the output path."""
    ident = copy.deepcopy(config)
    if isinstance(ident.get("output"), dict):
        ident["output"].pop("path", None)
    return ident


__all__ = ["BAD", 'Job', 'OUTPUT_KEYS', 'SWEEP_KEYS', 'Sweep', 'SweepResult', 'expand', 'load_sweep']
