"""Convergence rates of energy decay: fits, time and oracle calls to a tolerance, speed-ups.

All functions take a trajectory-like object ``tr`` (``meanfield.load(path)``
or a RunResult) with ``tr["sim_time"]``, ``tr["oracle_calls"]``,
``tr["energy"]`` and ``tr.config``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import curve_fit

from .. import schema
from .._logspace import exp_clipped


def e_star_of(tr, given=None):
    """The reference energy E* and where it came from.

    Priority: ``given``; the file attribute ``energy_infimum`` (exact for the
    bilinear model: the infimum over the linear maps the flows can reach);
    else a fit of ``E(t) = E* + c t^-p`` to the second half of the run,
    bounded above by the lowest energy seen.

    Returns
    -------
    (float, str)
    """
    if given is not None:
        return float(given), "given"
    attrs = getattr(tr, "attrs", None) or {}
    if "energy_infimum" in attrs and np.isfinite(attrs["energy_infimum"]):
        return float(attrs["energy_infimum"]), "exact infimum"
    t = _time(tr)
    E = np.asarray(tr["energy"], dtype=float)
    half = slice(len(t) // 2, None)
    lo = float(E.min())
    try:
        tt, ee = t[half], E[half]
        p0 = (lo - 1e-3 * max(1e-12, abs(E[0] - lo)), max(1e-12, ee[0] - lo), 1.0)
        (es, c, p), _ = curve_fit(lambda x, es, c, p: es + c * x ** (-p), tt, ee, p0=p0, maxfev=20000)
        if np.isfinite(es) and es <= lo and c > 0 and p > 0:
            return float(es), "fit E* + c t^-p"
    except (RuntimeError, ValueError, TypeError):
        pass
    return lo, "lowest energy seen"


def _time(tr) -> np.ndarray:
    t = np.asarray(tr["sim_time"], dtype=float)
    # power laws are in t itself when t0 > 0 (nesterov clocks); otherwise shift by one save
    if t[0] <= 0:
        t = t - t[0] + (t[1] - t[0] if len(t) > 1 else 1.0)
    return t


def _window_mask(t, gap, window):
    if window is None:
        span = t[-1] - t[0]
        lo, hi = t[0] + 0.1 * span, t[-1]
    else:
        lo, hi = window
    return (t >= lo) & (t <= hi) & (gap > 0) & np.isfinite(gap)


def _linfit(xv, yv):
    A = np.vstack([xv, np.ones_like(xv)]).T
    coef, *_ = np.linalg.lstsq(A, yv, rcond=None)
    pred = A @ coef
    ss_res = float(np.sum((yv - pred) ** 2))
    ss_tot = float(np.sum((yv - yv.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")
    # standard error of the slope
    n = len(xv)
    se = math.sqrt(ss_res / max(1, n - 2) / max(1e-300, np.sum((xv - xv.mean()) ** 2))) if n > 2 else float("nan")
    return float(coef[0]), float(coef[1]), r2, se


def fit_power_law(t, gap, window=None) -> dict:
    """Fit ``gap ~ C t^p`` by least squares in log-log over a window.

    Returns
    -------
    dict with exponent p, constant C, r2, stderr of p, the window and the points used.
    """
    t = np.asarray(t, float)
    gap = np.asarray(gap, float)
    mask = _window_mask(t, gap, window)
    if mask.sum() < 3:
        return {"exponent": float("nan"), "constant": float("nan"), "r2": float("nan"),
                "stderr": float("nan"), "window": _win(t, mask), "points": int(mask.sum())}
    p, logc, r2, se = _linfit(np.log(t[mask]), np.log(gap[mask]))
    return {"exponent": p, "constant": exp_clipped(logc), "r2": r2, "stderr": se,
            "window": _win(t, mask), "points": int(mask.sum())}


def fit_exponential(t, gap, window=None) -> dict:
    """Fit ``gap ~ C exp(-lambda t)`` over a window; returns rate lambda, r2, stderr, window."""
    t = np.asarray(t, float)
    gap = np.asarray(gap, float)
    mask = _window_mask(t, gap, window)
    if mask.sum() < 3:
        return {"rate": float("nan"), "r2": float("nan"), "stderr": float("nan"),
                "window": _win(t, mask), "points": int(mask.sum())}
    slope, _, r2, se = _linfit(t[mask], np.log(gap[mask]))
    return {"rate": -slope, "r2": r2, "stderr": se, "window": _win(t, mask), "points": int(mask.sum())}


def _win(t, mask):
    return (float(t[mask][0]), float(t[mask][-1])) if mask.any() else (float("nan"), float("nan"))


def first_reach(x, gap, tol):
    """First value of ``x`` (time or oracle calls) at a save where ``gap <= tol``; NaN if never."""
    idx = np.nonzero(np.asarray(gap) <= tol)[0]
    return float(np.asarray(x)[idx[0]]) if len(idx) else float("nan")


ROUNDOFF = 1e3 * np.finfo(np.float64).eps  # relative resolution of a saved energy gap


def gap_at(calls, gap, k, floor=1e-300):
    """Gap at oracle-call count ``k`` (log-linear interpolation between saves).

    Gaps below ``floor`` (round-off of the energies) are read as ``floor``.
    """
    calls = np.asarray(calls, float)
    gap = np.asarray(gap, float)
    if k < calls[0] or k > calls[-1]:
        return float("nan")
    g = np.log(np.maximum(gap, floor))
    return float(np.exp(np.interp(k, calls, g)))


def describe_run(tr) -> dict:
    """``{"model", "dynamics", "integrator", ...}`` of a loaded run (a :class:`~meanfield.io.hdf5.Trajectory`), for tables."""
    P = schema.typed(tr.config or {})
    m, i = P.model, P.integrator
    return {"model": m.name, "dynamics": m.dynamics, "integrator": i.name, "h": i.h,
            "schedule": P.damping.schedule or schema.section("damping").default("schedule"),
            "solver": P.solver.kind or schema.section("solver").default("kind")}


def problem_of(tr) -> str:
    """The problem a run solves, as a label (``"bilinear, d = 3"``): model and dimension.

    Energies of runs of different problems do not compare (different floors, different
    scales); ``meanfield compare`` warns, and ``plot --kind energy`` measures each
    problem's runs from their own lowest energy.
    """
    m = schema.typed(tr.config or {}).model
    return f"{m.name}, d = {m.d}"


def is_baseline(tr) -> bool:
    """True for the runs speed-ups are measured against: first-order dynamics with the euler block."""
    d = describe_run(tr)
    return d["dynamics"] == "first_order" and d["integrator"] == "euler"


def compare_runs(trajs, names=None, e_star=None, tol=None, rel_tol=1e-2, window=None) -> list[dict]:
    """Convergence table of several runs (see ``meanfield compare``).

    Parameters
    ----------
    trajs : list of trajectories
    names : list of str, optional
        Row labels (file names).
    e_star : float, optional
        Common reference energy; otherwise per run (see :func:`e_star_of`).
    tol : float, optional
        Absolute tolerance on E - E*; default ``rel_tol`` (1e-2) times the initial gap of
        the baseline (or of the first run).
    window : (t_lo, t_hi), optional
        Fit window in time (default: the last 90% of each run).

    Returns
    -------
    list of dict, one per run: description, E*, fits, time/oracle calls to
    tolerance, and speed-ups over the first-order euler baseline of the same
    model (oracle calls to tolerance, and gap ratio at the largest common
    oracle budget).
    """
    names = names or [f"run{k}" for k in range(len(trajs))]
    rows = []
    for name, tr in zip(names, trajs):
        es, src = e_star_of(tr, e_star)
        t = _time(tr)
        gap = np.asarray(tr["energy"], float) - es
        pw = fit_power_law(t, gap, window)
        ex = fit_exponential(t, gap, window)
        rows.append({"file": name, **describe_run(tr), "E_star": es, "E_star_source": src,
                     "initial_gap": float(gap[0]), "final_gap": float(gap[-1]),
                     "power_exponent": pw["exponent"], "power_stderr": pw["stderr"], "power_r2": pw["r2"],
                     "exp_rate": ex["rate"], "exp_stderr": ex["stderr"], "exp_r2": ex["r2"],
                     "fit_window": pw["window"], "fit_points": pw["points"],
                     "_t": t, "_gap": gap, "_calls": np.asarray(tr["oracle_calls"], float)})
    base_by_model = {}
    for r, tr in zip(rows, trajs):
        if is_baseline(tr):
            base_by_model.setdefault(r["model"], r)
    ref = base_by_model.get(rows[0]["model"], rows[0]) if rows else None
    if tol is None and ref is not None:
        tol = rel_tol * ref["initial_gap"]
    for r in rows:
        r["tol"] = tol
        r["time_to_tol"] = first_reach(r["_t"], r["_gap"], tol)
        r["calls_to_tol"] = first_reach(r["_calls"], r["_gap"], tol)
    for r in rows:
        base = base_by_model.get(r["model"])
        if base is None:
            r["speedup_calls_to_tol"] = float("nan")
            r["gap_ratio_equal_calls"] = float("nan")
            r["equal_calls"] = float("nan")
            continue
        # a run within tol from the start (0 calls) has no speed-up to report
        r["speedup_calls_to_tol"] = (base["calls_to_tol"] / r["calls_to_tol"] if r["calls_to_tol"] > 0
                                     else float("nan"))
        k = min(base["_calls"][-1], r["_calls"][-1])
        r["equal_calls"] = k
        # A gap at round-off of the energies has no digits left: a ratio of it is noise
        # (it printed as 1e300 for runs that hit E* exactly), so it is reported as unknown.
        floor = ROUNDOFF * max(abs(r["E_star"]), abs(base["E_star"]),
                               abs(r["initial_gap"]), abs(base["initial_gap"]))
        g_run = gap_at(r["_calls"], r["_gap"], k, floor)
        g_base = gap_at(base["_calls"], base["_gap"], k, floor)
        r["gap_ratio_equal_calls"] = float("nan") if g_run <= floor else g_base / g_run
    for r in rows:
        for key in ("_t", "_gap", "_calls"):
            r.pop(key)
    return rows
