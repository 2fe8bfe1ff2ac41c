"""Every public function and class of the API reference has a numpydoc docstring.

Public: the modules the API reference documents (``docs/api.md``: every module of
``meanfield`` whose dotted name has no part starting with ``_``), the functions and
classes each defines (not those it imports), and the methods and properties of those
classes whose names do not start with ``_``. A method that overrides a documented method
of a base class inherits its docstring (as the rendered reference shows it).
"""

import importlib
import re
import inspect
import pkgutil

import pytest

import meanfield


def public_modules():
    names = ["meanfield"]
    for info in pkgutil.walk_packages(meanfield.__path__, "meanfield."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def _doc(obj) -> str:
    return (inspect.getdoc(obj) or "").strip()


def public_objects(modname):
    """``(qualified name, object)`` of the functions, classes and methods ``modname`` defines."""
    mod = importlib.import_module(modname)
    names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
    for name in names:
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)) or obj.__module__ != modname:
            continue
        yield f"{modname}.{name}", obj
        if inspect.isclass(obj):
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if isinstance(member, property) or inspect.isfunction(member):
                    yield f"{modname}.{name}.{attr}", getattr(obj, attr) if isinstance(member, property) \
                        else member


def inherited_doc(cls, attr) -> str:
    for base in cls.__mro__[1:]:
        if attr in vars(base):
            member = vars(base)[attr]
            doc = _doc(member.fget if isinstance(member, property) else member)
            if doc:
                return doc
    return ""


def missing_docstrings(modname):
    mod = importlib.import_module(modname)
    out = [] if _doc(mod) else [modname]
    for qualname, obj in public_objects(modname):
        if isinstance(obj, property):
            obj = obj.fget
        if _doc(obj):
            continue
        owner_name, _, attr = qualname.rpartition(".")
        owner = getattr(mod, owner_name.rpartition(".")[2], None)
        if inspect.isclass(owner) and owner_name != modname and inherited_doc(owner, attr):
            continue
        out.append(qualname)
    return out


def test_the_walk_finds_the_api():
    mods = public_modules()
    assert {"meanfield.run", "meanfield.models.softmax", "meanfield.pde.kinetic",
            "meanfield.io.hdf5", "meanfield.diagnostics.rates"} <= set(mods)
    assert not [m for m in mods if "._" in m]
    names = {q for q, _ in public_objects("meanfield.run")}
    assert {"meanfield.run.Run", "meanfield.run.Run.simulate", "meanfield.run.RunResult.t"} <= names


@pytest.mark.parametrize("modname", public_modules())
def test_public_api_has_docstrings(modname):
    missing = missing_docstrings(modname)
    assert not missing, f"public functions/classes without a docstring: {missing}"


def test_a_missing_docstring_is_found(monkeypatch):
    import meanfield.schedules as sched

    monkeypatch.setattr(sched.make_schedule, "__doc__", None)
    assert "meanfield.schedules.make_schedule" in missing_docstrings("meanfield.schedules")


def numpydoc_problems(modname):
    """Docstrings numpydoc cannot parse cleanly, and array arguments/returns without a shape."""
    import warnings

    from numpydoc.docscrape import NumpyDocString

    out = []
    for qualname, obj in public_objects(modname):
        doc = _doc(obj.fget if isinstance(obj, property) else obj)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                parsed = NumpyDocString(doc)
            except Exception as exc:  # numpydoc's warnings and errors both mean a malformed section
                out.append(f"{qualname}: {exc}")
                continue
        for p in parsed["Parameters"] + parsed["Returns"] + parsed["Attributes"]:
            if "array" in p.type and not re.search(r"\(|shape", p.type + " ".join(p.desc)):
                out.append(f"{qualname}: {p.name} is an array without a shape")
    return out


@pytest.mark.parametrize("modname", public_modules())
def test_docstrings_are_numpydoc_with_shapes(modname):
    pytest.importorskip("numpydoc", reason='the docs extra is not installed (pip install -e ".[test,docs]")')
    problems = numpydoc_problems(modname)
    assert not problems, "\n".join(problems)


def test_a_shapeless_array_is_found(monkeypatch):
    pytest.importorskip("numpydoc", reason='the docs extra is not installed (pip install -e ".[test,docs]")')
    import meanfield.initial as initial

    doc = "Sample.\n\nReturns\n-------\nx : array\n    The positions.\n"
    monkeypatch.setattr(initial.momentum_zero, "__doc__", doc)
    assert any("x is an array without a shape" in p for p in numpydoc_problems("meanfield.initial"))
