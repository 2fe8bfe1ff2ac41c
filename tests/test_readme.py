"""The README's code runs verbatim: its shell commands and Python blocks, in order, in a fresh folder.

Fenced blocks are taken in the order of the README:

- ``bash``: every ``meanfield ...`` command (segments joined by ``&&``; the
  ``pip install`` and ``pytest`` segments of the quick start are what got us
  here, and the docs build is tests/test_docs_build.py: they are skipped), run in
  a shell; exit status 0, no traceback;
- ``python``: executed as written;
- ``toml`` whose first line is a comment naming a file (``# grid.toml ...``):
  written to that file; any other ``toml`` block is a fragment of a parameter
  file and must at least parse as TOML.

Blocks without a language (command synopses, printed tables) are not code.
"""

import os
import re
import subprocess
import sys
import tomllib

import pytest

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def blocks():
    with open(README, encoding="utf-8") as fh:
        return [(lang, body) for lang, body in FENCE.findall(fh.read())]


def shell_commands(body):
    """The ``meanfield`` commands of a bash block, one string per line (``&&`` chains kept)."""
    out = []
    for line in body.splitlines():
        line = re.sub(r"\s+#.*$", "", line).strip()
        if not line:
            continue
        parts = [p.strip() for p in line.split("&&")]
        keep = [p for p in parts if p.startswith("meanfield")]
        skipped = [p for p in parts if not p.startswith("meanfield")]
        assert all(p.startswith(("pip ", "python -m pytest", "python -m sphinx")) for p in skipped), line
        if keep:
            out.append(" && ".join(keep))
    return out


def test_readme_has_the_blocks_it_promises():
    langs = [lang for lang, _ in blocks()]
    assert langs.count("python") >= 1 and langs.count("bash") >= 2
    cmds = [c for lang, body in blocks() if lang == "bash" for c in shell_commands(body)]
    assert "meanfield run" in cmds  # the quick start's default example
    assert any(c.startswith("meanfield init") for c in cmds)


def test_readme_test_commands_are_what_ci_runs():
    """The quick start runs the fast tier; CI runs the same install, then the full suite with a fresh cache."""
    cmds = [line.split("#")[0].strip() for lang, body in blocks() if lang == "bash"
            for line in body.splitlines() if "python -m pytest" in line]
    assert len(cmds) == 2, cmds
    quick, full = cmds
    install, fast = [p.strip() for p in quick.split("&&")]
    assert fast == "python -m pytest -q" and full == "python -m pytest -q --full"
    with open(os.path.join(os.path.dirname(README), ".ci", "run"), encoding="utf-8") as fh:
        ci = fh.read().strip().splitlines()[-1]
    assert ci == f"{install} && MEANFIELD_FRESH_NUMBA_CACHE=1 {full}"


def test_readme_is_short_and_points_to_the_guide():
    with open(README, encoding="utf-8") as fh:
        text = fh.read()
    assert len(text.splitlines()) <= 200
    assert "python -m sphinx -W docs" in text and "](docs/index.md)" in text


@pytest.mark.slow
def test_readme_code_runs_verbatim(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    ran = []
    for lang, body in blocks():
        if lang == "bash":
            for cmd in shell_commands(body):
                res = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True,
                                     text=True, timeout=900)
                assert res.returncode == 0, f"{cmd}\n{res.stdout}\n{res.stderr}"
                assert "Traceback" not in res.stderr, res.stderr
                ran.append(cmd)
        elif lang == "python":
            exec(compile(body, "README.md", "exec"), {"__name__": "readme"})
            ran.append("python block")
        elif lang == "toml":
            first = body.splitlines()[0]
            m = re.match(r"#\s*(\S+\.toml)", first)
            if m:
                (tmp_path / m.group(1)).write_text(body)
            else:
                tomllib.loads(body)  # a fragment: valid TOML all the same
    assert os.path.exists("out-energy.png") and os.path.exists("api.h5")
    assert len(ran) >= 6
