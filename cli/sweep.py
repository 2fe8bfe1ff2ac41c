"""``meanfield sweep GRID.toml``: a parameter grid x seeds on dask.distributed.

Kept out of ``main.py``, which registers it; the error translation both use
lives in :mod:`._common`.
"""

from __future__ import annotations

import json
import sys

import click

from ._common import guard, interrupt_message, interrupt_status


class _Bar:
    """Progress over runs: a click bar on stderr naming the last run done."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.bar = None

    def __call__(self, done, total, row):
        if not self.enabled:
            return
        if self.bar is None:
            self.bar = click.progressbar(length=total, label="sweep", file=sys.stderr,
                                         show_pos=True, show_eta=True,
                                         item_show_func=lambda r: r)
            self.bar.__enter__()
        self.bar.update(1, f"{row['file']} {row['status'][:30]} ({row['action']})")

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@click.command()
@click.argument("grid", type=click.Path(dir_okay=False))
@click.option("--scheduler", metavar="ADDRESS", default=None,
              help="Address of a running dask scheduler, e.g. tcp://host:8786 "
                   "(default: a local cluster on this machine).")
@click.option("--workers", type=int, default=None,
              help="Worker processes of the local cluster (default: all cores).")
@click.option("--threads", type=int, default=None,
              help="Numba threads per run (default: cores / worker processes).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on when stderr is a terminal).")
@click.option("--overwrite", is_flag=True, help="Run finished points again, replacing their files.")
@guard
def sweep(grid, scheduler, workers, threads, progress, overwrite):
    """Run a parameter grid x seeds (GRID.toml) on dask.distributed.

    Writes one HDF5 file per run and index.csv / index.json into the output
    directory. Running the same command again skips finished runs, continues
    interrupted or killed ones from their checkpoint and restarts the rest.
    Exit status: 0 all runs finished; 2 a bad sweep file or bad grid points
    (reported, the other points run); 1 runs that failed or were lost.
    """
    from meanfield.errors import ParameterError
    from meanfield.sweep import BAD, load_sweep, run_sweep

    if scheduler is not None and workers is not None:
        raise ParameterError("--workers", "no --workers with --scheduler (the cluster has its own)",
                             workers)
    sw = load_sweep(grid)
    if progress is None:
        progress = sys.stderr.isatty()
    bar = _Bar(progress)
    try:
        res = run_sweep(sw, scheduler=scheduler, workers=workers, threads=threads, progress=bar,
                        overwrite=overwrite)
    except KeyboardInterrupt as exc:
        bar.close()
        by = interrupt_message(exc).removeprefix("interrupted")  # " by SIGTERM"; Ctrl-C: nothing
        click.echo(f"meanfield: sweep interrupted{by}; index written to {sw.out_dir} "
                   "(run the same command again to continue)", err=True)
        sys.exit(interrupt_status(exc))
    finally:
        bar.close()
    n = len(res.rows)
    done = [r for r in res.rows if str(r["status"]).startswith(("finished", "stopped"))]
    bad = [r for r in res.rows if r["status"] == BAD]
    rest = [r for r in res.rows if r not in done and r not in bad]
    actions = {a: res.count(a, "action")
               for a in ("ran", "resumed", "restarted", "rerun", "skipped")}
    did = ", ".join(f"{v} {k}" for k, v in actions.items() if v) or "nothing run"
    click.echo(f"sweep: {n} runs ({did}): {len(done)} finished, {len(bad)} with bad parameters, "
               f"{len(rest)} failed or not done; index: {res.index_csv}")
    for r in (*bad, *rest):
        why = f"{r['status']}: {r['message']}" if r.get("message") else r["status"]
        point = ", ".join(f"{k}={json.dumps(v)}" for k, v in r["params"].items()) or r["file"]
        click.echo(f"meanfield: {point}: {' '.join(why.split())}", err=True)
    if bad:
        sys.exit(2)
    if rest:
        sys.exit(1)
