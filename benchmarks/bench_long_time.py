"""Long-time dynamics on S^2: meanfield's adaptive methods against scipy's LSODA (issue #26).

One command, re-runnable::

    python benchmarks/bench_long_time.py              # cases A, B, C; writes benchmarks/results/long_time.json
    python benchmarks/bench_long_time.py --case A     # one case (A, B or C; repeatable)
    python benchmarks/bench_long_time.py --quick      # smoke run (N = 16, t1 = 10^3, < 1 minute), no JSON
    python benchmarks/bench_long_time.py --markdown benchmarks/results/long_time.json  # docs/long-time.md's tables

What it measures, in one process (ratios are what count on a shared machine):

* **Case A** -- N = 64 tokens uniform on S^2 (meanfield's ``sphere_uniform``
  law, seeds 0, 1, 2), the first-order sphere model (SA, normalized, post_ln),
  beta = 16, Q = K = V = I, to t1 = 10^8. The field is transcribed to NumPy
  from docs/models.md §4 (x_i' = P_{theta_i} sum_j softmax_j(beta <theta_i,
  theta_j>) theta_j at the directions theta = x / |x|) and checked against
  ``model.first_order``. The *reference* is ``solve_ivp(method="LSODA",
  rtol=1e-10, atol=1e-12)`` on the transcription, the *baseline*
  ``solve_ivp(method="LSODA", rtol=1e-6, atol=1e-9)``. meanfield runs go the
  user's path: a ``meanfield.Run`` from a config dict (rtol = 1e-6, atol =
  1e-9, ``saves_per_decade = 1``) writing an HDF5 file, timed by the file's
  ``/scales/wall_time`` (computation; numba's compile time is left out, and a
  warm-up run compiles first) and counted by ``/scales/oracle_calls``.
  Explicit methods (``dopri5``) cannot reach 10^8 on the stiff plateaus: they
  are capped (``--cap-t1``, 10^4) and compared with the baseline run to the
  same horizon.
* **Case B** -- N = 1024, beta = 16, to t1 = 10^6 through ``meanfield run``
  (the CLI, in a subprocess, with a TOML file written here): wall time and the
  cluster counts at the decades; then N = 256 to 10^6, meanfield against the
  scipy reference (rtol = 1e-10).
* **Case C** -- the accelerated sphere dynamics (constant damping alpha = 1,
  zero initial momenta), N = 64, beta = 16, t1 = 10^8 under a wall-time budget
  (``run.max_wall_time``): the time each adaptive method reaches, its steps,
  calls and cluster counts.

Counting field evaluations. Every evaluation of the transcription is counted
by the callable itself (``calls``). scipy's LSODA computes its
finite-difference Jacobians inside ODEPACK, calling the Python function once
per column: its ``nfev`` already includes those ``njev * n`` calls (n = 3 N;
the script checks ``calls == nfev``). For Radau and BDF, ``nfev`` leaves the
finite-difference columns out (``calls = nfev + njev * n`` and a few more).
The tables show ``calls``. meanfield counts Jacobians, Jacobian-vector
products and rejected attempts in ``oracle_calls`` itself (docs/long-time.md).

Cluster counts are ``meanfield.diagnostics.clustering.n_clusters(x, 1e-3)``
of the directions at t = 10, 10^2, ..., t1, for every run alike (scipy:
``t_eval``; meanfield: the saved ``x`` at the save times, which are hit exactly).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time

import numpy as np
from _common import RESULTS, cpu_info, cpu_label, load_average, machine, print_table

import meanfield
from meanfield.diagnostics.clustering import n_clusters
from meanfield.integrators import INTEGRATORS

BETA = 16.0
D = 3
CLUSTER_TOL = 1e-3
RTOL, ATOL = 1e-6, 1e-9
REF_RTOL, REF_ATOL = 1e-10, 1e-12
#: Methods tried when registered, in this order (the stiff method is any other adaptive one).
PREFERRED = ("auto", "dopri5")


# ----------------------------------------------------------------------------- the field in NumPy
class SphereField:
    """The first-order sphere field (docs/models.md §4; SA, Q = K = V = I) on flat states, counting calls.

    Parameters
    ----------
    n : int
        Tokens.
    beta : float
    deadline : float or None
        ``time.perf_counter()`` after which a call raises :class:`TimeUp` (a reference that takes too long).
    """

    def __init__(self, n: int, beta: float, deadline: float | None = None):
        self.n, self.beta, self.deadline = n, beta, deadline
        self.calls = 0
        self.t_last = 0.0

    def field(self, x: np.ndarray) -> np.ndarray:
        """``P_{theta_i} sum_j softmax_j(beta <theta_i, theta_j>) theta_j`` at the directions of ``x`` (N, d)."""
        theta = x / np.linalg.norm(x, axis=1, keepdims=True)
        logits = self.beta * (theta @ theta.T)
        logits -= logits.max(axis=1, keepdims=True)
        w = np.exp(logits)
        w /= w.sum(axis=1, keepdims=True)
        a = w @ theta
        return a - np.einsum("ij,ij->i", theta, a)[:, None] * theta

    def __call__(self, t: float, z: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.t_last = t
        if self.deadline is not None and time.perf_counter() > self.deadline:
            raise TimeUp(t)
        return self.field(z.reshape(self.n, -1)).ravel()


class TimeUp(Exception):
    """A scipy run passed its wall-time budget (at time ``args[0]``)."""


def decades(t1: float) -> list[float]:
    """10, 10^2, ..., up to t1 (and t1 itself when it is not a power of ten)."""
    out = [10.0 ** k for k in range(1, int(math.floor(math.log10(t1) + 1e-9)) + 1)]
    return out if out and out[-1] == t1 else out + [float(t1)]


# ----------------------------------------------------------------------------- meanfield runs
def config(n: int, seed: int, method: str, t1: float, beta: float = BETA, accelerated: bool = False,
           max_wall_time: float | None = None) -> dict:
    """The run's parameters as a user writes them (saves_per_decade = 1, rtol 1e-6, atol 1e-9)."""
    integ = {"name": method}
    if getattr(_cls(method, accelerated), "adaptive", False):
        integ.update(rtol=RTOL, atol=ATOL)
    else:  # a fixed-step method (only for smoke tests of the plumbing)
        integ["h"] = 0.1
    cfg = {"model": {"name": "sphere", "dynamics": "accelerated" if accelerated else "first_order",
                     "d": D, "beta": beta},
           "integrator": integ,
           "initial": {"law": "sphere_uniform", "n": n, "seed": seed},
           "run": {"t1": float(t1), "saves_per_decade": 1},
           "diagnostics": {"cluster_tol": CLUSTER_TOL}}
    if accelerated:
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    if max_wall_time is not None:
        cfg["run"]["max_wall_time"] = float(max_wall_time)
    return cfg


