"""Sphinx extension: the gallery page, generated at build time from ``examples/*.py``.

Each example script's module docstring gives the entry: its first line is the title, the
following paragraphs the description. The figure is ``docs/gallery/<stem>.png`` (and an
animation ``docs/gallery/<stem>.gif`` when the example writes one), shown when present;
the script itself follows, included verbatim. Nothing is executed: the examples run in
the test suite, and their committed figures are what the page shows.

The page's hand-written text (``docs/gallery.md``) comes first; the entries are appended
in the order of the file names, so a new example appears without editing the page.
"""

from __future__ import annotations

import ast
import os

PAGE = "gallery"


def examples_dir(srcdir: str) -> str:
    """The checkout's ``examples/`` folder, next to ``docs/``."""
    return os.path.join(os.path.dirname(os.path.abspath(srcdir)), "examples")


def example_scripts(srcdir: str) -> list[str]:
    """Paths of ``examples/*.py`` in name order (files starting with ``_`` are helpers)."""
    folder = examples_dir(srcdir)
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, f) for f in sorted(os.listdir(folder))
            if f.endswith(".py") and not f.startswith("_")]


def title_and_description(path: str) -> tuple[str, str]:
    """``(title, description)`` from a script's module docstring, without running it.

    Raises
    ------
    ValueError
        When the script has no module docstring.
    """
    with open(path, encoding="utf-8") as fh:
        doc = ast.get_docstring(ast.parse(fh.read(), filename=path))
    if not doc or not doc.strip():
        raise ValueError(f"{path}: an example needs a module docstring (title line, then a description)")
    first, _, rest = doc.strip().partition("\n")
    return first.strip().rstrip("."), rest.strip()


def entry(srcdir: str, path: str) -> str:
    """The MyST text of one gallery entry."""
    stem = os.path.splitext(os.path.basename(path))[0]
    title, description = title_and_description(path)
    parts = [f"({PAGE}-{stem})=", f"## {title}", "", description, ""]
    for ext in ("png", "gif"):
        if os.path.exists(os.path.join(srcdir, "gallery", f"{stem}.{ext}")):
            parts += [f"```{{image}} gallery/{stem}.{ext}", f":alt: {title}", "```", ""]
    parts += [f"`python examples/{stem}.py` (`--size small|default|large`, `--out PATH`)", "",
              f"```{{literalinclude}} ../examples/{stem}.py", ":language: python", "```", ""]
    return "\n".join(parts)


def gallery_text(srcdir: str) -> str:
    """Every entry, or one sentence when no example exists yet."""
    scripts = example_scripts(srcdir)
    if not scripts:
        return "\n(No example scripts in `examples/` yet.)\n"
    return "\n" + "\n".join(entry(srcdir, p) for p in scripts)


def _source_read(app, docname, source):
    if docname == PAGE:
        source[0] += gallery_text(app.srcdir)


def _always_outdated(app, env, added, changed, removed):
    """The generated pages depend on files Sphinx does not track: rebuild them every time."""
    return [d for d in (PAGE, "parameters") if d in env.found_docs]


def setup(app):
    """Register the hooks (Sphinx extension entry point)."""
    app.connect("source-read", _source_read)
    app.connect("env-get-outdated", _always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
