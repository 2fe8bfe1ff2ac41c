"""Matplotlib figures drawn from run files (or RunResult / Trajectory objects).

Every function takes trajectories (``meanfield.load(path)`` or a RunResult)
and returns the matplotlib Figure; ``PLOTS`` maps the ``meanfield plot
--kind`` names to them.
"""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # files only: no display needed (headless CI)

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

from . import schema
from .diagnostics.rates import problem_of
from .errors import ParameterError
from .io.reader import grid_axes
from .io.runfile import check_output_path
from .models._params import MODEL
from .models.sphere import DEFAULT_CLUSTER_TOL


def _label(tr) -> str:
    P = schema.typed(tr.config or {})
    m, i = P.model, P.integrator
    sched = P.damping.schedule or schema.section("damping").default("schedule")
    if P.solver.kind == "pde":
        return f"{m.name} {m.dynamics} mean-field (pde, {i.name})"
    if m.dynamics == "first_order" and not i.name == "nag":
        return f"{m.name} first-order {i.name}"
    return f"{m.name} {m.dynamics} {i.name} ({sched})"


def _ellipse(mean, cov, **kw):
    """1-sigma ellipse of the 2 x 2 covariance ``cov`` centred at ``mean``."""
    w, V = np.linalg.eigh(cov)
    w = np.clip(w, 0.0, None)
    angle = np.degrees(np.arctan2(V[1, 1], V[0, 1]))
    return Ellipse(mean, 2 * np.sqrt(w[1]), 2 * np.sqrt(w[0]), angle=angle, fill=False, **kw)


