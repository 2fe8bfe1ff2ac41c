"""Sphinx extension: the parameter reference's tables, generated from the code's registries.

``docs/parameters.md`` holds the hand-written meaning of every key in tables
``| key | default | meaning |``. At build time each table is regenerated from the
parameter schema (:mod:`meanfield.schema`, where every key is declared once):

* the keys are the schema's (:func:`accepted_keys`); a key the schema declares but no
  table lists is appended with a warning, and a listed key it does not declare is a
  warning (``sphinx-build -W`` fails on both);
* the default is the schema's (:func:`code_defaults`); only where it holds no value
  (required keys, defaults derived from other keys) does the hand-written default
  stand, and a hand-written default that disagrees with the schema's is a warning;
* a column "for" says which models, laws, momenta, schedules or integrators accept the key.

``tests/test_docs.py`` runs the same checks on the Markdown without Sphinx.
"""

from __future__ import annotations

import re

PAGE = "parameters"
ROW = re.compile(r"^\| `([a-z]+)\.([A-Za-z_0-9]+)` \| (.*?) \| (.*) \|\s*$")
HEADER = "| key | default | meaning |"


# ----------------------------------------------------------------------------- the schema
def _load_schema():
    """:mod:`meanfield.schema` with every module that declares keys imported."""
    import meanfield.io.config  # the generic sections
    import meanfield.run  # noqa: F401 - models, laws, schedules, integrators
    from meanfield import schema

    return schema


def accepted_keys() -> dict[str, list[str]]:
    """Every ``section.key`` the schema declares -> who accepts it (empty list: every run)."""
    schema = _load_schema()
    return {full: schema.owners_of(full) for full in schema.all_keys()}


def code_defaults() -> dict[str, dict[str, object]]:
    """``section.key -> {who: default}`` for every key whose default the schema holds as a value.

    ``who`` is a model, law, momentum, schedule or integrator name, or ``""`` when the
    default is the same for everyone. Defaults derived from other keys (softmax ``V = B A``)
    are left out: the hand-written text says them.
    """
    schema = _load_schema()
    out: dict[str, dict[str, object]] = {}
    for full, key in schema.all_keys().items():
        owners = schema.owners_of(full)
        if isinstance(key.default, schema.PerOwner):
            by = {who: key.default_for(who) for who in owners or key.default.values}
        elif owners and full.split(".")[0] in ("model", "damping", "integrator"):
            by = {who: key.default_for(who) for who in owners}
        else:
            by = {"": key.default_for(None)}
        by = {who: v for who, v in by.items() if v is not schema.MISSING}
        if by:
            out[full] = by
    return out


# ------------------------------------------------------------------------------- rendering
def _matrix_name(v):
    import numpy as np

    a = np.asarray(v, dtype=float)
    if a.ndim == 2 and a.shape[0] == a.shape[1]:
        if np.array_equal(a, np.eye(a.shape[0])):
            return "identity"
        if not a.any():
            return "zero"
    if a.ndim == 1 and not a.any():
        return 0
    return None


def render_value(v) -> str:
    """A default as it is written in a parameter file (matrices by name: ``"identity"``)."""
    if isinstance(v, list) and v and not isinstance(v[0], str):
        named = _matrix_name(v)
        if named is not None:
            v = named
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(render_value(x) for x in v) + "]"
    return repr(v)


def render_default(by_who: dict[str, object]) -> str:
    """``{who: value}`` -> one cell: a value, or values grouped by who has them."""
    groups: dict[str, list[str]] = {}
    for who, v in by_who.items():
        groups.setdefault(render_value(v), []).append(who)
    if len(groups) == 1:
        return f"`{next(iter(groups))}`"
    return ", ".join(f"`{val}` ({', '.join(w for w in whos if w)})" for val, whos in groups.items())


def _numbers(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"(?<![\w.])-?\d+(?:\.\d*)?(?:e-?\d+)?(?![\w.])", text)]


def agrees(cell: str, value) -> bool:
    """Does a hand-written default cell state ``value``?"""
    text = render_value(value)
    if isinstance(value, (bool, str)) or text.strip('"') in ("identity", "zero"):
        return text in cell or f"`{text.strip(chr(34))}`" in cell
    if isinstance(value, list):
        return all(agrees(cell, v) for v in value)
    return any(abs(x - float(value)) <= 1e-12 * max(1.0, abs(float(value))) for x in _numbers(cell))


def check_rows(text: str, keys=None, defaults=None) -> list[str]:
    """Disagreements between the tables of ``parameters.md`` and the code, one message each."""
    keys = accepted_keys() if keys is None else keys
    defaults = code_defaults() if defaults is None else defaults
    rows = {f"{m.group(1)}.{m.group(2)}": m.group(3) for m in map(ROW.match, text.splitlines()) if m}
    problems = [f"docs/parameters.md does not list {k}, which the code accepts" for k in keys if k not in rows]
    problems += [f"docs/parameters.md lists {k}, which the code rejects" for k in rows if k not in keys]
    for k, cell in rows.items():
        for who, v in defaults.get(k, {}).items():
            if not agrees(cell, v):
                problems.append(f"docs/parameters.md: default of {k} is {cell!r}, the code's is "
                                f"{render_value(v)}" + (f" ({who})" if who else ""))
    return problems


def _covered(key, keys, defaults) -> bool:
    """Does the code hold a literal default of ``key`` for everything that accepts it?"""
    who = defaults.get(key)
    return bool(who) and ("" in who or not keys.get(key) or set(keys[key]) <= set(who))


def generate(text: str, keys=None, defaults=None) -> str:
    """``parameters.md`` with every key table regenerated from the code (see the module docstring)."""
    keys = accepted_keys() if keys is None else keys
    defaults = code_defaults() if defaults is None else defaults
    listed = {f"{m.group(1)}.{m.group(2)}" for m in map(ROW.match, text.splitlines()) if m}
    out, section = [], None
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = ROW.match(line)
        if line.strip() == HEADER:
            out.append("| key | default | for | meaning |")
            continue
        if line.strip() == "|---|---|---|" and i and lines[i - 1].strip() == HEADER:
            out.append("|---|---|---|---|")
            continue
        if m:
            section, key = m.group(1), f"{m.group(1)}.{m.group(2)}"
            default = render_default(defaults[key]) if _covered(key, keys, defaults) else m.group(3)
            who = ", ".join(keys.get(key, [])) or "all"
            out.append(f"| `{key}` | {default} | {who} | {m.group(4)} |")
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if not ROW.match(nxt):  # end of the table: append the keys nobody documented
                for k in sorted(k for k in keys if k.startswith(section + ".") and k not in listed):
                    d = render_default(defaults[k]) if _covered(k, keys, defaults) else "-"
                    out.append(f"| `{k}` | {d} | {', '.join(keys[k]) or 'all'} | (not documented yet) |")
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def _source_read(app, docname, source):
    if docname != PAGE:
        return
    from sphinx.util import logging

    log = logging.getLogger(__name__)
    keys, defaults = accepted_keys(), code_defaults()
    for problem in check_rows(source[0], keys, defaults):
        log.warning(problem, location=docname)
    source[0] = generate(source[0], keys, defaults)


def setup(app):
    """Register the hook (Sphinx extension entry point)."""
    app.connect("source-read", _source_read)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
