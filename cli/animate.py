"""``meanfield animate RUN.h5 -o movie.gif|movie.mp4``: particles or density over time, energy beside.

Kept out of ``main.py``, which registers it; the drawing lives in
:mod:`meanfield.animation`.
"""

from __future__ import annotations

import os

import click

from meanfield.errors import ParameterError

from ._common import guard, load_run


def _positive(value, key):
    if value < 1:
        raise ParameterError(key, "an integer >= 1", value)
    return value


#: Largest --dpi: a 10 x 4.2 inch frame is then 6000 x 2520 pixels (60 MB per RGBA frame).
MAX_DPI = 600


@click.command()
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("-o", "--output", "output", default=None, type=click.Path(dir_okay=False),
              help="Movie file, .gif (Pillow) or .mp4 (needs ffmpeg) (default: <run>.gif). "
                   "An existing file is replaced once the new movie is complete.")
@click.option("--fps", type=int, default=10, show_default=True, help="Frames per second.")
@click.option("--every", type=int, default=1, show_default=True,
              help="Draw every N-th save (the last save is always drawn).")
@click.option("--max-particles", "max_particles", type=int, default=2000, show_default=True,
              help="Draw at most this many particles (a fixed random subset).")
@click.option("--dpi", type=int, default=80, show_default=True,
              help=f"Resolution of the frames (at most {MAX_DPI}).")
@guard
def animate(path, output, fps, every, max_particles, dpi):
    """Movie of a run: particles (line, plane, circle, S^2) or the density of a pde run over the
    saved times, with the energy curve beside it."""
    from meanfield.animation import movie_writer, write_animation
    from meanfield.io.runfile import check_output_path

    for value, key in ((fps, "--fps"), (every, "--every"), (max_particles, "--max-particles"),
                       (dpi, "--dpi")):
        _positive(value, key)
    if dpi > MAX_DPI:
        raise ParameterError("--dpi", f"an integer in 1..{MAX_DPI} (frames of 10 x 4.2 inches)", dpi)
    out = f"{os.path.splitext(path)[0]}.gif" if output is None else output
    movie_writer(out, fps)  # extension and writer checked before the file is read
    check_output_path(out, "-o", overwrite=True)
    tr = load_run(path, need=("energy",))
    frames = write_animation(tr, out, fps=fps, every=every, max_particles=max_particles, dpi=dpi)
    click.echo(f"wrote {out} ({frames} frames)")
