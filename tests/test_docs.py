"""docs/ cannot drift from the code: every accepted key is documented with the code's default,
and nothing stale is.

Also: the README and docs point only to files a user's checkout has, every figure and
benchmark script is on the page that says how to reproduce it, and every example script
has the docstring the gallery is generated from. (These checks need no Sphinx; the build
itself is tests/test_docs_build.py.)
"""

import glob
import os
import re
import sys

import pytest

from meanfield.initial import LAWS, MOMENTA
from meanfield.integrators import INTEGRATORS
from meanfield.models import MODELS
from meanfield.schedules import SCHEDULES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "docs", "_ext"))
import mf_gallery  # noqa: E402  (the docs' own generators: docs/_ext)
import mf_params  # noqa: E402

DOC_PAGES = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md")))


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as fh:
        return fh.read()


def accepted_keys() -> set:
    """Every ``section.key`` some registry of the code accepts."""
    return set(mf_params.accepted_keys())


def documented_keys(text) -> set:
    """``section.key`` in the first column of the tables of parameters.md."""
    return set(re.findall(r"^\| `([a-z]+\.[A-Za-z_0-9]+)` \|", text, re.M))


def test_parameters_md_lists_every_key_and_no_other():
    text = read("docs", "parameters.md")
    doc, code = documented_keys(text), accepted_keys()
    assert not code - doc, f"keys the code accepts but docs/parameters.md does not list: {sorted(code - doc)}"
    assert not doc - code, f"keys docs/parameters.md lists but the code rejects: {sorted(doc - code)}"


def test_parameters_md_defaults_are_the_codes():
    problems = mf_params.check_rows(read("docs", "parameters.md"))
    assert not problems, "\n".join(problems)


def test_code_defaults_are_found():
    """The generator reads real defaults (a registry change that hides them fails here)."""
    d = mf_params.code_defaults()
    assert d["integrator.omega"] == {"tao2": 5.0, "strang": 5.0}
    assert d["damping.r"] == {"nesterov": 3.0} and d["initial.dof"] == {"": 5.0}
    assert d["model.Q"]["softmax"] == "zero"  # as a parameter file writes it (the schema's default)
    assert "softmax" not in d.get("model.V", {})  # V = B A: derived, left to the hand-written text
    assert mf_params.render_default(d["model.Q"]) == '`"identity"` (bilinear, sphere), `"zero"` (softmax)'


def test_a_wrong_default_is_caught():
    text = read("docs", "parameters.md").replace("| `damping.r` | `3.0`", "| `damping.r` | `2.0`")
    assert any("damping.r" in p for p in mf_params.check_rows(text))
    text = read("docs", "parameters.md").replace("| `run.dtype` |", "| `run.precision` |")
    problems = mf_params.check_rows(text)
    assert any("run.precision" in p for p in problems) and any("run.dtype" in p for p in problems)
    assert "| `run.dtype` | `\"float64\"` | all | (not documented yet) |" in mf_params.generate(text)


def test_parameters_md_names_every_choice():
    text = read("docs", "parameters.md")
    names = set(LAWS) | set(MOMENTA) | set(SCHEDULES) | set(INTEGRATORS) | set(MODELS)
    missing = {n for n in names if f"`{n}`" not in text}
    assert not missing, missing


@pytest.mark.parametrize("path", ["README.md", *DOC_PAGES])
def test_links_point_into_the_checkout(path):
    text = read(path)
    assert "shared/" not in text and "SPEC §" not in text and "SPEC.md" not in text
    base = os.path.dirname(os.path.join(ROOT, path))
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if target.startswith("http"):
            continue
        assert os.path.exists(os.path.join(base, target)), f"{path} links to missing {target}"


def test_models_md_covers_every_model_and_integrator():
    text = read("docs", "models.md")
    for name in list(MODELS) + list(INTEGRATORS) + list(SCHEDULES):
        assert name in text, name
    for scheme in ("post_ln", "pre_ln", "peri_ln", "causal"):
        assert scheme in text


def test_exit_statuses_documented():
    for path in ("docs/getting-started.md", "docs/file-format.md"):
        text = read(path)
        for status in ("0", "1", "2", "130"):
            assert re.search(rf"\b{status}\b", text), (path, status)
    assert "130" in read("docs", "getting-started.md").split("## Command line")[1].split("\n## ")[0]


def test_every_figure_and_benchmark_script_is_on_the_reproduce_page():
    text = read("docs", "reproduce.md")
    scripts = [os.path.relpath(p, ROOT) for folder in ("figures", "benchmarks")
               for p in glob.glob(os.path.join(ROOT, folder, "*.py"))
               if not os.path.basename(p).startswith("_")]
    missing = [s for s in scripts if f"python {s}" not in text]
    assert not missing, f"docs/reproduce.md gives no command for {missing}"
    pngs = [os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "figures", "*.png"))]
    assert not [p for p in pngs if f"`{p}`" not in text]


def example_scripts():
    """``examples/*.py`` of the checkout (what the gallery page shows)."""
    return mf_gallery.example_scripts(os.path.join(ROOT, "docs"))


@pytest.mark.parametrize("path", example_scripts() or [pytest.param(None, marks=pytest.mark.skip(
    reason="no examples/*.py in this checkout yet"))])
def test_examples_have_a_title_and_a_description(path):
    title, description = mf_gallery.title_and_description(path)
    assert title and len(title) < 100 and description, path


def test_sweep_file_keys_documented():
    from meanfield.sweep import OUTPUT_KEYS, SWEEP_KEYS

    table = read("docs", "parameters.md").split("## Sweep files")[1]
    rows = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    expected = {k for k in SWEEP_KEYS if k not in ("grid", "output")} | {"[grid]"}
    expected |= {f"[output] {k}" for k in OUTPUT_KEYS}
    assert rows == expected, (rows, expected)
