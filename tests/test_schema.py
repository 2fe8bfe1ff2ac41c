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


def test_docs_list_the_resumable_keys_from_the_schema():
    import sys

    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    try:
        import mf_params
    finally:
        sys.path.remove(str(ROOT / "docs" / "_ext"))
    page = mf_params.generate((ROOT / "docs" / "parameters.md").read_text(encoding="utf-8"))
    assert mf_params.RESUMABLE_MARK not in page
    assert all(f"`{k}`" in page for k in RESUMABLE)


def test_a_template_names_every_key_its_choices_accept():
    """A key the template does not show is named on the section's 'also' line (from the schema)."""
    from meanfield_cli.templates import SOFTMAX_SPEC, render

    spec = {**SOFTMAX_SPEC, "run": [e for e in SOFTMAX_SPEC["run"] if e[0] != "#check_every"]}
    text = render(spec, "softmax")
    assert "check_every" not in text.split("[run]")[0]
    run_part = text.split("[run]")[1].split("[output]")[0]
    assert "# also: steps, oracle_calls, check_every (docs/parameters.md)" in run_part