def _cls(method: str, accelerated: bool = False):
    return INTEGRATORS.get(method, {}).get("accelerated" if accelerated else "first_order")


def adaptive_methods(accelerated: bool = False) -> list[str]:
    """Registered adaptive methods for the dynamics: auto, the stiff one(s), dopri5 (those that exist)."""
    names = [m for m in INTEGRATORS if getattr(_cls(m, accelerated), "adaptive", False)]
    return ([m for m in PREFERRED[:1] if m in names] + sorted(m for m in names if m not in PREFERRED)
            + [m for m in PREFERRED[1:] if m in names])


def initial(n: int, seed: int) -> np.ndarray:
    """The initial tokens of a meanfield run (its own sphere_uniform sampling), shape ``(n, 3)``."""
    return meanfield.Run(config(n, seed, "rk4", 1.0)).x0


def counts_at(t: np.ndarray, x: np.ndarray, times: list[float]) -> list:
    """Cluster counts of the saved states ``x (T, N, d)`` at ``times`` (None where no save is)."""
    out = []
    for s in times:
        i = np.flatnonzero(np.isclose(t, s, rtol=1e-12, atol=0))
        out.append(n_clusters(x[i[0]], CLUSTER_TOL) if len(i) else None)
    return out


def summarize_file(path: str, t1: float) -> dict:
    """What a user reads from a run file: wall time, calls, steps, counts at the decades, events."""
    tr = meanfield.load(path)
    sc = {k: np.asarray(v) for k, v in tr.scales.items()}
    attrs = tr.attrs
    ev = tr.events.get("n_clusters") if tr.events else None
    out = {"t_reached": float(sc["sim_time"][-1]), "wall_s": float(sc["wall_time"][-1]),
           "calls": int(sc["oracle_calls"][-1]), "status": str(attrs.get("status")),
           "compile_s": float(attrs.get("compile_time", math.nan)),
           "counts": counts_at(sc["sim_time"], np.asarray(tr["x"]), decades(t1)),
           "events": None if ev is None else np.asarray(ev).tolist()}
    for key in ("accepted_steps", "rejected_steps", "jacobians", "jvps", "factorizations"):
        if key in attrs:
            out[key] = int(attrs[key])
    if "h" in sc:
        out["h_last"] = float(sc["h"][-1])
    return out


