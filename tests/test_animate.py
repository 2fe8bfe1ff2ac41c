"""``meanfield animate``: a valid GIF for every kind of run, the frames it promises, bad inputs exit 2.

Kinds: particles on the line, the plane, the circle, S^2 (and d = 4), a grid pde run (density
on the circle) and a kinetic pde run (phase-space density). Bad inputs: missing file, a run
without saves, a run with nothing to draw, unknown extension, .mp4 without ffmpeg, unwritable
output, non-positive options; an existing movie survives a failed write.
"""

import gc
import os

import numpy as np
import pytest
from click.testing import CliRunner
from matplotlib import animation as mpl_animation
from meanfield_cli.main import cli
from PIL import Image

import meanfield
from meanfield.animation import frame_indices, make_animation
from meanfield.io.hdf5 import HDF5Writer


def _particles(name, d, n, extra=None, **run):
    model = {"bilinear": {"name": "bilinear", "dynamics": "accelerated", "d": d},
             "softmax": {"name": "softmax", "dynamics": "first_order", "d": d},
             "sphere": {"name": "sphere", "dynamics": "first_order", "d": d, "beta": 4.0}}[name]
    cfg = {"model": model,
           "integrator": {"name": "exp_euler" if name == "bilinear" else "euler", "h": 0.1},
           "initial": {"law": "sphere_uniform" if name == "sphere" else "gaussian", "n": n, "seed": 0},
           "run": {"t0": 1.0, "steps": 12, "save_every": 3, **run},
           "output": {"save": ["x", "y"] if name == "bilinear" else ["x"]}}
    if name == "bilinear":
        cfg["damping"] = {"schedule": "constant", "a": 1.0}
    cfg.update(extra or {})
    return cfg


GRID = {"model": {"name": "sphere", "dynamics": "first_order", "d": 2, "beta": 3.0},
        "solver": {"kind": "pde", "grid": 128}, "integrator": {"name": "heun", "h": 0.02},
        "initial": {"law": "von_mises", "mu": [0.0, 2.3], "kappa": 4.0, "weights": [0.6, 0.4]},
        "run": {"t0": 0.0, "steps": 20, "save_every": 5}}
KINETIC = {"model": {"name": "sphere", "dynamics": "accelerated", "d": 2, "beta": 2.0},
           "solver": {"kind": "pde", "grid": [64, 41]}, "damping": {"schedule": "constant", "a": 1.0},
           "integrator": {"name": "strang", "h": 0.1},
           "initial": {"law": "von_mises", "mu": [0.0, 2.5], "kappa": [2.0, 1.0], "weights": [0.6, 0.4],
                       "momentum": "zero"},
           "run": {"t0": 0.0, "steps": 6, "save_every": 2}}
RUNS = {"line": _particles("softmax", 1, 50), "plane": _particles("bilinear", 2, 60),
        "circle": _particles("sphere", 2, 30), "s2": _particles("sphere", 3, 40),
        "d4": _particles("sphere", 4, 20), "grid": GRID, "kinetic": KINETIC}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    d = tmp_path_factory.mktemp("animate")
    paths = {}
    for name, cfg in RUNS.items():
        paths[name] = str(d / f"{name}.h5")
        meanfield.Run(cfg).simulate(paths[name])
    cfg = _particles("bilinear", 2, 10)
    cfg["output"] = {"save": []}
    paths["nothing"] = str(d / "nothing.h5")  # energies only: nothing to animate
    meanfield.Run(cfg).simulate(paths["nothing"])
    paths["nosaves"] = str(d / "nosaves.h5")  # what a run killed before its first save leaves
    w = HDF5Writer(paths["nosaves"], meanfield.Run(RUNS["plane"]).resolved())
    w.set_status("failed: at step 0")
    w.close()
    return paths


def invoke(args):
    res = CliRunner().invoke(cli, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    return res


def gif_frames(path):
    """The frames of a GIF as RGB arrays (fails unless it is a readable GIF)."""
    with Image.open(path) as im:
        assert im.format == "GIF"
        frames = []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGB")))
    return frames


def test_frame_indices():
    assert frame_indices(7, 3).tolist() == [0, 3, 6]
    assert frame_indices(8, 3).tolist() == [0, 3, 6, 7]  # the last save is always drawn
    assert frame_indices(5, 1).tolist() == [0, 1, 2, 3, 4]
    assert frame_indices(1, 10).tolist() == [0]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RUNS))
def test_every_kind_gives_a_gif(runs, name, tmp_path):
    out = str(tmp_path / "m.gif")
    res = invoke(["animate", runs[name], "-o", out, "--dpi", "40"])
    assert res.exit_code == 0, res.output
    saves = len(meanfield.load(runs[name]).t)
    frames = gif_frames(out)
    assert len(frames) == saves, (len(frames), saves)
    assert f"({saves} frames)" in res.output
    # the picture moves: first and last frames differ (particles / density and the time marker)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).sum() > 0


def test_every_subsamples_frames(runs, tmp_path):
    out = str(tmp_path / "m.gif")
    saves = len(meanfield.load(runs["plane"]).t)
    res = invoke(["animate", runs["plane"], "-o", out, "--every", "3", "--dpi", "30", "--fps", "3"])
    assert res.exit_code == 0, res.output
    assert len(gif_frames(out)) == len(frame_indices(saves, 3)) < saves


