"""The ``meanfield`` command line: a thin layer over :mod:`meanfield`'s Python API.

Exit status: 0 success, 2 bad input (one line naming file, key, expected,
found), 1 a run that failed numerically (NaN / blow-up, with step and time),
128 + signal number when stopped by Ctrl-C (130), SIGTERM (143) or SIGHUP
(129). Shared helpers live in :mod:`._common`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import click
import numpy as np

from meanfield import schema
from meanfield.errors import ParameterError
from meanfield.io.reader import grid_axes
from meanfield.io.runfile import check_output_path

from ._common import guard, handle_stop_signals, load_run
from .animate import animate as _animate
from .sweep import sweep as _sweep
from .templates import TEMPLATES


def _resumable_keys() -> str:
    """The keys --resume may change (the schema's), each section named once: ``run.t1, steps, ...``."""
    out, seen = [], set()
    for full in schema.resumable():
        sec, key = full.split(".", 1)
        out.append(key if sec in seen else full)
        seen.add(sec)
    return ", ".join(out)


class _Group(click.Group):
    """The command group, with click's own usage errors also reduced to one line."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `meanfield` (click >= 8.2): the help
                click.echo(exc.ctx.get_help())
                sys.exit(0)
            hint = ""
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                hint = f" (see {exc.ctx.command_path} --help)"
            msg = " ".join(exc.format_message().split())
            click.echo(f"meanfield: error: {msg}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("meanfield: aborted", err=True)
            sys.exit(130)
        sys.exit(0)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="meanfield")
def cli():
    """meanfield: attention as an interacting particle system.

    Simulate classical attention flows and their accelerated (damped
    Hamiltonian) counterparts; results go to HDF5 files.
    """


def _set_threads(threads):
    if threads is not None:
        import numba

        from meanfield._threads import pin

        if threads < 1 or threads > numba.config.NUMBA_NUM_THREADS:
            raise ParameterError(
                "--threads", f"an integer in 1..{numba.config.NUMBA_NUM_THREADS}", threads
            )
        pin(threads)  # a fixed count: the loop no longer adapts it to the machine's load


class _Progress:
    """A click progress bar driven by the loop's ``progress(done, total)`` callback.

    Into a log (stderr not a terminal, e.g. a batch job's) it writes a line instead,
    at the first step, then at most every :attr:`LOG_INTERVAL` seconds, and at the end.
    """

    #: Seconds between progress lines in a log.
    LOG_INTERVAL = 10.0

    def __init__(self, enabled: bool, label: str):
        self.enabled = enabled
        self.label = label
        self.bar = None
        self.done = 0
        self.log = enabled and not sys.stderr.isatty()
        self.start = self.last_line = None
        #: What ``done`` counts: "step", or per mille of "time" / "log time" (adaptive steps, log clocks).
        self.unit = "step"
        self.t = None

    def at_time(self, t):
        """The loop's time at each report."""
        self.t = t

    def _line(self, done, total):
        import time

        now = time.monotonic()
        if self.start is None:
            self.start = now
        if done < total and self.last_line is not None and now - self.last_line < self.LOG_INTERVAL:
            return
        self.last_line = now
        spent = now - self.start
        left = f", about {spent * (total - done) / done:.0f} s left" if 0 < done < total else ""
        percent = 100 * done / max(total, 1)
        where = f"step {done}/{total}" if self.unit == "step" else f"t = {self.t:.4g}, {self.unit}"
        click.echo(f"meanfield: {self.label}: {where} ({percent:.0f}%), {spent:.1f} s{left}", err=True)

    def __call__(self, done, total):
        if not self.enabled:
            return
        if self.log:
            self._line(done, total)
            return
        if self.bar is None:
            label = self.label if self.unit == "step" else f"{self.label} ({self.unit}, per mille)"
            self.bar = click.progressbar(length=total, label=label, file=sys.stderr,
                                         show_eta=True, show_pos=self.unit == "step",
                                         item_show_func=None if self.unit == "step"
                                         else lambda _: None if self.t is None else f"t = {self.t:.4g}")
            self.bar.__enter__()
        self.bar.update(done - self.done)
        self.done = done

    def close(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _simulate(run, output, overwrite, progress, label):
    bar = _Progress(progress, label)
    try:
        return run.simulate(output, overwrite=overwrite, progress=bar)
    except KeyboardInterrupt as exc:
        exc.path = output  # the file to resume (the default example writes two)
        raise
    finally:
        bar.close()


#: The summary line names numba's compile time from this many seconds on (loading cached
#: kernels takes up to about a second on a loaded machine).
COMPILE_NOTE_SECONDS = 3.0


def _summary_line(res) -> str:
    compiled = res.attrs.get("compile_time", 0.0)
    # a resume stopped (wall time) before its first save has no energy of its own to show
    state = (f"final energy {res['energy'][-1]:.6g} at t = {res.t[-1]:.4g}" if res.scales
             else f"no save before t = {res.t_end:.4g}")
    steps = ""
    if "accepted_steps" in res.attrs:  # adaptive methods: what the error control did
        steps = f", {res.attrs['accepted_steps']} steps ({res.attrs['rejected_steps']} rejected)"
    P = schema.typed(res.config)
    return (f"{P.model.name}/{P.model.dynamics} "
            f"[{P.integrator.name}]: {state}, "
            f"{res.oracle_calls} oracle calls{steps}, {res.wall_time:.2f} s wall"
            # a first run compiles its kernels (numba caches them for the next runs)
            + (f" (+ {compiled:.1f} s compiling)" if compiled >= COMPILE_NOTE_SECONDS else "")
            + (f" -> {res.path}" if res.path else ""))


def _report(res) -> None:
    """The run's summary line; a run that finished with warnings also says so on stderr (one line)."""
    click.echo(_summary_line(res))
    if res.status.startswith("stopped: clusters"):  # the goal of run.stop_clusters, reached
        click.echo(f"meanfield: {res.status.split(';')[0]} (run.stop_clusters) at t = {res.t_end:.6g}",
                   err=True)
    elif res.status.startswith("stopped"):  # not finished: say so, and how to go on
        limit = schema.typed(res.config).run.max_wall_time
        click.echo(f"meanfield: {res.status.split(';')[0]} (run.max_wall_time = {limit:g} s) at "
                   f"t = {res.t_end:.6g}, before the end of the run; continue with "
                   f"meanfield run --resume {res.path}", err=True)
    if "warning:" in res.status:
        click.echo(f"meanfield: {res.status[res.status.index('warning:'):]}", err=True)


def _check_output(path, option, overwrite, params) -> None:
    """ParameterError unless ``path`` may be written, naming ``-o`` (``option`` given) or the
    parameter file's ``output.path`` (and saying ``--overwrite``, not the API's ``overwrite=True``)."""
    try:
        check_output_path(path, "-o" if option else "output.path", overwrite=overwrite)
    except ParameterError as exc:
        raise exc.in_file(None if option else params) from None


def _companion_path(path: str) -> str:
    root, ext = os.path.splitext(path)
    return f"{root}-first_order{ext or '.h5'}"


@cli.command()
@click.argument("params", required=False, type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", type=click.Path(dir_okay=False),
              help="HDF5 output file (default: output.path of the parameters).")
@click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
              help="Override a parameter (TOML value), e.g. --set integrator.h=0.005.")
@click.option("--threads", type=int, default=None,
              help="Numba threads, fixed (default: all cores or one, whichever runs the steps faster).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar (default: on when stderr is a terminal); into a log, a line "
                   "every 10 s.")
@click.option("--resume", is_flag=True,
              help=f"Continue OUT.h5 from its checkpoint (--set may change only {_resumable_keys()}; "
                   "with PARAMS and -o, PARAMS must describe the same run).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@guard
def run(params, output, overrides, threads, progress, resume, overwrite):
    """Run a simulation from PARAMS.toml (no file: the built-in default example).

    The default example runs the bilinear model with a convex potential twice,
    accelerated (nesterov damping) and first-order, at equal oracle calls, and
    reports how much lower the accelerated energy gap is.
    """
    import meanfield

    if output is not None and not output:
        raise ParameterError("-o", "a file name", output)
    _set_threads(threads)
    if progress is None:
        progress = sys.stderr.isatty()
    if resume:
        from meanfield.resume import resume_run

        target = output or params
        if target is None:
            raise ParameterError("--resume", "an output file to resume (-o OUT.h5)", None)
        # with both PARAMS and -o, PARAMS must describe the run in the file (checked, not ignored)
        try:
            res = resume_run(target, overrides=overrides, progress=_Progress(progress, "resume"),
                             params=params if output else None)
        except KeyboardInterrupt as exc:
            exc.path = target
            raise
        _report(res)
        return
    r = meanfield.Run(params, overrides)
    path = output or r.params.output.path
    if params is None:
        _default_example(r, path, output, overwrite, progress, overrides)
        return
    _check_output(path, output, overwrite, params)
    res = _simulate(r, path, overwrite, progress, "run")
    _report(res)


def _default_example(r, path, output, overwrite, progress, overrides):
    """Accelerated vs first-order on the default problem, at equal oracle calls."""
    import meanfield
    from meanfield.run import MOMENTUM_KEYS

    companion = _companion_path(path)
    E_star = _default_example_e_star(r, overrides)
    for p in (path, companion):
        _check_output(p, output, overwrite, None)  # the companion's name derives from -o too
    acc = _simulate(r, path, overwrite, progress, "accelerated")
    P = r.params  # the same problem, first order (euler), at the accelerated run's oracle calls
    first_order = dataclasses.replace(
        P, model=dataclasses.replace(P.model, dynamics="first_order"),
        damping=type(P.damping)(schedule="none"),
        initial=dataclasses.replace(P.initial, **dict.fromkeys(MOMENTUM_KEYS)),
        integrator=type(P.integrator)(name="euler", h=P.integrator.h),
        run=dataclasses.replace(P.run, t1=None, steps=None, oracle_calls=int(acc.oracle_calls)),
        output=dataclasses.replace(P.output, save=[s for s in P.output.save if s == "x"]))
    first = _simulate(meanfield.Run(schema.as_dict(first_order)), companion, overwrite, progress, "first-order")
    _report(acc)
    _report(first)
    gap_a = acc["energy"][-1] - E_star
    gap_f = first["energy"][-1] - E_star
    click.echo(f"infimum of the energy over the reachable (linear) maps: E* = {E_star:.6g}")
    click.echo(f"{'oracle calls':>12}  {'E - E* accelerated':>18}  {'E - E* first-order':>18}  ratio")
    calls_f = first["oracle_calls"]
    for k in np.unique(np.geomspace(1, len(acc.t) - 1, 7).astype(int)):
        c = acc["oracle_calls"][k]
        j = int(np.searchsorted(calls_f, c))
        if j < len(calls_f) and calls_f[j] == c:
            ga, gf = acc["energy"][k] - E_star, first["energy"][j] - E_star
            click.echo(f"{c:>12}  {ga:>18.3e}  {gf:>18.3e}  {gf / ga:5.2f}")
    click.echo(
        f"at {acc.oracle_calls} oracle calls each: E - E* = {gap_a:.3e} (accelerated, "
        f"{r.params.damping.schedule} damping) vs {gap_f:.3e} (first-order euler): "
        + (f"{gap_f / gap_a:.1f}x lower with acceleration" if gap_f >= gap_a > 0
           else f"{gap_a / gap_f:.1f}x higher with acceleration" if gap_a > gap_f > 0
           else "accelerated at E*" if gap_a <= 0 else "first-order at E*")
    )


#: What the default example compares (``meanfield run`` without a parameter file): other settings
#: of these keys need a parameter file of their own.
DEFAULT_EXAMPLE_FIXED = {"model.name": "bilinear", "model.dynamics": "accelerated",
                         "solver.kind": "particles"}


def _default_example_e_star(r, overrides) -> float:
    """E* of the default problem, checked before anything runs (ParameterError if it cannot compare)."""
    for key, want in DEFAULT_EXAMPLE_FIXED.items():
        section, name = key.split(".")
        if r.config[section][name] != want:
            raise ParameterError(key, f'"{want}" in the default example (for other runs: '
                                 "meanfield init [--model NAME] > p.toml; meanfield run p.toml)",
                                 r.config[section][name])
    E_star = r.model.energy_infimum(r.x0)
    if E_star is None:
        raise ParameterError("--set", "overrides that keep the default example's exact infimum E* "
                             "(a positive definite model.Q and a non-degenerate initial law)",
                             list(overrides))
    return E_star


@cli.command()
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the resolved config as JSON.")
@guard
def info(path, as_json):
    """Describe a run file: config, times, final diagnostics (a running run: its status sidecar)."""
    try:
        tr = load_run(path, tasks=list(INFO_TASKS) + ["mean"], min_saves=0)
    except ParameterError:
        from meanfield.io.live import read_running

        live = None if as_json else read_running(path)
        if live is None:
            raise
        _info_live(path, live)  # HDF5 locks the file while a run writes it
        return
    if as_json:
        click.echo(json.dumps(tr.config, indent=2))
        return
    P = tr.params
    m, integ = P.model, P.integrator

    def row(label, text):
        click.echo(f"{label:<{INFO_WIDTH}}{text}")

    row("file", path)
    row("status", f"{tr.attrs.get('status', '?')}  (meanfield {tr.attrs.get('meanfield_version', '?')}, "
                  f"created {tr.attrs.get('created', '?')})")
    if P.solver.kind == "pde":
        # position axis first, as in solver.grid = [position cells, momentum cells] (the file
        # lists its /grid axes alphabetically)
        size = ", ".join(f"{k} {len(tr.grid[k])} cells" for k in grid_axes(tr.grid)) or "exact flow map"
        row("model", f"{m.name} / {m.dynamics}, d = {m.d}, mean-field equation (pde: {size})")
    else:
        init = P.initial
        n = init.n if init.n is not None else len(init.ids) if isinstance(init.ids, list) else None
        state = (tr.checkpoint or {}).get("state") or {}
        if n is None and "x" in state:  # tokens from an ids file: the state says how many
            n = len(state["x"])
        row("model", f"{m.name} / {m.dynamics}, d = {m.d}, n = {n}")
    if integ.rtol is not None or "accepted_steps" in tr.attrs:  # adaptive: tolerances and what the control did
        steps = ", ".join(f"{k.replace('_', ' ')} {tr.attrs[k]}" for k in
                          ("accepted_steps", "rejected_steps", "jacobians", "switches") if k in tr.attrs)
        row("integrator", f"{integ.name} rtol = {integ.rtol}, atol = {integ.atol}"
            f"{'' if steps == '' else '; ' + steps}, damping {P.damping.given()}")
    else:
        row("integrator", f"{integ.name} h = {integ.h}, damping {P.damping.given()}")
    history = tr.attrs.get("resume_history")
    if history:
        row("resumed", f"{len(json.loads(history))} time(s) (attrs resume_history)")
    sc = tr.scales
    n = min((len(v) for v in (*sc.values(), *tr.tasks.values())), default=0)
    if n == 0:
        row("saves", "none (the run stopped before its first save)")
    else:
        row("saves", f"{n}: t = {tr.t[0]:.6g} .. {tr.t[n - 1]:.6g}, iterations "
                     f"{sc['iteration'][n - 1]}, oracle calls {sc['oracle_calls'][n - 1]}, "
                     f"wall {sc['wall_time'][n - 1]:.3g} s")
        for name in INFO_TASKS:
            if name in tr.tasks:
                row(name, f"{tr.tasks[name][n - 1]:.10g}")
        e_inf = tr.attrs.get("energy_infimum")
        if e_inf is not None:  # the run's known lower bound of the energy, and how far above it
            gap = f", energy - E* = {tr.tasks['energy'][n - 1] - e_inf:.3e}" if "energy" in tr.tasks else ""
            row("E*", f"{float(e_inf):.10g} (lower bound of the energy{gap})")
        if "mean" in tr.tasks:
            row("mean", np.array2string(tr.tasks["mean"][n - 1], precision=6))
    if tr.checkpoint:
        row("checkpoint", f"t = {tr.checkpoint.get('t'):.6g}, iteration {tr.checkpoint.get('iteration')}")


def _info_live(path, live) -> None:
    """``meanfield info`` of a file a run is writing: what its status sidecar OUT.h5.status says."""
    def row(label, text):
        click.echo(f"{label:<{INFO_WIDTH}}{text}")

    def num(key, fmt):
        value = live.get(key)
        return "?" if value is None else format(value, fmt)

    end = ", ".join(f"{k} = {v}" for k, v in (live.get("end") or {}).items())
    row("file", path)
    row("status", f"running  (pid {live.get('pid')} on {live.get('host')}, status updated "
                  f"{live.get('updated')}; the file is locked while the run writes it)")
    row("model", str(live.get("model")))
    row("progress", f"step {live.get('step')}, t = {num('t', '.6g')}"
        + (f" (runs to {end})" if end else "")
        + f", {live.get('saves')} saves, wall {num('wall_time', '.3g')} s")
    row("energy", num("energy", ".10g"))


#: Scalar diagnostics ``meanfield info`` shows (last save), and the width of its labels.
INFO_TASKS = ("energy", "kinetic", "potential", "dissipation_residual", "E_beta", "min_inner",
              "mean_inner", "n_clusters", "mass")
INFO_WIDTH = 22


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--kind", default="energy", show_default=True,
              help="What to draw: energy (several runs), moments, particles, clusters (sphere), "
                   "density (pde runs on a grid), layers (networks from weights).")
@click.option("--x", "xaxis", type=click.Choice(["time", "oracle_calls"]), default="time",
              show_default=True, help="Energy plots: horizontal axis.")
@click.option("--e-star", "e_star", default=None,
              help='Energy plots: subtract E* (a number, or "auto" for the lowest energy seen).')
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="Image file (default: <first run>-<kind>.png).")
@guard
def plot(paths, kind, xaxis, e_star, output):
    """Draw figures from run files (energy takes several runs on one axis)."""
    from meanfield.plotting import PLOT_NEEDS, PLOTS, check_image_path

    if kind not in PLOTS:
        raise ParameterError("--kind", f"one of {sorted(PLOTS)}", kind)
    fn, many = PLOTS[kind]
    if not many and len(paths) > 1:
        raise ParameterError("--kind", f"one run file for --kind {kind}", f"{len(paths)} files")
    if kind == "energy" and e_star not in (None, "auto"):
        e_star = _finite(e_star, "--e-star", 'a finite number or "auto"')
    out = f"{os.path.splitext(paths[0])[0]}-{kind}.png" if output is None else output
    check_image_path(out)
    trajs = [load_run(p, need=PLOT_NEEDS.get(kind, ())) for p in paths]
    if kind == "energy" and isinstance(e_star, float):  # a curve above E* or none at all (log axis)
        for p, tr in zip(paths, trajs):
            top = float(np.nanmax(tr["energy"]))
            if not top > e_star:
                raise ParameterError("--e-star", f"a value below the energies of every run (the highest "
                                     f"of {p} is {top:.10g}: nothing would be drawn)", e_star)
    if kind == "energy":
        fig = fn(trajs, x="sim_time" if xaxis == "time" else "oracle_calls", e_star=e_star)
    else:
        fig = fn(trajs[0])
    fig.savefig(out, dpi=120)
    click.echo(f"wrote {out}")


def _finite(text, key, expected):
    """``float(text)`` if it is a finite number, else ParameterError naming ``key``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise ParameterError(key, expected, text) from None
    if not np.isfinite(value):
        raise ParameterError(key, expected, text)
    return value


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--e-star", "e_star", type=float, default=None,
              help="Reference energy E* for all runs (default: each run's exact infimum if "
                   "known, else a fit E* + c t^-p).")
@click.option("--tol", type=float, default=None,
              help="Tolerance on E - E* (default: 1e-2 x the baseline's initial gap).")
@click.option("--window", default=None, metavar="T_LO:T_HI", help="Fit window in time.")
@click.option("--out", "out", default=None, type=click.Path(dir_okay=False),
              help="Also write the table as .csv or .json.")
@guard
def compare(paths, e_star, tol, window, out):
    """Convergence table: decay fits, time and oracle calls to tolerance, speed-up over euler.

    The baseline is the first-order euler run of the same model among the files.
    """
    from meanfield.diagnostics.rates import compare_runs

    win = None
    if window is not None:
        parts = window.split(":")
        if len(parts) != 2:
            raise ParameterError("--window", "T_LO:T_HI (two numbers, T_LO < T_HI)", window)
        lo, hi = (_finite(v, "--window", "T_LO:T_HI (two finite numbers, T_LO < T_HI)")
                  for v in parts)
        if not lo < hi:
            raise ParameterError("--window", "T_LO:T_HI with T_LO < T_HI", window)
        win = (lo, hi)
    if e_star is not None and not np.isfinite(e_star):
        raise ParameterError("--e-star", "a finite number", e_star)
    if tol is not None and not (tol > 0 and np.isfinite(tol)):
        raise ParameterError("--tol", "a finite number > 0", tol)
    if out is not None:
        if not out.endswith((".csv", ".json")):
            raise ParameterError("--out", "a file name ending in .csv or .json", out)
        check_output_path(out, "--out", overwrite=True)
    trajs = [load_run(p, tasks=["energy"], min_saves=2, need=("energy",)) for p in paths]
    _warn_unrelated(paths, trajs)
    if e_star is not None:  # E* is a lower bound of the energy: a gap E - E* is never negative
        lows = [float(np.nanmin(tr["energy"])) for tr in trajs]
        k = int(np.argmin(lows))
        if not e_star <= lows[k]:
            raise ParameterError("--e-star", f"a lower bound of every run's energy (the lowest is "
                                 f"{lows[k]:.10g}, in {paths[k]})", e_star)
    if win is not None:
        for p, tr in zip(paths, trajs):
            inside = int(np.count_nonzero((tr.t >= win[0]) & (tr.t <= win[1])))
            if inside < 3:
                raise ParameterError("--window", f"a window holding at least 3 saves of every run "
                                     f"({p}: saves at t = {tr.t[0]:.4g}..{tr.t[-1]:.4g})",
                                     f"{window} ({inside} saves)")
    rows = compare_runs(trajs, names=[os.path.basename(p) for p in paths], e_star=e_star, tol=tol,
                        window=win)
    cols = [("file", "{}"), ("solver", "{}"), ("dynamics", "{}"), ("integrator", "{}"), ("schedule", "{}"),
            ("power_exponent", "{:+.3f}"), ("power_r2", "{:.3f}"), ("exp_rate", "{:.3g}"),
            ("exp_r2", "{:.3f}"), ("final_gap", "{:.3e}"), ("time_to_tol", "{:.4g}"),
            ("calls_to_tol", "{:.0f}"), ("speedup_calls_to_tol", "{:.2f}"),
            ("gap_ratio_equal_calls", "{:.2f}")]
    table = [[fmt.format(r[c]) if not (isinstance(r[c], float) and np.isnan(r[c])) else "-"
              for c, fmt in cols] for r in rows]
    heads = [c for c, _ in cols]
    widths = [max(len(h), *(len(row[k]) for row in table)) for k, h in enumerate(heads)]
    click.echo("  ".join(h.rjust(w) for h, w in zip(heads, widths)))
    for row in table:
        click.echo("  ".join(v.rjust(w) for v, w in zip(row, widths)))
    r0 = rows[0]
    click.echo(f"E - E* with E* per run ({', '.join(sorted({r['E_star_source'] for r in rows}))}); "
               f"tol = {r0['tol']:.3e}; fit window {r0['fit_window'][0]:.4g}..{r0['fit_window'][1]:.4g} "
               f"({r0['fit_points']} saves); speed-ups are relative to the first-order euler run "
               "of the same model (calls to tol, and gap ratio at equal oracle calls)")
    if out:
        _write_table(rows, out)
        click.echo(f"wrote {out}")


def _warn_unrelated(paths, trajs) -> None:
    """One warning line for a file given twice, and one for runs of different problems."""
    import warnings

    from meanfield.diagnostics.rates import problem_of

    real = [os.path.realpath(p) for p in paths]
    twice = [p for k, p in enumerate(paths) if real[k] in real[:k]]
    if twice:
        warnings.warn(f"compare got the same file more than once ({', '.join(twice)}): its rows "
                      "are copies, not runs to compare", UserWarning, stacklevel=2)
    problems = list(dict.fromkeys(problem_of(tr) for tr in trajs))
    if len(problems) > 1:
        warnings.warn(f"compare got runs of different problems ({'; '.join(problems)}): their energies "
                      "do not compare; speed-ups are only against the euler run of the same model",
                      UserWarning, stacklevel=2)


def _write_table(rows, out):
    import csv

    if out.endswith(".json"):
        with open(out, "w") as fh:
            json.dump(rows, fh, indent=2, default=float)
    elif out.endswith(".csv"):
        with open(out, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    else:
        raise ParameterError("--out", "a file name ending in .csv or .json", out)


@cli.command()
@click.option("--model", "model", default="bilinear", show_default=True,
              help=f"Model template to print ({', '.join(sorted(TEMPLATES))}).")
@guard
def init(model):
    """Print a commented template parameter file."""
    if model not in TEMPLATES:
        raise ParameterError("--model", f"one of {sorted(TEMPLATES)}", model)
    click.echo(TEMPLATES[model], nl=False)


@cli.command("convert-hf")
@click.argument("checkpoint_dir", type=click.Path(file_okay=False))
@click.option("-o", "--output", required=True,
              help="Weight file to write: .safetensors or .npz (the schema of docs/models.md).")
@click.option("--overwrite", is_flag=True, help="Replace an existing output file.")
@guard
def convert_hf(checkpoint_dir, output, overwrite):
    """Convert a local Hugging Face GPT-2 checkpoint to meanfield's weight schema (extra [hf])."""
    if not os.path.isfile(os.path.join(checkpoint_dir, "config.json")):
        raise ParameterError("CHECKPOINT_DIR", "a local Hugging Face checkpoint folder (with config.json)",
                             checkpoint_dir)
    if not output.lower().endswith((".safetensors", ".npz")):
        raise ParameterError("-o", "a file name ending in .safetensors or .npz", output)
    check_output_path(output, "-o", overwrite=overwrite)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError:
        raise ParameterError("convert-hf", "transformers and torch (pip install 'meanfield[hf]')",
                             "not installed") from None
    from meanfield.convert_hf import convert_checkpoint
    from meanfield.io.writer import temp_file_beside

    # written beside, then moved over: an existing file is replaced only by a complete one
    suffix = ".safetensors" if output.lower().endswith(".safetensors") else ".npz"
    tmp = temp_file_beside(output, ".convert-", suffix)
    try:
        arrays = convert_checkpoint(checkpoint_dir, tmp)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    L, H, dh, d = arrays["W_q"].shape
    click.echo(f"{checkpoint_dir}: {L} layers, {H} heads of {dh}, d = {d}, "
               f"{sum(a.size for a in arrays.values())} numbers -> {output}")


cli.add_command(_sweep)
cli.add_command(_animate)


#: ``meanfield bench NAME`` -> script under benchmarks/ (a checkout's, not installed)
BENCHMARKS = {
    "bilinear": "bench_bilinear.py",
    "softmax": "bench_softmax.py",
    "meanfield_limit": "bench_meanfield_limit.py",
    "circle_pde": "bench_circle_pde.py",
    "convergence": "convergence.py",
    "long_time": "bench_long_time.py",
    "jacobian": "bench_jacobian.py",
    "distributed": "bench_distributed.py",
    "network": "bench_network.py",
}


def _benchmarks_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    for cand in (os.path.join(os.getcwd(), "benchmarks"), os.path.join(os.path.dirname(here), "benchmarks")):
        if os.path.isfile(os.path.join(cand, "_common.py")):
            return cand
    return None


#: Where ``meanfield bench`` writes its JSON (and figures) unless given --update-results: not the
#: checkout's tracked benchmarks/results/ (a try-out run must not rewrite the published numbers).
BENCH_OUT = "bench-results"


@cli.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("name", required=False)
@click.option("--update-results", is_flag=True,
              help="Write into the checkout's tracked benchmarks/results/ (and figures/) instead of "
                   f"./{BENCH_OUT}/.")
@click.pass_context
@guard
def bench(ctx, name, update_results):
    """Run a performance benchmark of a checkout's benchmarks/ (table + JSON in ./bench-results/).

    NAME is one of bilinear, softmax, meanfield_limit, circle_pde, convergence; further
    arguments go to the script (e.g. --quick). Without NAME, lists them. The JSON goes to
    ./bench-results/ unless --update-results names the tracked benchmarks/results/.
    """
    import subprocess

    where = _benchmarks_dir()
    if name is None:
        for key, script in BENCHMARKS.items():
            click.echo(f"{key:<16}benchmarks/{script}")
        if where is None:
            click.echo("(run from a meanfield checkout: benchmarks/ is not installed)")
        return
    if name not in BENCHMARKS:
        raise ParameterError("bench NAME", f"one of {sorted(BENCHMARKS)}", name)
    if where is None:
        raise ParameterError("bench", "a meanfield checkout with benchmarks/ (run from its top level)",
                             os.getcwd())
    env = dict(os.environ)
    if not update_results:
        out = os.path.abspath(BENCH_OUT)
        if not os.path.isdir(out):
            os.mkdir(out)  # in the current directory, which exists
        env["MEANFIELD_BENCH_OUT"] = out
    code = subprocess.call([sys.executable, os.path.join(where, BENCHMARKS[name]), *ctx.args], env=env)
    sys.exit(code)


def main():
    """Console-script entry point (SIGTERM and SIGHUP stop a command as Ctrl-C does)."""
    handle_stop_signals()
    cli(prog_name="meanfield")


if __name__ == "__main__":  # pragma: no cover
    main()