def meanfield_run(cfg: dict, folder: str, name: str) -> dict:
    """``Run(cfg).simulate(file)`` then :func:`summarize_file` of the file (the path a user takes)."""
    path = os.path.join(folder, name + ".h5")
    res = meanfield.Run(cfg).simulate(path, overwrite=True)
    out = summarize_file(path, cfg["run"]["t1"])
    # a run stopped between saves (max_wall_time) went on past the last save
    out.update(t_end=float(res.t_end), calls_end=int(res.oracle_calls), wall_end_s=float(res.wall_time),
               final_clusters=n_clusters(res.x, CLUSTER_TOL))
    return out


def warm_up(method: str, accelerated: bool = False) -> None:
    """Compile the kernels a method uses (numba caches them; compile time is not in wall_time anyway)."""
    meanfield.Run(config(8, 0, method, 1.0, accelerated=accelerated)).simulate()


def cli_run(cfg: dict, folder: str, name: str, timeout: float) -> dict:
    """``meanfield run NAME.toml -o NAME.h5`` in a subprocess (the CLI user's path), then the file's numbers."""
    toml = os.path.join(folder, name + ".toml")
    out = os.path.join(folder, name + ".h5")
    with open(toml, "w") as fh:
        fh.write(to_toml(cfg))
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "meanfield_cli.main", "run", toml, "-o", out, "--overwrite"],
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout after {timeout:.0f} s", "process_s": time.perf_counter() - t}
    process_s = time.perf_counter() - t
    if proc.returncode != 0:
        return {"status": f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}",
                "process_s": process_s}
    return {**summarize_file(out, cfg["run"]["t1"]), "process_s": process_s}


def to_toml(cfg: dict) -> str:
    """A parameter dict of numbers and strings as TOML."""
    def value(v):
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return repr(v)

    return "".join(f"[{sec}]\n" + "".join(f"{k} = {value(v)}\n" for k, v in body.items()) + "\n"
                   for sec, body in cfg.items())


# ----------------------------------------------------------------------------- scipy runs
def scipy_run(x0: np.ndarray, t1: float, method: str, rtol: float, atol: float, beta: float = BETA,
              budget_s: float | None = None) -> dict:
    """``solve_ivp`` on the transcription; counts at the decades, calls, nfev/njev, wall time."""
    from scipy.integrate import solve_ivp

    n = len(x0)
    t = time.perf_counter()
    f = SphereField(n, beta, None if budget_s is None else t + budget_s)
    times = decades(t1)
    try:
        sol = solve_ivp(f, (0.0, t1), x0.ravel(), method=method, rtol=rtol, atol=atol, t_eval=times)
    except TimeUp as up:
        return {"method": method, "rtol": rtol, "status": f"stopped after {budget_s:.0f} s at t = {up.args[0]:.3g}",
                "wall_s": time.perf_counter() - t, "calls": f.calls, "t_reached": float(up.args[0])}
    wall = time.perf_counter() - t
    out = {"method": method, "rtol": rtol, "atol": atol, "status": "finished" if sol.status == 0 else sol.message,
           "wall_s": wall, "calls": f.calls, "nfev": int(sol.nfev), "njev": int(sol.njev), "nlu": int(sol.nlu),
           "jacobian_columns": int(sol.njev) * 3 * n, "t_reached": float(sol.t[-1]) if len(sol.t) else 0.0,
           "counts": [n_clusters(sol.y[:, i].reshape(n, D), CLUSTER_TOL) for i in range(sol.y.shape[1])]}
    if method == "LSODA" and f.calls != sol.nfev:  # the counting the docstring states
        out["warning"] = f"LSODA nfev {sol.nfev} != counted calls {f.calls}"
    return out