NOT_SAVED = pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")


@NOT_SAVED
def test_max_particles_and_sphere_view(runs):
    tr = meanfield.load(runs["s2"])
    fig, anim = make_animation(tr, max_particles=25)
    ax = fig.axes[0]
    offsets = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(offsets) == 25  # front and back hemispheres together: the subsample
    assert np.all(np.hypot(offsets[:, 0], offsets[:, 1]) <= 1 + 1e-12)  # orthographic view of S^2
    fig2, anim2 = make_animation(meanfield.load(runs["plane"]), max_particles=1000)
    assert len(fig2.axes[0].collections[0].get_offsets()) == 60  # fewer particles than the cap: all
    del anim, anim2
    gc.collect()  # the animations go now, while their warning is filtered


@NOT_SAVED
def test_kinetic_frame_is_the_phase_space_density(runs):
    tr = meanfield.load(runs["kinetic"])
    fig, anim = make_animation(tr)
    (im,) = fig.axes[0].images
    f = np.asarray(tr["density"])
    anim._func(len(f) - 1)  # draw the last save
    np.testing.assert_array_equal(np.asarray(im.get_array()), f[-1].T)
    del anim
    gc.collect()


def test_default_output_name(runs, tmp_path):
    src = tmp_path / "r.h5"
    src.write_bytes(open(runs["circle"], "rb").read())
    res = invoke(["animate", str(src), "--dpi", "30"])
    assert res.exit_code == 0, res.output
    assert len(gif_frames(str(tmp_path / "r.gif"))) > 1


def _one_line_error(res):
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("meanfield: error"), res.output
    return lines[0]


@pytest.mark.parametrize("case", ["missing", "nosaves", "nothing", "ext", "noext", "dir", "nodir",
                                  "fps", "every", "max", "dpi"])
def test_bad_inputs_exit_2(runs, tmp_path, case):
    good, out = runs["plane"], str(tmp_path / "m.gif")
    args = {"missing": [str(tmp_path / "nope.h5"), "-o", out],
            "nosaves": [runs["nosaves"], "-o", out],
            "nothing": [runs["nothing"], "-o", out],
            "ext": [good, "-o", str(tmp_path / "m.avi")],
            "noext": [good, "-o", str(tmp_path / "m")],
            "dir": [good, "-o", str(tmp_path)],
            "nodir": [good, "-o", str(tmp_path / "no" / "m.gif")],
            "fps": [good, "-o", out, "--fps", "0"],
            "every": [good, "-o", out, "--every", "0"],
            "max": [good, "-o", out, "--max-particles", "0"],
            "dpi": [good, "-o", out, "--dpi", "-1"]}[case]
    _one_line_error(invoke(["animate", *args]))
    assert not os.path.exists(out)


def test_mp4_without_ffmpeg(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(mpl_animation.writers, "is_available", lambda name: name != "ffmpeg")
    line = _one_line_error(invoke(["animate", runs["plane"], "-o", str(tmp_path / "m.mp4")]))
    assert "ffmpeg" in line
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("after", [0, 2])
def test_failed_write_keeps_the_old_movie(runs, tmp_path, monkeypatch, after):
    out = tmp_path / "m.gif"
    out.write_bytes(b"old movie")
    grab = mpl_animation.PillowWriter.grab_frame
    calls = []

    def broken(self, *args, **kwargs):  # fails at the first frame, or after two good ones
        calls.append(1)
        if len(calls) > after:
            raise OSError(28, "No space left on device")
        return grab(self, *args, **kwargs)

    monkeypatch.setattr(mpl_animation.PillowWriter, "grab_frame", broken)
    _one_line_error(invoke(["animate", runs["plane"], "-o", str(out)]))
    assert out.read_bytes() == b"old movie"
    assert os.listdir(tmp_path) == ["m.gif"]  # no temporary file left behind
    monkeypatch.undo()
    res = invoke(["animate", runs["plane"], "-o", str(out), "--dpi", "30"])  # like plot -o: replaced
    assert res.exit_code == 0, res.output
    assert len(gif_frames(str(out))) > 1


def test_ctrl_c_aborts_without_resume_hint(runs, tmp_path, monkeypatch):
    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(mpl_animation.PillowWriter, "grab_frame", interrupted)
    res = CliRunner().invoke(cli, ["animate", runs["plane"], "-o", str(tmp_path / "m.gif")],
                             standalone_mode=True)
    assert res.exit_code == 130, res.output
    assert "resume" not in res.output and "checkpoint" not in res.output
    assert os.listdir(tmp_path) == []


def test_explicit_frames(runs, tmp_path):
    from meanfield.animation import write_animation

    tr = meanfield.load(runs["circle"])
    out = str(tmp_path / "m.gif")
    assert write_animation(tr, out, frames=[0, 2, 4], dpi=30) == 3
    assert len(gif_frames(out)) == 3
    for bad in ([], [0, len(tr.t)], [-1], [0.5]):
        with pytest.raises(meanfield.ParameterError):
            write_animation(tr, out, frames=bad)
    assert len(gif_frames(out)) == 3  # the refused calls left the movie alone
