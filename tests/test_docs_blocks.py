"""The code of the guide's pages runs verbatim, as the README's does (tests/test_readme.py).

For every page ``docs/*.md``, in a fresh folder holding the ``params.toml`` of
``meanfield init > params.toml`` (what the getting-started page makes first): the ``bash``
blocks' ``meanfield`` commands run in a shell (exit 0, no traceback), ``python`` blocks are
executed, ``toml`` blocks whose first line names a file (``# grid.toml ...``) are written to
it and other ``toml`` blocks must parse. A block that is also in the README is run by
tests/test_readme.py and skipped here. ``text`` blocks (e.g. the commands that start a dask
scheduler) are not run.
"""

import glob
import os
import re
import subprocess
import sys
import tomllib

import pytest

from test_readme import FENCE, README, shell_commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))


def page_blocks(path):
    with open(path, encoding="utf-8") as fh:
        return FENCE.findall(fh.read())


def runnable(path):
    with open(README, encoding="utf-8") as fh:
        readme = fh.read()
    return [(lang, body) for lang, body in page_blocks(path)
            if lang in ("bash", "python", "toml") and body not in readme]


def test_toml_fragments_parse():
    n = 0
    for path in PAGES:
        for lang, body in page_blocks(path):
            if lang == "toml":
                tomllib.loads(body)
                n += 1
    assert n >= 5


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in PAGES
                                  if any(lang in ("bash", "python") for lang, _ in runnable(p))],
                         ids=os.path.basename)
def test_page_code_runs_verbatim(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")

    def sh(cmd):
        res = subprocess.run(cmd, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=900)
        assert res.returncode == 0, f"{os.path.basename(path)}: {cmd}\n{res.stdout}\n{res.stderr}"
        assert "Traceback" not in res.stderr, res.stderr

    sh("meanfield init > params.toml")
    ran = 0
    for lang, body in runnable(path):
        if lang == "bash":
            for cmd in shell_commands(body):
                sh(cmd)
                ran += 1
        elif lang == "python":
            exec(compile(body, path, "exec"), {"__name__": "docs"})
            ran += 1
        else:
            m = re.match(r"#\s*(\S+\.toml)", body.splitlines()[0])
            if m:
                (tmp_path / m.group(1)).write_text(body)
    assert ran >= 1
