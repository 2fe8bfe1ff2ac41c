"""The package list in pyproject.toml must name every package of the source tree.

An editable install finds sub-packages even when pyproject.toml forgets them, so the
suite would pass while ``pip install .`` (non-editable) ships a broken package.
"""
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_python_requirement_matches_the_code():
    """meanfield.io.config reads parameter files with tomllib (Python >= 3.11)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.11"


def test_every_package_is_listed():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "meanfield").rglob("__init__.py")
    }
    found |= {"meanfield_cli"}
    assert found - listed == set(), f"packages missing from pyproject.toml: {found - listed}"
    assert listed - found == set(), f"packages listed but absent: {listed - found}"