def check_transcription(n: int = 64, seed: int = 0, beta: float = BETA) -> float:
    """max |F_numpy - model.first_order| over a random state (asserted <= 1e-13)."""
    run = meanfield.Run(config(n, seed, "rk4", 1.0, beta=beta))
    x = run.x0 * np.random.default_rng(seed).uniform(0.5, 2.0, (n, 1))  # off the sphere: directions are used
    err = float(np.abs(SphereField(n, beta).field(x) - np.asarray(run.model.first_order(x, 0.0))).max())
    assert err <= 1e-13, f"the NumPy transcription differs from model.first_order by {err:.3g}"
    return err


# ----------------------------------------------------------------------------- the cases
def best_of(fn, repeat: int) -> dict:
    """The run with the smallest wall time of ``repeat`` (the same work each time; others share the cores)."""
    runs = [fn() for _ in range(repeat)]
    best = min(runs, key=lambda r: r.get("wall_s", math.inf))
    best["wall_s_all"] = [r.get("wall_s") for r in runs]
    return best


def case_a(args, folder: str) -> dict:
    n, t1 = (16, 1e3) if args.quick else (64, 1e8)
    cap = min(args.cap_t1, t1)
    methods = args.methods or adaptive_methods()
    for m in methods:
        warm_up(m)
    out = {"N": n, "beta": BETA, "t1": t1, "cap_t1": cap, "capped": args.capped, "seeds": {},
           "transcription_max_abs_diff": check_transcription(n)}
    print(f"\nCase A: N = {n}, beta = {BETA:g}, S^2, first-order SA, t1 = {t1:g}; "
          f"|F_numpy - model.first_order| = {out['transcription_max_abs_diff']:.2g}", flush=True)
    rows = []
    for seed in args.seeds:
        x0 = initial(n, seed)
        ref = scipy_run(x0, t1, args.ref_method, REF_RTOL, REF_ATOL, budget_s=args.ref_budget)
        base = {h: best_of(lambda h=h: scipy_run(x0, h, "LSODA", RTOL, ATOL), args.repeat)
                for h in sorted({t1, cap})}
        runs = {}
        for m in methods:
            h = cap if m in args.capped else t1
            runs[m] = best_of(lambda m=m, h=h: meanfield_run(config(n, seed, m, h), folder, f"A_{m}_{seed}"),
                              args.repeat)
            runs[m]["t1"] = h
        out["seeds"][seed] = {"reference": ref, "baseline": {repr(k): v for k, v in base.items()}, "meanfield": runs}
        ref_counts = ref.get("counts")
        rows.append(_row(seed, f"{args.ref_method} rtol 1e-10 (ref)", t1, ref, None, None))
        rows.append(_row(seed, "LSODA rtol 1e-6 (baseline)", t1, base[t1], base[t1], ref_counts))
        if cap != t1:
            rows.append(_row(seed, "LSODA rtol 1e-6 (baseline)", cap, base[cap], base[cap], ref_counts))
        for m, r in runs.items():
            rows.append(_row(seed, f"meanfield {m}", r["t1"], r, base[r["t1"]], ref_counts))
        print_table(rows[-(len(runs) + 2 + (cap != t1)):], COLUMNS)
        print(flush=True)
    out["table"] = rows
    print("Case A, all seeds:")
    print_table(rows, COLUMNS)
    return out


COLUMNS = ["seed", "method", "t1", "wall_s", "calls", "jac", "wall_ratio", "calls_ratio", "counts", "match"]


