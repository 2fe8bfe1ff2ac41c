"""Sphinx extension: the parameter reference's tables, generated from the code's registries.

``docs/parameters.md`` holds the hand-written meaning of every key in tables
``| key | default | meaning |``. At build time each table is regenerated:

* the keys are those the code accepts (:func:`accepted_keys`, from the registries of
  models, schedules, integrators, initial laws and momenta, and the ``SECTIONS`` of
  :mod:`meanfield.io.config`); a key the code accepts but no table lists is appended
  with a warning, and a listed key the code rejects is a warning (``sphinx-build -W``
  fails on both);
* the default is the code's own (:func:`code_defaults`: resolved from a minimal run of
  every model, read off the schedules' and integrators' classes, and from the literal
  defaults of the ``.get(key, default)`` calls that read ``[initial]`` and
  ``[diagnostics]``); only where the code holds no literal default (required keys,
  defaults derived from other keys) does the hand-written default stand, and a
  hand-written default that disagrees with the code's is a warning;
* a column "for" says which models, laws, momenta, schedules or integrators accept the key.

``tests/test_docs.py`` runs the same checks on the Markdown without Sphinx.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import re

PAGE = "parameters"
ROW = re.compile(r"^\| `([a-z]+)\.([A-Za-z_0-9]+)` \| (.*?) \| (.*) \|\s*$")
HEADER = "| key | default | meaning |"


# ----------------------------------------------------------------------------- the code's keys
def accepted_keys() -> dict[str, list[str]]:
    """Every ``section.key`` the code accepts -> who accepts it (empty list: every run)."""
    from meanfield.initial import COMMON_KEYS, LAW_KEYS, MOMENTUM_KEYS
    from meanfield.integrators import INTEGRATORS
    from meanfield.io.config import SECTIONS
    from meanfield.models import MLP_KEYS, MODELS, Network
    from meanfield.schedules import SCHEDULE_KEYS

    out: dict[str, list[str]] = {}

    def add(key, who=None):
        out.setdefault(key, [])
        if who is not None and who not in out[key]:
            out[key].append(who)

    for name, cls in MODELS.items():
        for k in cls.keys:
            add(f"model.{k}", name)
    for k in ("name", "dynamics", "d"):  # every model reads these
        out[f"model.{k}"] = []
    for name in MODELS:  # the token-wise MLP sub-block: every model but bilinear (make_model)
        if name != "bilinear":
            for k in MLP_KEYS:
                add(f"model.{k}", name)
    for k in Network.keys:  # softmax with model.weights: a network from a weight file
        add(f"model.{k}", "softmax")
    add("damping.schedule")
    for sched, ks in SCHEDULE_KEYS.items():
        for k in ks:
            add(f"damping.{k}", sched)
    add("integrator.name")
    add("integrator.h")
    for name, by_kind in INTEGRATORS.items():
        for cls in by_kind.values():
            for k in cls.options:
                add(f"integrator.{k}", name)
    for k in COMMON_KEYS:
        add(f"initial.{k}")
    for law, ks in LAW_KEYS.items():
        for k in ks:
            add(f"initial.{k}", f"law {law}")
    for mom, ks in MOMENTUM_KEYS.items():
        for k in ks:
            add(f"initial.{k}", f"momentum {mom}")
    for section in ("run", "output", "diagnostics", "solver"):
        for k in SECTIONS[section]:
            add(f"{section}.{k}")
    for k in SECTIONS["cluster"]:  # the softmax and sphere models (exact summation)
        add(f"cluster.{k}", "softmax")
        add(f"cluster.{k}", "sphere")
    return out


# ------------------------------------------------------------------------- the code's defaults
def _probe_run(model: dict):
    import meanfield

    law = "sphere_uniform" if model["name"] == "sphere" else "gaussian"
    return meanfield.Run({"model": {"d": 2, **model}, "integrator": {"h": 0.1},
                          "run": {"steps": 1}, "initial": {"n": 4, "law": law}})


def _literal_gets(path: str) -> dict[str, object]:
    """``section.key -> default`` of every ``section.get("key", <literal>)`` and
    ``cfg["section"].get("key", <literal>)`` call in a source file."""
    with open(path, encoding="utf-8") as fh:
        tree = ast.parse(fh.read())
    out = {}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get" and len(node.args) == 2
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            continue
        recv = node.func.value
        if isinstance(recv, ast.Name) and recv.id == "section":
            section = "initial"
        elif isinstance(recv, ast.Subscript) and isinstance(recv.slice, ast.Constant):
            section = recv.slice.value
        else:
            continue
        try:
            value = ast.literal_eval(node.args[1])
        except ValueError:
            continue  # a default computed from other keys: not a literal
        out[f"{section}.{node.args[0].value}"] = value
    return out


def code_defaults() -> dict[str, dict[str, object]]:
    """``section.key -> {who: default}`` for every key whose default the code holds as a value.

    ``who`` is a model, schedule, integrator or dynamics name, or ``""`` when the default is
    the same for every run. Defaults that depend on other keys (softmax ``V = B A``) are
    left out: a second probe with other matrices finds them.
    """
    import numpy as np

    import meanfield.initial
    import meanfield.run
    from meanfield.integrators import INTEGRATORS
    from meanfield.models import MODELS
    from meanfield.models._fourier import summation_keys
    from meanfield.schedules import SCHEDULES

    out: dict[str, dict[str, object]] = {}
    for name in MODELS:
        first = _probe_run({"name": name})
        dyn = first.model.dynamics
        other = "first_order" if dyn == "accelerated" else "accelerated"
        out.setdefault("model.dynamics", {})[name] = dyn
        for dynamics in (dyn, other):
            probe = _probe_run({"name": name, "dynamics": dynamics})
            changed = _probe_run({"name": name, "dynamics": dynamics,
                                  **{k: 2.0 for k in ("A", "B", "Q", "K", "beta") if k in MODELS[name].keys}})
            cfg, cfg2 = probe.resolved(), changed.resolved()
            for k, v in cfg["model"].items():
                if k in ("name", "d", "dynamics") or k not in MODELS[name].keys:
                    continue
                if k in cfg2["model"] and not np.array_equal(np.asarray(v), np.asarray(cfg2["model"][k])) \
                        and k not in ("A", "B", "Q", "K", "beta"):
                    continue  # derived from the matrices the second probe changed
                out.setdefault(f"model.{k}", {}).setdefault(name, v)
            out.setdefault("integrator.name", {})[dynamics] = cfg["integrator"]["name"]
            for section in ("damping", "run", "output", "diagnostics", "solver"):
                for k, v in cfg[section].items():
                    if not (section == "run" and k == "steps"):
                        out.setdefault(f"{section}.{k}", {})[""] = v
            if hasattr(probe.model, "cluster_tol"):
                out["diagnostics.cluster_tol"] = {"": probe.model.cluster_tol}
    summation, tol = summation_keys({})
    for name in MODELS:
        if "summation" in MODELS[name].keys:
            out.setdefault("model.summation", {})[name] = summation
            out.setdefault("model.summation_tol", {})[name] = tol
    for name, cls in SCHEDULES.items():
        if dataclasses.is_dataclass(cls):
            for f in dataclasses.fields(cls):
                if f.name != "t0" and f.default is not dataclasses.MISSING:
                    out.setdefault(f"damping.{f.name}", {})[name] = f.default
    for name, by_kind in INTEGRATORS.items():
        for cls in by_kind.values():
            for k in cls.options:
                if getattr(cls, k, None) is not None:
                    out.setdefault(f"integrator.{k}", {})[name] = getattr(cls, k)
    from meanfield.cluster import ClusterSpec

    for f in dataclasses.fields(ClusterSpec):
        if f.default is not None:  # workers: all cores, said in words
            out[f"cluster.{f.name}"] = {"": f.default}
    for path in (inspect.getsourcefile(meanfield.initial), inspect.getsourcefile(meanfield.run)):
        for key, v in _literal_gets(path).items():
            out.setdefault(key, {"": v})
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
