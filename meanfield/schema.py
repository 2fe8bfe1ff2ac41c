"""The parameter schema: every key a parameter file may set, declared once.

A :class:`Key` says what a key takes (its :class:`Kind`, which checks a value
and words what it expected), its default, units or shape, help text, who
accepts it (``owners``: model, law, momentum, schedule or integrator names;
empty for every run) and whether ``--resume`` may change it. Each section of a
parameter file is a :class:`Section`; the modules that own keys declare them
where they use them (models in their modules, initial laws in
:mod:`meanfield.initial`, schedules, integrators, and the generic sections in
:mod:`meanfield.io.config`), so a new model brings its own keys.

:meth:`Section.parse` turns a section's table into a frozen dataclass (one
class per section, one field per key, generated from the declarations):
unknown keys and bad values are a :class:`~meanfield.errors.ParameterError`
naming ``section.key``; absent keys take their default. What the schema
feeds: validation (:func:`meanfield.io.config.resolve`), the key lists of the
registries, the ``--resume`` rules (:func:`resumable`), and the parameter
tables of the documentation (``docs/_ext/mf_params.py``).

This module imports nothing of the package but :mod:`meanfield.errors`.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ParameterError, check_real


class _Missing:
    """No default: the key is required where it is accepted, or its absence means something."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


@dataclass(frozen=True)
class Derived:
    """A default computed from other keys (``V = B A``); ``text`` says how, for the docs."""

    text: str


@dataclass(frozen=True)
class PerOwner:
    """A default that depends on who accepts the key: ``{owner: value}``."""

    values: dict

    def __hash__(self) -> int:
        return hash(tuple(self.values))


# ------------------------------------------------------------------------------- kinds of value
@dataclass(frozen=True)
class Kind:
    """What a key takes: ``check(full_key, value)`` returns the value or raises ParameterError.

    The base kind accepts anything (its owner checks it: matrices whose shape depends on d).
    """

    expected: str = "a value"

    def check(self, key: str, value):
        """Return ``value`` if it is valid for ``key`` (``"section.key"``), else raise."""
        return value


@dataclass(frozen=True)
class Number(Kind):
    """A finite real number (an integer with ``integer``), > 0 with ``positive``, >= ``minimum``."""

    expected: str = "a number"
    integer: bool = False
    positive: bool = False
    minimum: float | None = None

    def check(self, key, value):
        what = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ParameterError(key, what, value)
        check_real(key, value, "an integer" if self.integer else "a finite number", integer=self.integer)
        if self.positive and not value > 0:
            raise ParameterError(key, "a number > 0", value)
        if self.minimum is not None and value < self.minimum:
            raise ParameterError(key, f"a number >= {self.minimum}", value)
        return value


@dataclass(frozen=True)
class Real(Kind):
    """A finite real number (an integer with ``integer``) with ``ok(value)``; any failure says ``expected``.

    The schema's form of :func:`meanfield.errors.check_real`: ``Real("a number in (0, 2)", lambda v: 0 < v < 2)``.
    """

    ok: Callable[[Any], bool] | None = None
    integer: bool = False

    def check(self, key, value):
        check_real(key, value, self.expected, self.ok, integer=self.integer)
        return value


@dataclass(frozen=True)
class Flag(Kind):
    """``true`` or ``false``."""

    expected: str = "true or false"

    def check(self, key, value):
        if not isinstance(value, bool):
            raise ParameterError(key, self.expected, value)
        return value


def spoken_choices(values) -> str:
    """``'"a", "b" or "c"'``: quoted choices as an error message says them."""
    quoted = [f'"{v}"' for v in values]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


@dataclass(frozen=True)
class Choice(Kind):
    """One of ``values`` (strings); build it with :func:`OneOf`."""

    values: tuple = ()

    def check(self, key, value):
        if not isinstance(value, str) or value not in self.values:
            raise ParameterError(key, self.expected, value)
        return value


def OneOf(values, expected: str | None = None) -> Choice:
    """A :class:`Choice` among ``values``; ``expected`` defaults to ``'"a", "b" or "c"'``."""
    return Choice(expected or spoken_choices(values), tuple(values))


@dataclass(frozen=True)
class Checked(Kind):
    """A value checked by a function ``ok(value) -> bool`` (``expected`` words what passes)."""

    ok: Callable[[Any], bool] | None = None

    def check(self, key, value):
        if self.ok is not None and not self.ok(value):
            raise ParameterError(key, self.expected, value)
        return value


