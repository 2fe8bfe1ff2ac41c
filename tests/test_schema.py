"""The parameter schema (meanfield/schema.py): every key declared once, defaults nowhere else."""

from __future__ import annotations

import ast
import pathlib

import pytest

import meanfield
from meanfield import schema
from meanfield.errors import ParameterError
from meanfield.initial import COMMON_KEYS, LAW_KEYS, MOMENTUM_KEYS
from meanfield.integrators import INTEGRATORS
from meanfield.io.config import SECTIONS
from meanfield.models import MLP_KEYS, MODELS, Network
from meanfield.resume import RESUMABLE
from meanfield.schedules import SCHEDULE_KEYS

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_the_registries_key_lists_are_the_schemas():
    declared = set(schema.all_keys())
    used = {f"model.{k}" for cls in (*MODELS.values(), Network) for k in cls.keys}
    used |= {f"model.{k}" for k in MLP_KEYS}
    used |= {f"initial.{k}" for ks in (COMMON_KEYS, *LAW_KEYS.values(), *MOMENTUM_KEYS.values()) for k in ks}
    used |= {f"damping.{k}" for ks in SCHEDULE_KEYS.values() for k in ks} | {"damping.schedule"}
    used |= {f"integrator.{k}" for by in INTEGRATORS.values() for c in by.values() for k in c.options}
    used |= {"integrator.name", "integrator.h"}
    used |= {f"{s}.{k}" for s, ks in SECTIONS.items() if ks for k in ks}
    assert used == declared, (used ^ declared)


def test_a_key_is_declared_once():
    sec = schema.Section("demo")
    sec.declare(schema.Key("a", schema.Number(), 1.0))
    with pytest.raises(RuntimeError, match="demo.a is declared twice"):
        sec.declare(schema.Key("a", schema.Number(), 2.0))


def test_parse_checks_keys_and_values_and_fills_defaults():
    sec = schema.Section("demo")
    sec.declare(schema.Key("a", schema.Number(positive=True), 1.0), schema.Key("b", schema.Flag(), False))
    sec.declare(schema.Key("c", schema.OneOf(("x", "y")), "x"), owners="special")
    p = sec.parse({"a": 2.5})
    assert (p.a, p.b, p.c) == (2.5, False, None) and dataclass_frozen(p)
    assert sec.parse({"c": "y"}, owner="special").c == "y"
    with pytest.raises(ParameterError, match=r"\[demo.c\] expected a key of \[demo\] \(valid: a, b\)"):
        sec.parse({"c": "y"})
    with pytest.raises(ParameterError, match=r"\[demo.a\] expected a number > 0, found -1"):
        sec.parse({"a": -1})
    with pytest.raises(ParameterError, match=r'\[demo.c\] expected "x" or "y", found \'z\''):
        sec.parse({"c": "z"}, owner="special")


def dataclass_frozen(obj) -> bool:
    try:
        obj.a = 0
    except AttributeError:  # dataclasses.FrozenInstanceError
        return True
    return False


def test_resumable_keys_come_from_the_schema():
    assert RESUMABLE == schema.resumable()
    assert {"run.t1", "run.steps", "run.save_every", "run.max_wall_time"} <= set(RESUMABLE)
    assert "run.dtype" not in RESUMABLE and "model.beta" not in RESUMABLE


def test_a_file_without_a_default_filled_since_still_resumes(tmp_path):
    """Files written before a default was filled in (diagnostics.moment_ode) resume all the same."""
    import json

    import h5py

    cfg = {"model": {"name": "bilinear", "dynamics": "first_order", "d": 2}, "integrator": {"h": 0.1},
           "initial": {"n": 8}, "run": {"steps": 2}}
    out = tmp_path / "r.h5"
    meanfield.Run(cfg).simulate(str(out))
    with h5py.File(out, "r+") as f:
        stored = json.loads(f.attrs["config"])
        assert stored["diagnostics"].pop("moment_ode") is False
        f.attrs["config"] = json.dumps(stored)
    from meanfield.resume import resume_run

    resume_run(str(out), overrides=["run.steps=4"])
    assert meanfield.load(str(out)).scales["iteration"][-1] == 4


def _literal(node) -> bool:
    return isinstance(node, (ast.List, ast.Tuple)) or (isinstance(node, ast.Constant) and node.value is not None)


def test_no_default_of_a_declared_key_lives_outside_the_schema():
    """``something.get("key", <literal>)`` for a declared key is a second default: read the schema's."""
    keys = {n for s in schema.SECTIONS.values() for n in s.keys}
    found = []
    for path in sorted((ROOT / "meanfield").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py")):
        if path.name == "schema.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get"
                    and len(node.args) == 2 and isinstance(node.args[0], ast.Constant)
                    and node.args[0].value in keys and _literal(node.args[1])):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)


