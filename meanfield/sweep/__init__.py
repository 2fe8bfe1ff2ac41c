"""Parameter sweeps: a base parameter file x a grid x seeds, run on dask.distributed.

A sweep file (TOML, docs/file-format.md)::

    base = "params.toml"              # relative to the sweep file
    seeds = [0, 1, 2]                 # optional: overrides initial.seed
    [grid]                            # cartesian product of the listed values
    "integrator.name" = ["exp_euler", "kick_drift"]
    "damping.schedule" = ["constant", "nesterov"]
    # or a whole section per value (each schedule with its own keys):
    # damping = [{schedule = "constant", a = 1.0}, {schedule = "nesterov", r = 3.0}]
    [output]
    dir = "sweep-out"                 # relative to the sweep file

expands into one run per grid point and seed. Each run writes
``DIR/<slug>-<id>.h5``, where ``id`` is a hash of the run's full parameters
(so the name is stable across invocations and changes when the base file
does) and ``slug`` lists the grid values. ``DIR/index.csv`` and
``DIR/index.json`` list every run: its grid values, status, what this
invocation did with it, final diagnostics and file.

Running a sweep again skips runs whose file says "finished" (or stopped at
its wall-time limit), continues interrupted or killed runs from their
checkpoint, and restarts runs that cannot be continued. Runs are built inside
the workers from plain dicts; a grid point with bad parameters is reported in
the index with its one-line message and the others run. A worker process
that dies takes only its own run with it: the scheduler gives the run to
another worker, which continues it from its checkpoint.

Paths inside ``[initial]`` (``path``, ``momentum_path``) are relative to
the base file, as for ``meanfield run base.toml``. With ``--scheduler``,
the output directory must be visible to the workers at the same path.


The package is split by job: :mod:`.spec` (the sweep file and its runs, pure),
:mod:`.job` (one run in a worker), :mod:`.executor` (dask), :mod:`.index` (the index files).
"""

from __future__ import annotations

from .spec import BAD, OUTPUT_KEYS, SWEEP_KEYS, Job, Sweep, SweepResult, expand, load_sweep


def __getattr__(name):
    """``run_sweep`` and ``run_job`` import dask.distributed: only when asked for (the spec does not need it)."""
    if name == "run_sweep":
        from .executor import run_sweep

        return run_sweep
    if name == "run_job":
        from .job import run_job

        return run_job
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BAD", "Job", "OUTPUT_KEYS", "SWEEP_KEYS", "Sweep", "SweepResult", "expand", "load_sweep", "run_job",
           "run_sweep"]
