"""Animations of run files: particles or density over the saved times, the energy beside.

``meanfield animate RUN.h5 -o movie.gif`` calls :func:`write_animation`;
:func:`make_animation` returns the matplotlib animation itself.

What is drawn depends on what the run saved:

* particles (``/tasks/x``, shape ``(T, N, d)``): a histogram of the positions
  for d = 1; the plane for d = 2 (with the unit circle for the sphere model);
  an orthographic view of S^2 for the sphere model in d = 3 (front hemisphere
  dark, back light); the first two coordinates otherwise;
* a grid run (``/tasks/density`` ``(T, M)``, ``/grid/<axis>``): the density
  over the position axis;
* a kinetic run (``/tasks/density`` ``(T, M, K)``, ``/grid/theta`` and
  ``/grid/momentum``): the phase-space density f(theta, omega) as an image.

The right panel is the energy against time with a marker at the current save.
GIF files are written by Pillow (no system package needed); MP4 needs ffmpeg.
"""

from __future__ import annotations

import contextlib
import os

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.colors import PowerNorm

from . import schema
from .errors import ParameterError
from .io.reader import grid_axes
from .io.writer import temp_file_beside
from .plotting import _label

#: Movie formats: extension -> matplotlib writer name.
WRITERS = {".gif": "pillow", ".mp4": "ffmpeg"}


def frame_indices(n_saves: int, every: int = 1) -> np.ndarray:
    """Save indices drawn as frames: every ``every``-th save, always the last one.

    Parameters
    ----------
    n_saves : int
        Number of saves T of the run.
    every : int
        Keep one save in ``every``.

    Returns
    -------
    (F,) int array
    """
    idx = np.arange(0, n_saves, every)
    if idx.size and idx[-1] != n_saves - 1:
        idx = np.append(idx, n_saves - 1)
    return idx


def orthographic(x, view):
    """Orthographic projection of points of S^2 seen from the direction ``view``.

    Parameters
    ----------
    x : (..., 3) array
        Points on the unit sphere (any leading shape, e.g. (T, N, 3)).
    view : (3,) array
        Direction of the viewer (need not be normalized; a zero vector means +e_3).

    Returns
    -------
    proj : (..., 2) array
        Coordinates in the image plane (inside the unit disc).
    front : (...,) bool array
        True for points on the hemisphere facing the viewer.
    """
    view = np.asarray(view, dtype=float)
    norm = np.linalg.norm(view)
    v = view / norm if norm > 1e-8 else np.array([0.0, 0.0, 1.0])
    e1 = np.cross(v, [0.0, 0.0, 1.0] if abs(v[2]) < 0.9 else [1.0, 0.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(v, e1)
    return np.stack([x @ e1, x @ e2], axis=-1), x @ v >= 0


def _energy_panel(ax, tr):
    """Energy against time; returns a function that moves the time marker to save ``k``."""
    t = np.asarray(tr["sim_time"], dtype=float)
    E = np.asarray(tr["energy"], dtype=float) if "energy" in tr else np.full(t.shape, np.nan)
    ok = np.isfinite(E)
    ax.plot(t, E, color="C0", lw=1.5)
    if ok.any() and E[ok].min() > 0 and E[ok].max() > 100 * E[ok].min():
        ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("energy")
    ax.grid(True, alpha=0.3)
    line = ax.axvline(t[0], color="k", lw=0.8)
    (dot,) = ax.plot([t[0]], [E[0]], "o", color="C3", ms=5)

    def move(k):
        line.set_xdata([t[k], t[k]])
        dot.set_data([t[k]], [E[k]])
        return line, dot

    return move


def _particles_panel(ax, tr, max_particles, seed):
    """Scatter (or histogram) of the particles; returns ``draw(k)``."""
    x = np.asarray(tr["x"])
    n, d = x.shape[1], x.shape[2]
    if n > max_particles:
        keep = np.sort(np.random.default_rng(seed).choice(n, max_particles, replace=False))
        x = x[:, keep]
    sphere = schema.typed(tr.config or {}).model.name == "sphere"
    if sphere:  # pre/peri-LN runs store the residual stream r_i theta_i: show the directions
        x = x / np.linalg.norm(x, axis=2, keepdims=True)
    note = f"{x.shape[1]} of {n} particles" if x.shape[1] < n else f"{n} particles"
    if d == 1:
        lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
        edges = np.linspace(lo, hi if hi > lo else lo + 1.0, 61)
        hists = np.stack([np.histogram(x[k, :, 0], bins=edges, density=True)[0] for k in range(len(x))])
        centres = 0.5 * (edges[1:] + edges[:-1])
        (line,) = ax.plot(centres, hists[0], drawstyle="steps-mid")
        ax.set_ylim(0, 1.05 * max(float(np.nanmax(hists)), 1e-12))
        ax.set_xlabel("x")
        ax.set_ylabel("density of the particles")

        def draw(k):
            line.set_ydata(hists[k])
            return (line,)

        return draw, note
    if sphere and d == 3:  # orthographic view along the initial mean direction
        proj, front = orthographic(x, x[0].mean(axis=0))
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8))
        back = ax.scatter(proj[0, ~front[0], 0], proj[0, ~front[0], 1], s=6, color="0.7")
        fore = ax.scatter(proj[0, front[0], 0], proj[0, front[0], 1], s=10, color="C0")
        ax.set_xlim(-1.1, 1.1)
        ax.set_ylim(-1.1, 1.1)
        ax.set_aspect("equal")
        ax.set_axis_off()
        note += " on S^2 (orthographic; grey: back)"

        def draw(k):
            back.set_offsets(proj[k, ~front[k]])
            fore.set_offsets(proj[k, front[k]])
            return back, fore

        return draw, note
    xy = x[:, :, :2]
    sc = ax.scatter(xy[0, :, 0], xy[0, :, 1], s=6, color="C0", alpha=0.7)
    if sphere:
        ax.add_patch(plt.Circle((0, 0), 1.0, fill=False, color="0.6", lw=0.8))
        lo, hi = np.array([-1.1, -1.1]), np.array([1.1, 1.1])
    else:
        finite = xy[np.isfinite(xy).all(axis=2)]
        lo, hi = finite.min(axis=0), finite.max(axis=0)
        pad = 0.05 * np.maximum(hi - lo, 1e-12)
        lo, hi = lo - pad, hi + pad
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("x[0]")
    ax.set_ylabel("x[1]")
    if d > 2:
        note += f" (first 2 of d = {d} coordinates)"

    def draw(k):
        sc.set_offsets(xy[k])
        return (sc,)

    return draw, note