# --------------------------------------------------------------------------------------- keys
@dataclass(frozen=True)
class Key:
    """One parameter.

    Parameters
    ----------
    name : str
        The key as a parameter file writes it (``"t1"``).
    kind : Kind
        What it takes; checked by :meth:`Section.parse`.
    default : object
        Its value when absent: a value, :class:`PerOwner`, :class:`Derived`, or :data:`MISSING`.
    help : str
        One line for templates and the docs.
    units : str
        Units or shape (``"(d, d)"``, ``"s"``), empty if none.
    resumable : bool
        Whether ``--resume`` may change it.
    """

    name: str
    kind: Kind = field(default_factory=Kind)
    default: Any = MISSING
    help: str = ""
    units: str = ""
    resumable: bool = False

    def default_for(self, owner: str | None):
        """The default for ``owner`` (MISSING if there is none, or it is derived)."""
        d = self.default
        if isinstance(d, PerOwner):  # an owner that is no name (a bad model.name) has no default
            d = d.values.get(owner, MISSING) if isinstance(owner, str) else MISSING
        return MISSING if isinstance(d, Derived) else d


class Section:
    """The keys of one section of a parameter file.

    Parameters
    ----------
    name : str
        ``"model"``, ``"run"``, ...
    choice : str or None
        The key that chooses a variant (``"name"`` of ``[model]``, ``"law"`` of ``[initial]``):
        keys registered for an owner are accepted only with that variant.
    """

    def __init__(self, name: str, choice: str | None = None):
        self.name = name
        self.choice = choice
        self.keys: dict[str, Key] = {}
        #: key -> owners that accept it (empty: every run)
        self.owners: dict[str, list[str]] = {}
        self._cls = None

    # ------------------------------------------------------------------ declaring
    def declare(self, *keys: Key, owners=()) -> tuple[str, ...]:
        """Declare ``keys`` (each once in the whole package), accepted by ``owners``.

        Returns their names, for a registry's key list.
        """
        for k in keys:
            if k.name in self.keys:
                raise RuntimeError(f"{self.name}.{k.name} is declared twice")
            self.keys[k.name] = k
            self.owners[k.name] = []
        self.accept(owners, *(k.name for k in keys))
        return tuple(k.name for k in keys)

    def accept(self, owners, *names: str) -> tuple[str, ...]:
        """Let ``owners`` (a name or a sequence) accept the declared keys ``names``; returns ``names``."""
        owners = (owners,) if isinstance(owners, str) else tuple(owners)
        for n in names:
            have = self.owners[n]
            have.extend(o for o in owners if o not in have)
        self._cls = None
        return names

    def keys_of(self, owner: str | None = None) -> tuple[str, ...]:
        """Keys accepted by ``owner`` (and by every run), in declaration order."""
        return tuple(n for n, who in self.owners.items() if not who or (isinstance(owner, str) and owner in who))

    def key(self, name: str) -> Key:
        """The declaration of ``name``."""
        return self.keys[name]

    def default(self, name: str, owner: str | None = None):
        """The default of ``name`` for ``owner`` (MISSING when none is a value)."""
        return self.keys[name].default_for(owner)

    def read(self, table: dict, owner: str | None = None):
        """``table`` as :attr:`params_class`: values checked, ``owner``'s defaults filled in.

        Unlike :meth:`parse`, keys ``owner`` does not accept are not an error here (a
        registry reports them first, with its own message); undeclared ones are kept apart.
        """
        self.check(table, owner)
        return self.typed({**self.defaults(owner), **table})

    # ------------------------------------------------------------------ parsing
    @property
    def params_class(self) -> type:
        """The frozen dataclass of this section: one field per declared key (absent: None).

        Its ``given()`` returns the keys that are set, as a dict (what a registry's
        ``from_dict`` reads, where whether a key is given matters: softmax ``V``).
        """
        if self._cls is None:
            fields = [(n, Any, dataclasses.field(default=None)) for n in self.keys]
            # keys no one declared, kept for the registry that reports them (its message lists the valid ones)
            fields.append(("_unknown", dict, dataclasses.field(default_factory=dict, repr=False)))
            self._cls = dataclasses.make_dataclass(
                f"{self.name.capitalize()}Params", fields, frozen=True,
                namespace={"__doc__": f"The ``[{self.name}]`` section, parsed (see meanfield.schema).",
                           "given": _given, "options": functools.partialmethod(_options, self)})
        return self._cls

    def typed(self, table: dict):
        """``table`` as :attr:`params_class`, without checks or defaults (resolved parameters).

        Keys no one declared are kept apart; ``given()`` hands them on to the registry that
        rejects them with its own message.
        """
        known = {k: v for k, v in table.items() if k in self.keys}
        return self.params_class(**known, _unknown={k: v for k, v in table.items() if k not in self.keys})

    def check_keys(self, table: dict, owner: str | None = None, what: str | None = None) -> None:
        """Raise on the first key of ``table`` that ``owner`` does not accept.

        ``what`` words the owner in the message (``"model 'softmax'"``); the valid keys are listed.
        """
        valid = self.keys_of(owner)
        for k in table:
            if k not in valid:
                who = what or f"[{self.name}]"
                raise ParameterError(f"{self.name}.{k}", f"a key of {who} (valid: {', '.join(valid)})", k)

    def check(self, table: dict, owner: str | None = None) -> None:
        """Check every value of ``table`` against its key's kind (unknown keys are left alone)."""
        for k, v in table.items():
            if k in self.keys:
                self.keys[k].kind.check(f"{self.name}.{k}", v)

    def defaults(self, owner: str | None = None) -> dict:
        """``{key: default}`` of the keys ``owner`` accepts that have a default."""
        out = {}
        for n in self.keys_of(owner):
            d = self.keys[n].default_for(owner)
            if d is not MISSING:
                out[n] = copy.deepcopy(d)  # a list default is the caller's to change
        return out

    def parse(self, table: dict, owner: str | None = None, what: str | None = None):
        """``table`` checked (keys and values) with defaults filled in, as :attr:`params_class`."""
        self.check_keys(table, owner, what)
        return self.read(table, owner)


