"""Fuzz the command line: malformed files, paths and options for run, info, plot, compare, sweep,
animate.

Whatever the input, a command ends with exit status 0, 1 or 2, never prints a
traceback or an "internal error", and when it fails (1 or 2) its whole output
is one line. Inputs: missing files, directories, empty / text / truncated /
foreign HDF5 files, run files without saves, odd output paths and
hypothesis-generated option values.
"""

import os
import string
import textwrap

import h5py
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meanfield_cli.main import cli

import meanfield
from meanfield.io.hdf5 import HDF5Writer

PARAMS = textwrap.dedent("""\
    [model]
    name = "bilinear"
    dynamics = "accelerated"
    d = 2
    Q = [[1.0, 0.0], [0.0, 2.0]]
    [damping]
    schedule = "constant"
    a = 1.0
    [integrator]
    name = "exp_euler"
    h = 0.05
    [initial]
    n = 16
    seed = 0
    [run]
    t0 = 1.0
    t1 = 2.0
    save_every = 5
    max_wall_time = 0.5
    [output]
    path = "fz.h5"
    save = ["x", "y"]
    """)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of good and broken inputs (names are what the tests pass)."""
    d = tmp_path_factory.mktemp("fuzz")
    (d / "p.toml").write_text(PARAMS)
    meanfield.Run(str(d / "p.toml")).simulate(str(d / "good.h5"))
    meanfield.Run(str(d / "p.toml"), ["model.dynamics=\"first_order\"", "integrator.name=\"euler\"",
                                      "damping.schedule=\"none\"", "damping.a=1.0"]
                  if False else ["run.t1=1.5"]).simulate(str(d / "good2.h5"))
    raw = (d / "good.h5").read_bytes()
    (d / "truncated.h5").write_bytes(raw[: len(raw) // 2])
    (d / "header.h5").write_bytes(raw[:600])
    (d / "empty.h5").write_bytes(b"")
    (d / "text.h5").write_text("not an HDF5 file\n")
    (d / "binary.toml").write_bytes(bytes(range(256)))
    (d / "bad.toml").write_text("[model\nd = ")
    (d / "adir").mkdir()
    with h5py.File(d / "foreign.h5", "w") as f:
        f["data"] = np.arange(3)
    with h5py.File(d / "badconfig.h5", "w") as f:
        f.attrs["config"] = "[1, 2]"
    with h5py.File(d / "noconfigjson.h5", "w") as f:
        f.attrs["config"] = "{not json"
    with h5py.File(d / "scalarsonly.h5", "w") as f:
        f.attrs["config"] = "{}"
        f.create_group("scales")["sim_time"] = np.zeros(3)
    w = HDF5Writer(str(d / "nosaves.h5"), meanfield.Run(str(d / "p.toml")).resolved())
    w.set_status("failed: at step 0")
    w.close()
    return d


FILES = ["good.h5", "truncated.h5", "header.h5", "empty.h5", "text.h5", "adir", "missing.h5",
         "foreign.h5", "badconfig.h5", "noconfigjson.h5", "scalarsonly.h5", "nosaves.h5",
         "p.toml", "binary.toml"]


@pytest.fixture
def runner(folder, monkeypatch):
    monkeypatch.chdir(folder)
    return CliRunner()


def check(res, args):
    """The contract of every command, whatever its input."""
    assert res.exception is None or isinstance(res.exception, SystemExit), \
        (args, repr(res.exception))
    assert res.exit_code in (0, 1, 2), (args, res.exit_code, res.output)
    assert "Traceback" not in res.output, (args, res.output)
    assert "internal error" not in res.output, (args, res.output)
    if res.exit_code in (1, 2):
        lines = [ln for ln in res.output.splitlines() if ln.strip()]
        assert len(lines) == 1, (args, res.output)
        assert lines[0].startswith("meanfield: "), (args, res.output)
    return res


def invoke(runner, args):
    return check(runner.invoke(cli, args), args)


@pytest.mark.parametrize("name", FILES)
def test_info_on_any_file(runner, name):
    res = invoke(runner, ["info", name])
    assert (res.exit_code == 0) == (name in ("good.h5", "nosaves.h5")), res.output


@pytest.mark.parametrize("name", FILES)
@pytest.mark.parametrize("kind", ["energy", "moments", "particles", "clusters"])
def test_plot_on_any_file(runner, name, kind, tmp_path):
    res = invoke(runner, ["plot", name, "--kind", kind, "-o", str(tmp_path / "f.png")])
    if name != "good.h5":
        assert res.exit_code == 2
    elif kind == "clusters":
        assert res.exit_code == 2  # not a sphere run


@pytest.mark.parametrize("name", FILES)
def test_animate_on_any_file(runner, name, tmp_path):
    res = invoke(runner, ["animate", name, "-o", str(tmp_path / "m.gif"), "--dpi", "20"])
    assert res.exit_code == (0 if name == "good.h5" else 2), res.output


@pytest.mark.parametrize("name", FILES)
def test_compare_on_any_file(runner, name):
    res = invoke(runner, ["compare", "good.h5", name])
    assert res.exit_code == (0 if name == "good.h5" else 2)


@pytest.mark.parametrize("name", FILES)
def test_run_resume_on_any_file(runner, name, tmp_path):
    # resume works on a copy: the folder's files stay as they are for the other tests
    src = os.path.join(os.getcwd(), name)
    target = str(tmp_path / name)
    if os.path.isfile(src):
        with open(src, "rb") as a, open(target, "wb") as b:
            b.write(a.read())
    elif os.path.isdir(src):
        os.mkdir(target)
    invoke(runner, ["run", "--resume", target, "--no-progress"])


@pytest.mark.parametrize("name", FILES + ["bad.toml"])
def test_run_params_any_file(runner, name, tmp_path):
    res = invoke(runner, ["run", name, "-o", str(tmp_path / "o.h5"), "--no-progress"])
    assert res.exit_code == (0 if name == "p.toml" else 2)


@pytest.mark.parametrize("name", FILES + ["bad.toml"])
def test_sweep_on_any_file(runner, name):
    res = invoke(runner, ["sweep", name, "--no-progress"])
    assert res.exit_code == 2


@pytest.mark.parametrize("grid", [
    'base = "missing.toml"\n[grid]\n"integrator.h" = [0.1]\n',
    'base = "p.toml"\n[grid]\n"nosection.h" = [0.1]\n',
    'base = "p.toml"\n[grid]\n"integrator.h" = []\n',
    'base = "p.toml"\n[grid]\n"integrator.h" = 0.1\n',
    'base = "p.toml"\n[grid]\ndamping = [1, 2]\n',
    'base = "p.toml"\n[grid]\noutput = [{path = "x.h5"}]\n',
    'base = "p.toml"\nseeds = "zero"\n',
    'base = "adir"\n',
    'base = 3\n',
    'base = "p.toml"\n[output]\ndir = "p.toml"\n',             # a file as output directory
    'unknown = 1\n',
])
def test_sweep_bad_grid_files(runner, grid, tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(grid.replace('"p.toml"', f'"{os.path.join(os.getcwd(), "p.toml")}"'))
    res = invoke(runner, ["sweep", str(path), "--no-progress"])
    assert res.exit_code == 2


ODD_OUTPUTS = ["adir", "adir/", "missing/dir/o.h5", "/sys/o.h5", "/proc/o.h5", "",
               "p.toml/o.h5", "good.h5/o.h5", "/dev/null/o.h5"]


@pytest.mark.parametrize("out", ODD_OUTPUTS)
def test_run_odd_outputs(runner, out):
    res = invoke(runner, ["run", "p.toml", "-o", out, "--no-progress"])
    assert res.exit_code == 2


@pytest.mark.parametrize("out", ODD_OUTPUTS + ["fig.xyz", "fig", "fig.PNG.h5", ".png"])
def test_plot_odd_outputs(runner, out):
    res = invoke(runner, ["plot", "good.h5", "-o", out])
    assert res.exit_code == 2


@pytest.mark.parametrize("out", ODD_OUTPUTS + ["m.xyz", "m", "m.gif.h5", ".gif", "m.avi"])
def test_animate_odd_outputs(runner, out):
    res = invoke(runner, ["animate", "good.h5", "-o", out])
    assert res.exit_code == 2


@pytest.mark.parametrize("out", ODD_OUTPUTS + ["t.txt", "t"])
def test_compare_odd_outputs(runner, out):
    res = invoke(runner, ["compare", "good.h5", "good2.h5", "--out", out])
    assert res.exit_code == 2


@pytest.mark.parametrize("args", [
    ["run", "p.toml", "--threads", "0"], ["run", "p.toml", "--threads", "-3"],
    ["run", "p.toml", "--threads", "99999"], ["run", "p.toml", "--threads", "x"],
    ["run", "p.toml", "--set", "nodot"], ["run", "p.toml", "--set", "a.b.c=1"],
    ["run", "p.toml", "--set", "integrator.h=-1"], ["run", "p.toml", "--set", "integrator.h=nan"],
    ["run", "p.toml", "--set", "integrator.h=1e-320"], ["run", "p.toml", "--set", "run.t1=inf"],
    ["run", "p.toml", "--set", "initial.n=0"], ["run", "p.toml", "--set", "initial.n=1e30"],
    ["run", "p.toml", "--set", "model.d=100000"], ["run", "p.toml", "--set", "run.save_every=0"],
    ["run", "--resume"], ["run", "--bogus"], ["info"], ["plot"], ["compare"],
    ["plot", "good.h5", "--kind", "nope"], ["plot", "good.h5", "--x", "nope"],
    ["plot", "good.h5", "good2.h5", "--kind", "moments"],
    ["plot", "good.h5", "--e-star", "abc"], ["plot", "good.h5", "--e-star", "nan"],
    ["compare", "good.h5", "--tol", "-1"], ["compare", "good.h5", "--tol", "nan"],
    ["compare", "good.h5", "--window", "a:b"], ["compare", "good.h5", "--window", "3"],
    ["compare", "good.h5", "--window", "2:1"], ["compare", "good.h5", "--e-star", "-inf"],
    ["init", "--model", "nope"], ["sweep", "p.toml", "--workers", "2", "--scheduler", "x"],
    ["bench", "nope"], ["nocommand"], ["animate"], ["animate", "good.h5", "--fps", "0"],
    ["animate", "good.h5", "--every", "x"], ["animate", "good.h5", "--max-particles", "-1"],
])
def test_bad_options(runner, args):
    res = invoke(runner, args)
    assert res.exit_code == 2


# ---- hypothesis: generated option values --------------------------------------------------------

TEXT = st.text(alphabet=string.ascii_letters + string.digits + " .:-+_/[]{}\"'=,#e", max_size=12)
NUMBERISH = st.one_of(TEXT, st.floats(allow_nan=True, allow_infinity=True).map(repr),
                      st.integers(-10**6, 10**6).map(str))
# relative paths only: everything stays in the test folder (tests may run as root)
PATH = st.lists(st.text(alphabet=string.ascii_lowercase + "._- ", min_size=0, max_size=6),
                min_size=1, max_size=3).map("/".join).filter(lambda p: ".." not in p)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.slow
@FUZZ
@given(window=st.one_of(st.none(), TEXT, st.tuples(NUMBERISH, NUMBERISH).map(":".join)),
       e_star=st.one_of(st.none(), NUMBERISH), tol=st.one_of(st.none(), NUMBERISH))
def test_compare_generated_options(runner, window, e_star, tol):
    args = ["compare", "good.h5", "good2.h5"]
    for opt, v in (("--window", window), ("--e-star", e_star), ("--tol", tol)):
        if v is not None:
            args += [opt, v]
    invoke(runner, args)


@pytest.mark.slow
@FUZZ
@given(kind=st.one_of(st.sampled_from(["energy", "moments", "particles"]), TEXT),
       e_star=st.one_of(st.none(), st.just("auto"), NUMBERISH), out=PATH,
       ext=st.sampled_from(["", ".png", ".svg", ".pdf", ".xyz", ".h5", "."]))
def test_plot_generated_options(runner, kind, e_star, out, ext, tmp_path_factory):
    args = ["plot", "good.h5", "--kind", kind, "-o", "gen/" + out + ext]
    os.makedirs("gen", exist_ok=True)
    if e_star is not None:
        args += ["--e-star", e_star]
    invoke(runner, args)


KEYS = ["integrator.h", "integrator.name", "damping.schedule", "damping.a", "run.t1",
        "run.save_every", "model.A", "initial.law", "initial.seed", "output.save",
        "diagnostics.dissipation", "run.dtype", "model.causal", "initial.momentum"]


@pytest.mark.slow
@FUZZ
@given(sets=st.lists(st.tuples(st.sampled_from(KEYS), NUMBERISH), max_size=3), out=PATH)
def test_run_generated_overrides(runner, sets, out):
    os.makedirs("gen", exist_ok=True)
    args = ["run", "p.toml", "-o", "gen/" + out + ".h5", "--overwrite", "--no-progress",
            "--threads", "1"]
    for key, value in sets:
        args += ["--set", f"{key}={value}"]
    invoke(runner, args)