def _density_panel(ax, tr):
    """Density of a grid run (a curve) or of a kinetic run (a phase-space image); returns ``draw(k)``."""
    rho = np.asarray(tr["density"], dtype=float)
    grid = tr.grid
    axis = grid_axes(grid)[0]
    centres = np.asarray(grid[axis], dtype=float)
    if rho.ndim == 3:
        omega = np.asarray(grid["momentum"], dtype=float)
        dth, dom = centres[1] - centres[0], omega[1] - omega[0]
        ext = [centres[0] - dth / 2, centres[-1] + dth / 2, omega[0] - dom / 2, omega[-1] + dom / 2]
        # one colour scale for all frames; the power law keeps thin filaments visible next to
        # the peaks of collapsed clusters
        norm = PowerNorm(0.4, vmin=0.0, vmax=max(float(np.nanmax(rho)), 1e-300))
        im = ax.imshow(rho[0].T, origin="lower", extent=ext, aspect="auto", cmap="magma", norm=norm,
                       interpolation="nearest")
        ax.figure.colorbar(im, ax=ax, label="f(theta, omega) (power-law colour scale)")
        ax.set_xlabel(axis)
        ax.set_ylabel("momentum omega")

        def draw(k):
            im.set_data(rho[k].T)
            return (im,)

        return draw, f"phase-space density, {rho.shape[1]} x {rho.shape[2]} cells"
    (line,) = ax.plot(centres, rho[0], color="C1")
    ax.set_xlim(centres[0], centres[-1])
    ax.set_ylim(0.0, 1.05 * float(np.nanmax(rho)))
    ax.set_xlabel(axis)
    ax.set_ylabel("density rho")

    def draw(k):
        line.set_ydata(rho[k])
        return (line,)

    return draw, f"density, {rho.shape[1]} cells"


def _kind_and_saves(tr):
    """("density" or "particles", number of saves that hold it), or ParameterError."""
    if "density" in tr and getattr(tr, "grid", None):
        kind, name = "density", "density"
    elif "x" in tr:
        kind, name = "particles", "x"
    else:
        raise ParameterError("output.save", 'a run that saved "x" (particles) or a pde run on a grid '
                             "(density)", "neither /tasks/x nor /tasks/density in the run")
    n = min(len(tr["sim_time"]), len(tr[name]))
    if n < 1:
        raise ParameterError("(file)", "a run with at least 1 save", "0 saves")
    return kind, n


