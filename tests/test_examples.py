"""The gallery's examples run: every examples/*.py at ``--size small`` writes a valid PNG.

Also the contract the gallery page is generated from: a module docstring
whose first line is the title followed by a description, ``--size
small|default|large`` and ``--out PATH`` options, a default output under
docs/gallery/<stem>.png, and a committed figure for every example.
"""

import ast
import glob
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "examples", "*.py")))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def stem(path):
    return os.path.splitext(os.path.basename(path))[0]


def test_there_are_enough_examples():
    assert len(EXAMPLES) >= 8, EXAMPLES


@pytest.mark.parametrize("path", EXAMPLES, ids=stem)
def test_contract(path):
    with open(path) as f:
        source = f.read()
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"{path}: no module docstring"
    lines = doc.splitlines()
    assert lines[0].strip() and not lines[0].endswith("."), "first line: a title"
    assert len(lines) > 2 and not lines[1].strip() and len(" ".join(lines[2:]).split()) >= 30, \
        "a blank line, then a paragraph describing the study"
    for needed in ('"--size"', '"--out"', '"small"', '"default"', '"large"',
                   f'"docs", "gallery", "{stem(path)}.png"'):
        assert needed in source, f"{path}: {needed} missing"
    # the options themselves are exercised by test_runs_at_small_size (--size small --out)
    assert 'default="default"' in source, "--size defaults to default"
    figure = os.path.join(ROOT, "docs", "gallery", f"{stem(path)}.png")
    assert os.path.isfile(figure), f"run `python examples/{stem(path)}.py` to make {figure}"
    with open(figure, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert os.path.getsize(figure) < 400_000, "keep the gallery's figures small (dpi ~100)"


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=stem)
def test_runs_at_small_size(path, tmp_path):
    out = tmp_path / f"{stem(path)}.png"
    # from another directory: the script must not depend on the working directory
    res = subprocess.run([sys.executable, path, "--size", "small", "--out", str(out)],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(out, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert os.path.getsize(out) > 5000  # a figure, not an empty canvas
