"""Sphinx extension: render the project's plain-text math in docstrings literally.

meanfield's docstrings write formulas as plain text (``|x_i|``, ``2*x``, ``sum_j E_ij``),
readable in ``help()`` and in the source. reStructuredText would read ``|...|`` as a
substitution and ``*...*`` as emphasis; this hook escapes both outside backquoted spans
before numpydoc turns the sections into reST, so the API reference shows what the source says.
"""

from __future__ import annotations

import re

# backquoted spans (``literal``, `role`, :math:`...`) are left alone
_SPAN = re.compile(r"(:?[a-z]*:?`+[^`]*`+_?)")


def escape_line(line: str) -> str:
    """Escape ``|`` and ``*`` outside backquoted spans (``*args``/``**kwargs`` names kept)."""
    if re.match(r"^\s*\*{1,2}\w+\s*(:|,|$)", line):  # a numpydoc parameter line: *args : ...
        return line
    bullet = re.match(r"^\s*\* ", line)  # a bullet list item keeps its bullet
    head, line = (line[:bullet.end()], line[bullet.end():]) if bullet else ("", line)
    parts = _SPAN.split(line)
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("\\", "\\\\").replace("|", r"\|").replace("*", r"\*")
    return head + "".join(parts)


def _process(app, what, name, obj, options, lines):
    in_block = False
    for i, line in enumerate(lines):
        stripped = line.strip()
        if in_block and stripped and not line.startswith((" ", "\t")):
            in_block = False
        if stripped.startswith(">>>") or in_block:
            continue
        lines[i] = escape_line(line)
        if stripped.endswith("::"):  # a literal block follows
            in_block = True


def setup(app):
    """Register the hook before numpydoc's (Sphinx extension entry point)."""
    app.connect("autodoc-process-docstring", _process, priority=400)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