def _check_frames(frames, n, every):
    """The save indices to draw: ``frames`` checked against the ``n`` saves, or every ``every``-th."""
    if frames is None:
        return frame_indices(n, every)
    frames = np.asarray(frames)
    if frames.ndim != 1 or frames.size == 0 or frames.dtype.kind not in "iu" \
            or frames.min() < 0 or frames.max() >= n:
        raise ParameterError("frames", f"a non-empty list of save indices in 0..{n - 1}", frames)
    return frames


def _frames_figure(tr, every, max_particles, seed, frames):
    """``(fig, update, frames)``: the figure, the function drawing save ``k``, the saves to draw."""
    kind, n = _kind_and_saves(tr)
    frames = _check_frames(frames, n, every)
    t = np.asarray(tr["sim_time"], dtype=float)
    fig, (ax, ax_e) = plt.subplots(1, 2, figsize=(10, 4.2), gridspec_kw={"width_ratios": [1.25, 1]})
    if kind == "density":
        draw, note = _density_panel(ax, tr)
    else:
        draw, note = _particles_panel(ax, tr, max_particles, seed)
    move = _energy_panel(ax_e, tr)
    title = ax.set_title("", fontsize=10)
    fig.suptitle(_label(tr), fontsize=10)

    def update(k):
        title.set_text(f"{note}\nt = {t[k]:.4g}")
        return (*draw(k), *move(k), title)

    update(frames[0])  # the layout sees the two-line title
    fig.tight_layout()
    return fig, update, frames


def make_animation(tr, fps: int = 10, every: int = 1, max_particles: int = 2000, seed: int = 0,
                   frames=None):
    """The animation of a run: particles or density at the saved times, the energy beside.

    Parameters
    ----------
    tr : Trajectory / RunResult
        A run that saved ``x`` ``(T, N, d)`` or ``density`` ``(T, M)`` / ``(T, M, K)``.
    fps : int
        Frames per second of the movie.
    every : int
        Draw every ``every``-th save (the last save is always drawn).
    max_particles : int
        At most this many particles are drawn (a fixed random subset, ``seed``).
    seed : int
    frames : (F,) int array, optional
        The save indices to draw, in order (e.g. spaced logarithmically in time);
        default :func:`frame_indices` ``(T, every)``.

    Returns
    -------
    fig : matplotlib Figure
    anim : matplotlib.animation.FuncAnimation

    Raises
    ------
    ParameterError
        When the run saved neither ``x`` nor ``density``, or has no save.
    """
    fig, update, frames = _frames_figure(tr, every, max_particles, seed, frames)
    anim = animation.FuncAnimation(fig, update, frames=frames, interval=1000.0 / fps, blit=False)
    return fig, anim


def movie_writer(path: str, fps: int):
    """The matplotlib writer for ``path`` (by extension), or ParameterError naming ``-o``.

    ``.gif`` uses Pillow; ``.mp4`` needs the ffmpeg program on the PATH.
    """
    ext = os.path.splitext(path)[1].lower()
    if ext not in WRITERS:
        raise ParameterError("-o", f"a movie file ending in one of {', '.join(WRITERS)}", path)
    name = WRITERS[ext]
    if not animation.writers.is_available(name):
        raise ParameterError("-o", f"a .gif file ({name}, needed for {ext}, is not installed)", path)
    return animation.writers[name](fps=fps)


def write_animation(tr, path, fps: int = 10, every: int = 1, max_particles: int = 2000,
                    dpi: int = 80, seed: int = 0, frames=None) -> int:
    """Write the animation of :func:`make_animation` to ``path`` (``.gif`` or ``.mp4``).

    The frames go through the movie writer one by one into a temporary file in
    the same directory, which is moved over ``path`` only when complete: an
    existing file is replaced only by a finished movie.

    Returns
    -------
    int
        The number of frames written.
    """
    path = os.fspath(path)
    writer = movie_writer(path, fps)
    fig, update, frames = _frames_figure(tr, every, max_particles, seed, frames)
    tmp = temp_file_beside(path, ".meanfield-animate-", os.path.splitext(path)[1])
    try:
        writer.setup(fig, tmp, dpi)
        grabbed = 0
        try:
            for k in frames:
                update(k)
                writer.grab_frame()
                grabbed += 1
        except BaseException:
            if grabbed:  # let the writer close its file or process; the partial movie goes below
                with contextlib.suppress(Exception):
                    writer.finish()
            raise
        writer.finish()
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return len(frames)