def test_a_template_names_every_key_its_choices_accept():
    """A key the template does not show is named on the section's 'also' line (from the schema)."""
    from meanfield_cli.templates import SOFTMAX_SPEC, render

    spec = {**SOFTMAX_SPEC, "run": [e for e in SOFTMAX_SPEC["run"] if e[0] != "#check_every"]}
    text = render(spec, "softmax")
    assert "check_every" not in text.split("[run]")[0]
    run_part = text.split("[run]")[1].split("[output]")[0]
    assert "# also: steps, oracle_calls, check_every (docs/parameters.md)" in run_part


# ------------------------------------------------------------------ no key read by string elsewhere
#: The raw layer names sections and keys by string: the schema itself, the reader of raw TOML
#: tables (io/config: it hands them to the schema), the sweep file's expansion into raw tables
#: (sweep/spec), and the template renderer (cli/templates: its data is keyed by section).
RAW_LAYER = {"meanfield/schema.py", "meanfield/io/config.py", "meanfield/sweep/spec.py", "cli/templates.py"}
#: Strings that name something other than a section of the parameters: (file, string, receiver).
OTHER_MEANING = {
    ("meanfield/io/checkpoint.py", "integrator", "g"),  # the checkpoint's HDF5 group of integrator state
    ("meanfield/io/checkpoint.py", "integrator", "ckpt"),
    ("meanfield/io/writer.py", "integrator", "ck"),
    ("meanfield/resume.py", "integrator", "ck"),  # the same state, read back
    ("meanfield/diagnostics/rates.py", "integrator", "d"),  # columns of the convergence table
    ("meanfield/diagnostics/rates.py", "model", "r"),
    ("meanfield/diagnostics/rates.py", "model", "rows[0]"),
    ("cli/main.py", "model", "live"),  # the status sidecar of a running file
}
#: Names the code gives to tables of parameters (a key read from one of these is read by string).
TABLE_NAMES = {"p", "section", "sec", "table", "block", "cfg", "config", "params", "stored", "base", "init",
               "sol", "run", "damping", "integ", "model_params", "raw", "body", "s"}


def _string_reads(path):
    """``(string, receiver expression, line)`` of every ``x["s"]``, ``x.get/pop/setdefault("s")``, ``"s" in x``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant):
            yield node.slice.value, node.value, node.lineno
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("get", "pop", "setdefault") and node.args
              and isinstance(node.args[0], ast.Constant)):
            yield node.args[0].value, node.func.value, node.lineno
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.ops[0], (ast.In, ast.NotIn))):
            yield node.left.value, node.comparators[0], node.lineno


def _modules():
    for path in sorted((ROOT / "meanfield").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        if rel not in RAW_LAYER:
            yield rel, path


def test_no_section_of_the_parameters_is_read_by_string_outside_the_schema():
    """Outside the raw layer, parameters are the schema's typed objects: ``P.run.t1``, never
    ``cfg["run"]["t1"]`` (run files' configs too: ``Trajectory.params``, ``schema.typed``)."""
    sections = set(schema.SECTIONS)
    found = [f"{rel}:{line}: {ast.unparse(recv)}[{s!r}]" for rel, path in _modules()
             for s, recv, line in _string_reads(path)
             if s in sections and (rel, s, ast.unparse(recv)) not in OTHER_MEANING]
    assert not found, "\n".join(found)


def test_no_key_of_the_parameters_is_read_by_string_from_a_table_outside_the_schema():
    keys = {n for sec in schema.SECTIONS.values() for n in sec.keys}
    found = []
    for rel, path in _modules():
        for s, recv, line in _string_reads(path):
            text = ast.unparse(recv)
            table = (isinstance(recv, ast.Name) and recv.id in TABLE_NAMES) or "given()" in text or "config" in text
            if s in keys and table:
                found.append(f"{rel}:{line}: {text}[{s!r}]")
    assert not found, "\n".join(found)


def test_the_string_read_checks_can_fail(tmp_path):
    """The scanners above see the reads they forbid."""
    bad = tmp_path / "bad.py"
    bad.write_text('def f(cfg, p):\n    return cfg["run"], p.get("beta"), "causal" in p\n')
    reads = {(s, ast.unparse(r)) for s, r, _ in _string_reads(bad)}
    assert reads == {("run", "cfg"), ("beta", "p"), ("causal", "p")}


def test_a_run_file_written_before_the_schema_resumes_bit_for_bit(tmp_path):
    """tests/data/pre_schema_run.h5 was written by meanfield at ad8842c (before the schema: its
    stored parameters lack the defaults filled in since); resumed from 4 to 8 steps it equals
    8 steps run now."""
    import json
    import shutil

    import h5py
    import numpy as np

    from meanfield.resume import resume_run

    path = str(tmp_path / "old.h5")
    shutil.copy(ROOT / "tests" / "data" / "pre_schema_run.h5", path)
    with h5py.File(path, "r") as f:
        stored = json.loads(f.attrs["config"])
    assert "moment_ode" not in stored["diagnostics"]  # what makes the file 'old'
    res = resume_run(path, overrides=["run.steps=8"])
    stored["run"]["steps"] = 8
    ref = meanfield.Run(stored).simulate()
    assert res.status == "finished"
    np.testing.assert_array_equal(res.x, ref.x)
    np.testing.assert_array_equal(meanfield.load(path)["energy"], ref["energy"])