def _row(seed, label, t1, r, base, ref_counts) -> dict:
    """A table row: wall time, calls and the ratios to the baseline, counts and their match."""
    counts = r.get("counts")
    row = {"seed": seed, "method": label, "t1": t1, "wall_s": r.get("wall_s"), "calls": r.get("calls"),
           "jac": r.get("jacobians", r.get("njev")), "counts": counts if counts is not None else r.get("status")}
    if base is not None and base is not r:
        row["wall_ratio"] = r["wall_s"] / base["wall_s"]
        row["calls_ratio"] = r["calls"] / base["calls"]
    if ref_counts is not None and counts is not None:
        row["match"] = "yes" if list(counts) == list(ref_counts[:len(counts)]) else "NO"
    return row


def case_b(args, folder: str) -> dict:
    n_big, n_ref, t1 = (64, 16, 1e3) if args.quick else (1024, 256, 1e6)
    method = args.method_b
    warm_up(method)
    print(f"\nCase B: beta = {BETA:g}, S^2, first-order SA, t1 = {t1:g}, `meanfield run` with {method}", flush=True)
    out = {"t1": t1, "method": method}
    rows = []
    big = cli_run(config(n_big, 0, method, t1), folder, f"B_{n_big}", timeout=args.b_timeout)
    out[f"N{n_big}"] = big
    rows.append({"N": n_big, "run": f"meanfield run ({method})", **_brief(big)})
    print_table(rows, B_COLUMNS)
    if not args.skip_b_reference:
        x0 = initial(n_ref, 0)
        ref = scipy_run(x0, t1, args.ref_method, REF_RTOL, REF_ATOL, budget_s=args.b_ref_budget)
        small = cli_run(config(n_ref, 0, method, t1), folder, f"B_{n_ref}", timeout=args.b_timeout)
        out[f"N{n_ref}"] = {"meanfield": small, "reference": ref}
        rows.append({"N": n_ref, "run": f"{args.ref_method} rtol 1e-10 (ref)", **_brief(ref)})
        row = {"N": n_ref, "run": f"meanfield run ({method})", **_brief(small)}
        if ref.get("counts") is not None and small.get("counts") is not None:
            row["match"] = "yes" if small["counts"] == ref["counts"][:len(small["counts"])] else "NO"
        rows.append(row)
    out["table"] = rows
    print()
    print_table(rows, B_COLUMNS)
    return out


B_COLUMNS = ["N", "run", "wall_s", "process_s", "calls", "steps", "t_reached", "counts", "match"]


def _brief(r: dict) -> dict:
    return {"wall_s": r.get("wall_s"), "process_s": r.get("process_s"), "calls": r.get("calls"),
            "steps": r.get("accepted_steps"), "t_reached": r.get("t_reached"),
            "counts": r.get("counts") if r.get("counts") is not None else r.get("status")}


def case_c(args, folder: str) -> dict:
    n, t1 = (16, 1e3) if args.quick else (64, 1e8)
    methods = args.methods or adaptive_methods(accelerated=True)
    budget = 5.0 if args.quick else args.c_budget
    print(f"\nCase C: accelerated, constant damping alpha = 1, N = {n}, beta = {BETA:g}, t1 = {t1:g}, "
          f"at most {budget:g} s each", flush=True)
    out = {"N": n, "t1": t1, "max_wall_time": budget, "runs": {}}
    rows = []
    for m in methods:
        warm_up(m, accelerated=True)
        r = meanfield_run(config(n, 0, m, t1, accelerated=True, max_wall_time=budget), folder, f"C_{m}")
        out["runs"][m] = r
        rows.append({"method": m, "t_reached": r["t_end"], "wall_s": r["wall_end_s"], "calls": r["calls_end"],
                     "steps": r.get("accepted_steps"), "rejected": r.get("rejected_steps"),
                     "jac": r.get("jacobians"), "counts": r["counts"], "final": r["final_clusters"],
                     "status": r["status"]})
    out["table"] = rows
    print_table(rows, C_COLUMNS)
    return out


C_COLUMNS = ["method", "t_reached", "wall_s", "calls", "steps", "rejected", "jac", "counts", "final", "status"]