def count_axis(ax, counts) -> None:
    """Integer ticks for a count (clusters, ...) on the y axis of ``ax``: a log axis with plain labels
    when the counts span a decade or more, a linear axis otherwise (a log axis over 1..2 labels
    its ticks 1.021x10^0)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    counts = np.asarray(counts, dtype=float)
    counts = counts[np.isfinite(counts) & (counts > 0)]
    if counts.size and counts.max() >= 10 * counts.min():
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_yscale("linear")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        if counts.size:
            ax.set_ylim(max(0.0, counts.min() - 1), counts.max() + 1)


def plot_energy(trajs, x="sim_time", e_star=None, ax=None):
    """Energy (or gap E - E*) of several runs on one log-log axis.

    Parameters
    ----------
    trajs : list of Trajectory / RunResult
    x : {"sim_time", "oracle_calls"}
        Horizontal axis.
    e_star : float, "auto" or None
        Subtract E*; "auto" uses the smallest energy seen in the runs minus a
        small margin (a run's own limit), per model and dimension when the runs
        solve different problems. None plots E itself when every
        energy is positive, otherwise ``E - E_min`` as "auto" does (energies
        of the sphere and softmax models are negative); the axis label says
        which was drawn.

    Notes
    -----
    Points with ``E - E* <= 0`` cannot be drawn on a log axis; when there
    are any, the axis label says how many were left out.
    """
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 4.4))
    ax = ax or fig.add_subplot(111)
    energies = [np.asarray(t["energy"], dtype=float) for t in trajs]
    finite = np.concatenate([E[np.isfinite(E)] for E in energies] or [np.zeros(0)])
    if e_star is None and finite.size and finite.min() <= 0:
        e_star = "auto"
        ylabel = "E - E_min (E_min: lowest energy seen, {:.6g})"
    elif e_star == "auto":
        ylabel = "E - E_min (E_min: lowest energy seen, {:.6g})"
    elif e_star is None:
        ylabel = "energy E"
    else:
        ylabel = "E - E* (E* = {:.6g})"
    problems = [problem_of(tr) for tr in trajs]
    if e_star == "auto":
        # each problem's runs from their own lowest energy: one floor for all would flatten the
        # runs of the problem with the higher energies (a bilinear run beside a sphere run)
        floors = {p: _auto_floor([E for E, q in zip(energies, problems) if q == p]) for p in problems}
        e_stars = [floors[p] for p in problems]
        if len(floors) > 1:
            ylabel = "E - E_min (E_min: lowest energy seen in the runs of each model)"
        e_star = e_stars[0]
    else:
        e_stars = [e_star or 0.0] * len(trajs)
    hidden = 0
    for tr, E, es in zip(trajs, energies, e_stars):
        xs = np.asarray(tr[x], dtype=float)
        if x == "sim_time":
            xs = xs - xs[0] + (xs[1] - xs[0] if len(xs) > 1 else 1.0)
        gap = E - es
        keep = (xs > 0) & (gap > 0)
        hidden += int(np.count_nonzero(~keep))
        ax.loglog(xs[keep], gap[keep], label=_label(tr))
    label = ylabel.format(e_star)
    if hidden:
        label += f"; {hidden} point(s) <= 0 not shown"
    ax.set_xlabel("oracle calls" if x == "oracle_calls" else "t - t0 (+ first save interval)")
    ax.set_ylabel(label, fontsize=8 if hidden else None)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _auto_floor(energies) -> float:
    """The lowest finite energy of ``energies`` (list of arrays) minus a small margin (a log axis)."""
    finite = np.concatenate([E[np.isfinite(E)] for E in energies] or [np.zeros(0)])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    return lo - 1e-6 * max(1.0, hi - lo)


def plot_moments(tr, n_ellipses=6, dims=(0, 1)):
    """Covariance ellipses over time (particles solid, moment ODE dashed) and the relative error.

    Needs a run with ``[diagnostics] moment_ode = true`` for the ODE curves;
    without it only the particle ellipses are drawn.
    """
    i, j = dims
    mean, cov, t = np.asarray(tr["mean"]), np.asarray(tr["cov"]), np.asarray(tr["sim_time"])
    if mean.shape[1] <= max(i, j) and mean.shape[1] > 1:
        raise ParameterError("dims", f"two coordinates below d = {mean.shape[1]}", dims)
    has_ode = "ode_cov" in tr
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4.4))
    if mean.shape[1] == 1:  # d = 1: no ellipses; the mean and its 1-sigma band over time
        _moments_1d(ax, t, mean[:, 0], cov[:, 0, 0], tr if has_ode else None)
        _moments_error_panel(ax2, tr, t, cov, has_ode)
        fig.suptitle(_label(tr))
        fig.tight_layout()
        return fig
    idx = np.unique(np.linspace(0, len(t) - 1, n_ellipses).astype(int))
    colors = plt.cm.viridis(np.linspace(0, 1, len(idx)))
    sub = np.ix_([i, j], [i, j])
    for c, k in zip(colors, idx):
        ax.add_patch(_ellipse(mean[k, [i, j]], cov[k][sub], color=c, lw=2, label=f"t = {t[k]:.3g}"))
        if has_ode:
            om, oc = np.asarray(tr["ode_mean"])[k], np.asarray(tr["ode_cov"])[k]
            ax.add_patch(_ellipse(om[[i, j]], oc[sub], color="k", lw=1, ls="--"))
    ax.plot(mean[:, i], mean[:, j], "-", color="0.5", lw=1)
    ax.autoscale_view()
    lim = np.concatenate([mean[:, [i, j]] - 2 * np.sqrt(np.diagonal(cov, axis1=1, axis2=2)[:, [i, j]]),
                          mean[:, [i, j]] + 2 * np.sqrt(np.diagonal(cov, axis1=1, axis2=2)[:, [i, j]])])
    # a square box around every 2-sigma extent: equal aspect without fighting fixed limits
    lo, hi = lim.min(axis=0), lim.max(axis=0)
    centre, half = (lo + hi) / 2, (hi - lo).max() / 2
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(f"x[{i}]")
    ax.set_ylabel(f"x[{j}]")
    ax.set_title("1-sigma covariance ellipses" + (" (dashed: moment ODE)" if has_ode else ""))
    ax.legend(fontsize=7)
    _moments_error_panel(ax2, tr, t, cov, has_ode)
    fig.suptitle(_label(tr))
    fig.tight_layout()
    return fig


def _moments_1d(ax, t, mean, var, ode_tr=None):
    """Mean and 1-sigma band of a one-dimensional run over time (moment ODE dashed)."""
    sd = np.sqrt(np.clip(var, 0.0, None))
    ax.plot(t, mean, lw=2, label="mean (particles)")
    ax.fill_between(t, mean - sd, mean + sd, alpha=0.3, label="mean +- 1 sigma")
    if ode_tr is not None:
        om, ov = np.asarray(ode_tr["ode_mean"])[:, 0], np.asarray(ode_tr["ode_cov"])[:, 0, 0]
        osd = np.sqrt(np.clip(ov, 0.0, None))
        ax.plot(t, om, "k--", lw=1, label="moment ODE")
        ax.plot(t, om - osd, "k:", lw=1)
        ax.plot(t, om + osd, "k:", lw=1)
    ax.set_xlabel("t")
    ax.set_ylabel("x")
    ax.set_title("mean and 1-sigma band (d = 1)")
    ax.legend(fontsize=7)


def _moments_error_panel(ax2, tr, t, cov, has_ode):
    """Right panel of the moments plot: particles vs moment ODE, or the trace of the covariance."""
    if has_ode:
        err = np.asarray(tr["ode_rel_error_cov"])
        ax2.semilogy(t[1:], np.maximum(err[1:], 1e-17), label="|cov - cov_ODE|_F / |cov_ODE|_F")
        ax2.semilogy(t[1:], np.maximum(np.asarray(tr["ode_error_mean"])[1:], 1e-17),
                     label="max |mean - mean_ODE|")
        ax2.legend(fontsize=8)
        ax2.set_title("particles vs moment ODE")
    else:
        ax2.plot(t, np.trace(cov, axis1=1, axis2=2))
        ax2.set_title("trace of the covariance")
    ax2.set_xlabel("t")
    ax2.grid(True, which="both", alpha=0.3)


def plot_particles(tr, n_frames=4, dims=(0, 1)):
    """Scatter of the particles (two coordinates) at a few save times."""
    if "x" not in tr:
        raise ParameterError("output.save", 'a run that saved "x"', "no /tasks/x in the file")
    from matplotlib.patches import Circle
    from matplotlib.ticker import MaxNLocator

    x = np.asarray(tr["x"])
    t = np.asarray(tr["sim_time"])
    idx = np.unique(np.linspace(0, len(t) - 1, n_frames).astype(int))
    # one set of limits for every frame (shared axes: tick labels once, frames comparable)
    fig, axes = plt.subplots(1, len(idx), figsize=(3.2 * len(idx), 4.0), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    i, j = dims if x.shape[2] > 1 else (0, 0)
    model = schema.typed(tr.config or {}).model
    on_sphere = model.name == "sphere" and (model.normalization or MODEL.default("normalization")) == "post_ln"
    shown = x[idx][..., [i, j]]
    shown = shown[np.isfinite(shown).all(axis=-1)]
    if on_sphere:  # unit vectors: the disc the sphere projects to
        centre, half = np.zeros(2), 1.1
    elif shown.size:
        lo, hi = shown.min(axis=0), shown.max(axis=0)
        centre, half = (lo + hi) / 2, max(float((hi - lo).max()) / 2 * 1.05, 1e-12)
    else:
        centre, half = np.zeros(2), 1.0
    for ax, k in zip(axes[0], idx):
        if on_sphere:
            ax.add_patch(Circle((0.0, 0.0), 1.0, fill=False, color="0.6", lw=0.8))
        ax.scatter(x[k, :, i], x[k, :, j], s=3, alpha=0.5)
        ax.set_title(f"t = {t[k]:.3g}")
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal", adjustable="box")
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlabel(f"x[{i}]")
    axes[0][0].set_ylabel(f"x[{j}]")
    fig.suptitle(_label(tr) + (" (first two coordinates, sphere projected)" if on_sphere and x.shape[2] > 2
                               else ""))
    return fig


def plot_clusters(tr, tol=None):
    """Clustering of tokens on the sphere: trajectories, inner products and cluster count, E_beta.

    Left: for d = 2 the angles theta_i(t) (unwrapped), otherwise the first two
    coordinates at the first and last save; colored by the cluster of each
    token at the last save (components of <theta_i, theta_j> > 1 - tol).
    Middle: 1 - min and 1 - mean pairwise inner product (log) and the number of
    clusters. Right: the interaction energy E_beta.

    Parameters
    ----------
    tr : Trajectory / RunResult of a sphere run (``x`` saved for the left panel)
    tol : float, optional
        Cluster tolerance (default: the run's ``[diagnostics] cluster_tol`` or 1e-3).
    """
    from .diagnostics.clustering import cluster_labels

    if "min_inner" not in tr:
        raise ParameterError("model.name", 'a run of model "sphere" (min_inner, n_clusters, E_beta)',
                             "a run without sphere diagnostics")
    if tol is None:
        given = schema.typed(tr.config or {}).diagnostics.cluster_tol
        tol = float(DEFAULT_CLUSTER_TOL if given is None else given)
    t = np.asarray(tr["sim_time"], dtype=float)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    ax = axes[0]
    if "x" in tr:
        x = np.asarray(tr["x"])
        labels, k = cluster_labels(x[-1], tol)
        colors = plt.cm.tab10(labels % 10)
        if x.shape[2] == 2:
            th = np.unwrap(np.arctan2(x[:, :, 1], x[:, :, 0]), axis=0)
            th -= 2 * np.pi * np.floor((th[-1] + np.pi) / (2 * np.pi))  # final angles in [-pi, pi)
            for i in range(th.shape[1]):
                ax.plot(t, th[:, i], color=colors[i], lw=0.6, alpha=0.7)
            ax.set_ylabel("angle theta_i")
            ax.set_xlabel("t")
        else:
            ax.scatter(x[0, :, 0], x[0, :, 1], s=4, color="0.75", label=f"t = {t[0]:.3g}")
            ax.scatter(x[-1, :, 0], x[-1, :, 1], s=8, c=colors, label=f"t = {t[-1]:.3g}")
            ax.set_aspect("equal", adjustable="datalim")
            ax.set_xlabel("x[0]")
            ax.set_ylabel("x[1]")
            ax.legend(fontsize=7)
        ax.set_title(f"{k} cluster(s) at the end (tol {tol:g})")
    else:
        ax.text(0.5, 0.5, 'no trajectory saved\n(output.save = ["x"])', ha="center", va="center",
                transform=ax.transAxes)
    ax = axes[1]
    ax.semilogy(t, np.maximum(1.0 - np.asarray(tr["min_inner"], float), 1e-17), label="1 - min <x_i, x_j>")
    ax.semilogy(t, np.maximum(1.0 - np.asarray(tr["mean_inner"], float), 1e-17), label="1 - mean <x_i, x_j>")
    ax.set_xlabel("t")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax2 = ax.twinx()
    ax2.step(t, np.asarray(tr["n_clusters"]), where="post", color="k", lw=1)
    ax2.set_ylabel("clusters (black)")
    count_axis(ax2, tr["n_clusters"])
    ax = axes[2]
    ax.plot(t, np.asarray(tr["E_beta"], float))
    ax.set_xlabel("t")
    ax.set_ylabel("E_beta")
    ax.grid(True, alpha=0.3)
    fig.suptitle(_label(tr))
    fig.tight_layout()
    return fig


def plot_density(tr):
    """Density of a grid run over time (space-time image; phase space: its position marginal) and its
    mass drift.

    Parameters
    ----------
    tr : Trajectory / RunResult of a pde run on a grid (``/tasks/density``, ``/grid/<axis>``)
    """
    grid = getattr(tr, "grid", None) or {}
    if "density" not in tr or not grid:
        raise ParameterError("solver.kind", 'a pde run on a grid (/tasks/density and /grid)',
                             "a run without a density")
    axis = grid_axes(grid)[0]
    centres = grid[axis]
    rho = np.asarray(tr["density"], dtype=float)
    if rho.ndim == 3 and "momentum" in grid:  # phase space (kinetic run): the position marginal
        rho = rho.sum(axis=2) * float(np.diff(grid["momentum"][:2])[0])
    t = np.asarray(tr["sim_time"], dtype=float)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    ax = axes[0]
    lo, hi = float(np.nanmin(rho)), float(np.nanmax(rho))
    flat = hi - lo <= ROUNDOFF_SPREAD * max(abs(lo), abs(hi), 1e-300)
    # a uniform state's density differs by round-off only: colour limits that tight draw that
    # round-off as stripes, so the colour scale is widened to +-1% around the value
    limits = {"vmin": lo - 0.01 * abs(lo), "vmax": hi + 0.01 * abs(hi)} if flat else {}
    mesh = ax.pcolormesh(centres, t, rho, shading="nearest", cmap="magma", **limits)
    fig.colorbar(mesh, ax=ax, label="density" + (" (uniform up to round-off)" if flat else ""))
    ax.set_xlabel(axis)
    ax.set_ylabel("t")
    ax = axes[1]
    if "mass" in tr:
        mass = np.asarray(tr["mass"], dtype=float)
        ax.plot(t, mass - mass[0])
        ax.set_ylabel("mass - initial mass")
    ax.set_xlabel("t")
    ax.grid(True, alpha=0.3)
    fig.suptitle(_label(tr))
    fig.tight_layout()
    return fig


#: Tasks ``plot_layers`` draws: the per-save diagnostics of a network run (Network.diagnostics).
LAYER_TASKS = ("cos_mean", "cos_quantiles", "cos_centred_mean", "cos_centred_quantiles", "rank_collapse",
               "effective_rank", "effective_rank_centred", "E_beta_heads")


def cosine_band(ax, depth, mean, quantiles, color, label):
    """Mean line, 25-75% band (darker) and 5-95% band of cosine similarities against depth.

    Parameters
    ----------
    ax : matplotlib Axes
    depth, mean : (T,) arrays
    quantiles : (T, 5) array, at the probabilities of ``meanfield.diagnostics.network.QUANTILES``
    color, label : line colour and legend prefix
    """
    ax.plot(depth, mean, "-o", ms=3, color=color, label=f"{label}: mean")
    ax.fill_between(depth, quantiles[:, 0], quantiles[:, 4], color=color, alpha=0.15,
                    label=f"{label}: 5-95%")
    ax.fill_between(depth, quantiles[:, 1], quantiles[:, 3], color=color, alpha=0.3,
                    label=f"{label}: 25-75%")


def plot_layers(tr):
    """Network diagnostics against depth: cosine similarities, rank collapse, effective rank, per-head E_beta.

    The horizontal axis is the blocks applied before each save (``/scales/iteration``:
    the layer index of a ``[run] layers = true`` run). Panels: the distribution of the
    pairwise cosine similarities of the tokens and of the centred tokens (mean, 25-75%
    and 5-95% bands); rank collapse ||X - 1 xbar^T||_F / ||X||_F; the entropy effective
    rank of X and of the centred X; E_beta of every head (one line per head).

    Parameters
    ----------
    tr : Trajectory / RunResult of a network run (``model.weights``), with :data:`LAYER_TASKS`
    """
    missing = [k for k in LAYER_TASKS if k not in tr]
    if missing:
        raise ParameterError("model.weights", f"a run of a network from weights (network diagnostics "
                             f"{', '.join(LAYER_TASKS)})", f"a run without {', '.join(missing)}")
    depth = np.asarray(tr["iteration"], dtype=float)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True)
    ax = axes[0, 0]
    for name, color, label in (("cos", "C0", "tokens"), ("cos_centred", "C1", "centred")):
        cosine_band(ax, depth, np.asarray(tr[name + "_mean"], float), np.asarray(tr[name + "_quantiles"], float),
                  color, label)
    ax.set_ylabel("cosine similarity, pairs i != j")
    ax.legend(fontsize=7)
    ax = axes[0, 1]
    ax.plot(depth, np.asarray(tr["rank_collapse"], float), "-o", ms=3, color="C2")
    ax.set_ylabel("rank collapse |X - 1 xbar^T|_F / |X|_F")
    ax = axes[1, 0]
    ax.plot(depth, np.asarray(tr["effective_rank"], float), "-o", ms=3, label="X")
    ax.plot(depth, np.asarray(tr["effective_rank_centred"], float), "-o", ms=3, label="X - 1 xbar^T")
    ax.set_ylabel("effective rank (Roy & Vetterli)")
    ax.legend(fontsize=7)
    ax = axes[1, 1]
    energy = np.asarray(tr["E_beta_heads"], float)
    for h in range(energy.shape[1]):
        ax.plot(depth, energy[:, h], "-o", ms=2, lw=1, label=f"head {h}")
    finite = energy[np.isfinite(energy)]
    if finite.size and finite.min() > 0 and finite.max() >= 100 * finite.min():
        ax.set_yscale("log")
    ax.set_ylabel("E_beta of each head (LN1 logits)")
    if energy.shape[1] <= 12:
        ax.legend(fontsize=6, ncol=2)
    for ax in axes.flat:
        ax.grid(True, alpha=0.3)
    from matplotlib.ticker import MaxNLocator

    axes[1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes[1]:
        ax.set_xlabel("depth (blocks applied)")
    weights = schema.typed(tr.config or {}).model.weights
    head = f"{os.path.basename(weights)}: " if isinstance(weights, str) else ""
    fig.suptitle(f"{head}{_label(tr)}, {energy.shape[1]} heads")
    fig.tight_layout()
    return fig


def check_image_path(out, key: str = "-o") -> None:
    """ParameterError unless ``out`` is an image file name matplotlib writes, in a writable directory.

    An existing file is fine (a figure is redrawn); ``key`` is the option named in the error.
    """

    formats = plt.figure().canvas.get_supported_filetypes()
    plt.close("all")
    ext = os.path.splitext(os.fspath(out))[1].lstrip(".").lower()
    if ext not in formats:
        raise ParameterError(key, f"an image file ending in one of .{', .'.join(sorted(formats))}", out)
    check_output_path(out, key, overwrite=True)


def check_script_outputs(prog: str, **paths) -> None:
    """A script's output files checked before it computes (examples/): one line, exit 2 if bad.

    ``out="fig.png"`` is checked as an image for ``--out``; any other name (``gif=...``) as a
    writable file for ``--gif``; None is skipped.
    """
    import sys

    for name, path in paths.items():
        if path is None:
            continue
        try:
            if name == "out":
                check_image_path(path, "--out")
            else:
                check_output_path(path, f"--{name}", overwrite=True)
        except ParameterError as exc:
            print(f"{prog}: error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None


#: Relative spread of a density below which ``plot_density`` treats it as uniform (round-off).
ROUNDOFF_SPREAD = 1e-9

#: ``meanfield plot --kind`` name -> (function, accepts several runs)
PLOTS = {
    "energy": (plot_energy, True),
    "moments": (plot_moments, False),
    "particles": (plot_particles, False),
}
PLOTS["clusters"] = (plot_clusters, False)
PLOTS["density"] = (plot_density, False)
PLOTS["layers"] = (plot_layers, False)

#: Tasks a run file needs for each ``--kind`` (checked before drawing).
PLOT_NEEDS = {"energy": ("energy",), "moments": ("mean", "cov"), "particles": ("x",),
              "clusters": ("min_inner", "mean_inner", "n_clusters", "E_beta"), "density": ("density",)}