def _options(params, section: Section) -> dict:
    """The keys set that belong to a variant (a schedule's ``r``, an integrator's ``rtol``), not to
    every run (``schedule``, ``name``, ``h``): what a registry's constructor takes."""
    return {k: v for k, v in _given(params).items() if section.owners.get(k, True)}


def _given(params) -> dict:
    out = {f.name: getattr(params, f.name) for f in dataclasses.fields(params)
           if f.name != "_unknown" and getattr(params, f.name) is not None}
    return {**out, **params._unknown}


# ------------------------------------------------------------------------------ the sections
#: Every section of a parameter file, in the order a file writes them.
SECTIONS: dict[str, Section] = {
    "model": Section("model", choice="name"),
    "damping": Section("damping", choice="schedule"),
    "integrator": Section("integrator", choice="name"),
    "initial": Section("initial", choice="law"),
    "run": Section("run"),
    "output": Section("output"),
    "diagnostics": Section("diagnostics"),
    "solver": Section("solver"),
    "cluster": Section("cluster"),
}


@dataclass(frozen=True)
class Config:
    """A resolved parameter file, typed: one :attr:`Section.params_class` object per section.

    ``cluster`` is None for a run without a ``[cluster]`` section. Build it with :func:`typed`.
    """

    model: Any
    damping: Any
    integrator: Any
    initial: Any
    run: Any
    output: Any
    diagnostics: Any
    solver: Any
    cluster: Any = None


def typed(cfg: dict) -> Config:
    """A configuration (resolved, or as a run file stored it) as a :class:`Config`.

    A missing section is an empty one (no ``[cluster]``: None); sections no one declared
    (a newer file's) are left out.
    """
    return Config(**{name: SECTIONS[name].typed(cfg[name]) if isinstance(cfg.get(name), dict) else
                     (None if name == "cluster" else SECTIONS[name].typed({})) for name in SECTIONS})


def as_dict(P: Config) -> dict:
    """``{section: {key: value}}`` of the keys set in ``P`` (the form stored in run files)."""
    return {f.name: getattr(P, f.name).given() for f in dataclasses.fields(P) if getattr(P, f.name) is not None}


#: The sections of a sweep file (``meanfield sweep``): its top level and its ``[output]``.
SWEEP_SECTIONS: dict[str, Section] = {"sweep": Section("sweep"), "sweep.output": Section("output")}


def section(name: str) -> Section:
    """The :class:`Section` called ``name``."""
    return SECTIONS[name]


def all_keys(sweep: bool = False) -> dict[str, Key]:
    """``"section.key" -> Key`` for every declared key of a parameter file (and a sweep file's)."""
    sections = {**SECTIONS, **(SWEEP_SECTIONS if sweep else {})}
    return {f"{s}.{n}": k for s, sec in sections.items() for n, k in sec.keys.items()}


def owners_of(full_key: str) -> list[str]:
    """Who accepts ``"section.key"`` (empty: every run)."""
    s, n = full_key.split(".", 1)
    return list(SECTIONS[s].owners[n])


def resumable() -> tuple[str, ...]:
    """The keys ``--resume`` may change, as ``"section.key"``."""
    return tuple(f for f, k in all_keys().items() if k.resumable)


__all__ = [
    "MISSING",
    "SECTIONS",
    "SWEEP_SECTIONS",
    "Checked",
    "Choice",
    "Config",
    "Derived",
    "Flag",
    "Key",
    "Kind",
    "Number",
    "OneOf",
    "PerOwner",
    "Real",
    "Section",
    "all_keys",
    "as_dict",
    "owners_of",
    "resumable",
    "section",
    "spoken_choices",
    "typed",
]