def markdown(result: dict) -> str:
    """The tables of docs/long-time.md ("Measured") from a result JSON of this script."""
    def table(rows, columns, names):
        out = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
        for r in rows:
            out.append("| " + " | ".join(_md(r.get(c)) for c in columns) + " |")
        return "\n".join(out)

    parts = [f"{result.get('cpu')}, {result.get('date')}, load {result.get('loadavg_at_start')} at the start."]
    if "case_A" in result:
        parts.append(table(result["case_A"]["table"], COLUMNS,
                           ["seed", "run", "t1", "wall s", "field evals", "Jacobians", "wall / baseline",
                            "evals / baseline", "clusters at t = 10, 10^2, ...", "= reference"]))
    if "case_B" in result:
        parts.append(table(result["case_B"]["table"], B_COLUMNS,
                           ["N", "run", "wall s", "process s", "field evals", "steps", "t reached",
                            "clusters at t = 10, 10^2, ...", "= reference"]))
    if "case_C" in result:
        parts.append(table(result["case_C"]["table"], C_COLUMNS,
                           ["method", "t reached", "wall s", "field evals", "steps", "rejected", "Jacobians",
                            "clusters at t = 10, 10^2, ...", "clusters at the end", "status"]))
    return "\n\n".join(parts) + "\n"


def _md(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1e5 else f"{v:.2g}"
    if isinstance(v, list):
        return ", ".join("-" if c is None else str(c) for c in v)
    return str(v)


def write_json(path: str, result: dict) -> str:
    """Write ``result``; cases of an earlier run that this one did not repeat are kept (``--case``)."""
    old = {}
    if os.path.exists(path):
        with open(path) as fh:
            old = {k: v for k, v in json.load(fh).items() if k.startswith("case_")}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": machine(), **old, **result}, fh, indent=1)
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 16 (B: 64 and 16), t1 = 10^3: a smoke run, no JSON")
    ap.add_argument("--case", action="append", choices=["A", "B", "C"], help="run only these cases")
    ap.add_argument("--seeds", type=int, nargs="+", default=None, help="case A seeds (default 0 1 2; quick: 0)")
    ap.add_argument("--repeat", type=int, default=None, help="case A: best wall time of this many runs (default 3)")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="meanfield methods of cases A and C (default: every registered adaptive method)")
    ap.add_argument("--capped", nargs="*", default=["dopri5"], help="methods run only to --cap-t1 in case A")
    ap.add_argument("--cap-t1", type=float, default=1e4)
    ap.add_argument("--ref-method", default="LSODA", help="scipy method of the rtol = 1e-10 references")
    ap.add_argument("--ref-budget", type=float, default=900.0, help="seconds for a case A reference")
    ap.add_argument("--method-b", default="auto")
    ap.add_argument("--b-timeout", type=float, default=1200.0, help="seconds for one `meanfield run` of case B")
    ap.add_argument("--b-ref-budget", type=float, default=1200.0, help="seconds for the N = 256 reference")
    ap.add_argument("--skip-b-reference", action="store_true")
    ap.add_argument("--c-budget", type=float, default=120.0, help="case C: run.max_wall_time of each run")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/long_time.json)")
    ap.add_argument("--markdown", metavar="JSON", help="print the tables of a result JSON as markdown, run nothing")
    args = ap.parse_args(argv)
    if args.markdown:
        with open(args.markdown) as fh:
            print(markdown(json.load(fh)))
        return None
    args.seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    args.repeat = args.repeat or (1 if args.quick else 3)
    cases = args.case or ["A", "B", "C"]
    info = cpu_info()
    result = {"cpu": cpu_label(info), "loadavg_at_start": load_average(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick,
              "rtol": RTOL, "atol": ATOL, "reference_rtol": REF_RTOL, "reference_atol": REF_ATOL,
              "cluster_tol": CLUSTER_TOL, "methods_registered": adaptive_methods()}
    print(f"{result['cpu']}, load {result['loadavg_at_start']}; adaptive methods: {result['methods_registered']}")
    with tempfile.TemporaryDirectory(prefix="bench_long_time_") as folder:
        for case, fn in (("A", case_a), ("B", case_b), ("C", case_c)):
            if case in cases:
                result[f"case_{case}"] = fn(args, folder)
    result["loadavg_at_end"] = load_average()
    if args.out or not args.quick:
        print("wrote", write_json(args.out or os.path.join(RESULTS, "long_time.json"), result))
    return result


if __name__ == "__main__":
    main()
