"""Commented template parameter files printed by ``meanfield init``, rendered from the schema.

A template is data: per section, the keys it sets (with example values) or shows commented,
and notes where the example needs more than the key's help. Everything else comes from
:mod:`meanfield.schema`: a key's comment is its help unless a note is given, a commented
key without a value shows the schema's default, the choices of ``damping.schedule``,
``integrator.name``, ``initial.law`` and ``initial.momentum`` are listed from the registries,
and every key the template's model, schedule, integrator and laws accept but the template
does not show is named on a last line of its section, so no key can go missing.
"""

from __future__ import annotations

from meanfield import schema
from meanfield.initial import LAW_KEYS, MOMENTUM_KEYS
from meanfield.integrators import INTEGRATORS, names_for
from meanfield.models import MLP_KEYS, MODELS
from meanfield.schedules import SCHEDULE_KEYS

#: Column of the comments.
COLUMN = 32
#: A commented key shown with the schema's default.
DEFAULT = object()


class Raw(str):
    """A value written as it is (a placeholder such as ``[[...]]``)."""


def toml_value(v) -> str:
    """``v`` as TOML writes it."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return repr(v)


def _wrap(line: str, width: int = 84) -> list[str]:
    """A long list of choices ``a | b | c ...`` cut at its bars into lines of at most ``width``."""
    if len(line) <= width or " | " not in line:
        return [line]
    out, cur = [], ""
    for part in line.split(" | "):
        if cur and len(cur) + 3 + len(part) > width:
            out.append(cur)
            cur = "| " + part
        else:
            cur = part if not cur else f"{cur} | {part}"
    return out + [cur]


def _line(text: str, note: str) -> list[str]:
    """``text`` with ``note`` in the comment column; further note lines continue below it."""
    if not note:
        return [text]
    first, *rest = [w for line in note.split("\n") for w in _wrap(line)]
    pad = COLUMN - len(text) if len(text) < COLUMN else 3
    return [f"{text}{' ' * pad}# {first}".rstrip()] + [f"{' ' * COLUMN}# {r}".rstrip() for r in rest]


def choices_note(section: str, key: str, model: str, laws=None) -> str:
    """The choices of a key that picks a variant, with the keys each takes (from the registries)."""
    if (section, key) == ("damping", "schedule"):
        return " | ".join(f"{n} ({', '.join(ks)})" if ks else n for n, ks in SCHEDULE_KEYS.items())
    if (section, key) == ("integrator", "name"):
        return "\n".join(f"{kind}: {' | '.join(names_for(kind))}" for kind in ("accelerated", "first_order"))
    if (section, key) == ("initial", "law"):
        shown = [law for law in LAW_KEYS if laws is None or law in laws]
        return " | ".join(f"{law} ({', '.join(LAW_KEYS[law])})" if LAW_KEYS[law] else law for law in shown)
    if (section, key) == ("initial", "momentum"):
        return "accelerated only: " + " | ".join(f"{m} ({', '.join(ks)})" if ks else m
                                                for m, ks in MOMENTUM_KEYS.items())
    return ""


def accepted(section: str, spec: dict, model: str) -> tuple[str, ...]:
    """The keys of ``section`` the template's choices accept (model, schedule, integrator, laws)."""
    sec = schema.section(section)
    values = {s: {k: v for k, v, *_ in spec.get(s, []) if k and not k.startswith(("#", "["))}
              for s in ("model", "damping", "integrator", "initial")}
    if section == "model":
        return MODELS[model].keys + (() if model == "bilinear" else MLP_KEYS)
    if section == "damping":
        return ("schedule",) + SCHEDULE_KEYS[values["damping"]["schedule"]]
    if section == "integrator":
        cls = INTEGRATORS[values["integrator"]["name"]][values["model"]["dynamics"]]
        return ("name", "h") + cls.options
    if section == "initial":
        init = values["initial"]
        return tuple(dict.fromkeys(sec.keys_of(f"law {init['law']}") + sec.keys_of(f"momentum {init['momentum']}")))
    return sec.keys_of()


def render(spec: dict, model: str) -> str:
    """The template of ``spec``: ``{"header": text, section: [(key, value[, note]), ...], ...}``.

    A key written ``"#key"`` is shown commented (value :data:`DEFAULT`: the schema's);
    ``(None, text)`` is a comment line; ``("[section]", note)`` notes the section's header;
    ``skip`` lists keys a section should not name (they belong to other models' runs).
    """
    out = spec["header"].rstrip("\n").split("\n")
    for section, entries in spec.items():
        if section in ("header", "skip", "laws", "tail"):
            continue
        sec = schema.section(section)
        commented_section = section == "cluster"
        note = next((e[1] for e in entries if e[0] == "[section]"), "")
        out += [""] + _line(("# " if commented_section else "") + f"[{section}]", note)
        shown = set()
        for key, value, *rest in entries:
            if key == "[section]":
                continue
            if key is None:
                out.append(value)
                continue
            name = key.lstrip("#")
            shown.add(name)
            if value is DEFAULT:
                value = sec.default(name, model if section == "model" else None)
            text = ("# " if key.startswith("#") or commented_section else "") + f"{name} = {toml_value(value)}"
            choices = choices_note(section, name, model, spec.get("laws"))
            note = rest[0] if rest and rest[0] is not None else choices or sec.key(name).help
            note = note.replace("{choices}", choices)
            out += _line(text, note)
        if commented_section:
            continue
        other = [k for k in accepted(section, spec, model) if k not in shown and k not in spec.get("skip", ())]
        if other:
            out.append(f"# also: {', '.join(other)} (docs/parameters.md)")
    out += spec.get("tail", [])
    return "\n".join(out) + "\n"


_ADAPTIVE = (None, ("# adaptive (error-controlled, both dynamics): name = dopri5 | ros34pw2 (stiff) | auto, then h "
                   "is the\n# optional first step; rtol = 1e-6, atol = 1e-9, h_max = 1e4 (docs/long-time.md)"))
_RUN_CLOCKS = [
    ("#layers", True, "instead: one pass through per-layer weights (L steps)"),
    ("#save_at", [10.0, 100.0], "instead of save_every: explicit save times in (t0, t1]"),
    ("#saves_per_decade", 4, "or: a logarithmic clock, t = 10^(j/4) (long runs, adaptive methods)"),
    ("#stop_clusters", 1, "sphere particle runs: stop when n_clusters <= 1"),
    ("#check_every", 1, "steps between NaN / blow-up checks"),
    ("#max_wall_time", 3600.0, 'seconds; then the run stops cleanly (status "stopped: wall time")'),
]
_CLUSTER = [
    ("[section]", "one run's exact pair sums spread over a dask cluster, same bits"),
    ("scheduler", DEFAULT, 'local: worker processes here | "tcp://host:8786": a running scheduler'),
    ("workers", 2, "local only: worker processes (default: all cores)"),
    ("threads_per_worker", DEFAULT, "local only: threads (numba threads of its rows) per worker"),
]
_EYE3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
_ZERO3 = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
_EUCLIDEAN_LAWS = ("gaussian", "student_t", "uniform_ellipsoid", "elliptical", "file")
#: The Euclidean templates' positions: 1000 tokens of N((0.5, 0, 0), I).
_GAUSSIAN = [("law", "gaussian"), ("n", 1000, ""), ("mean", [0.5, 0.0, 0.0], ""), ("cov", _EYE3, "")]


def _accelerated_options(beta_note: str) -> list:
    """The commented options of the accelerated integrators, and how to go adaptive."""
    return [("#beta", 0.9, beta_note), ("#omega", DEFAULT, "tao2 / strang only: coupling of the doubled copies"),
            _ADAPTIVE]


BILINEAR_SPEC = {
    "header": "# meanfield parameter file: bilinear model (linear attention = Stein flow; docs/models.md)\n"
              "# Run with:  meanfield run THIS.toml -o out.h5",
    "laws": _EUCLIDEAN_LAWS,
    "skip": ("cluster_tol", "network", "stop_clusters"),
    "model": [
        ("name", "bilinear", ""),
        ("dynamics", "accelerated", "first_order | accelerated"),
        ("d", 3, ""),
        ("A", "identity", 'kernel k(x, x\') = x\'^T A x: "identity", a number, or a d x d list'),
        ("Q", [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 0.5]], "W(x) = 1/2 (x - m)^T Q (x - m), symmetric"),
        ("m", [1.0, -0.5, 0.25], ""),
        ("causal", False, "token i sees j <= i only: prefix moments, factor 1/i"),
    ],
    "damping": [("schedule", "nesterov"), ("r", 3.0, "alpha(t) = r / t (needs t0 > 0)")],
    "integrator": [
        ("name", "exp_euler"),
        ("h", 0.05, ""),
        *_accelerated_options("heavy_ball only: momentum coefficient (default 1 - h alpha(t))"),
    ],
    "initial": [
        *_GAUSSIAN,
        ("momentum", "affine"),
        ("S", _ZERO3, ""),
        ("b", [0.0, 0.0, 0.0], ""),
        ("seed", 0, ""),
    ],
    "run": [
        ("t0", 1.0, ""),
        ("t1", 61.0, "or: steps = 1200; or: oracle_calls = 1200 (exactly one of the three)"),
        ("save_every", 10, None),
        ("dtype", "float64", "float64 | float32"),
        *_RUN_CLOCKS,
    ],
    "output": [("path", "run.h5", ""), ("save", ["x", "y"], None)],
    "diagnostics": [
        ("dissipation", "auto", None),
        ("#moment_ode", True, "solve the closed moment ODE alongside (gaussian-type laws; zero/affine momentum)"),
    ],
}

SOFTMAX_SPEC = {
    "header": "# meanfield parameter file: softmax attention (docs/models.md), classical or accelerated\n"
              "# Run with:  meanfield run THIS.toml -o out.h5      (cost per oracle call: O(N^2 d))",
    "laws": _EUCLIDEAN_LAWS + ("tokens",),
    "skip": ("cluster_tol", "moment_ode", "stop_clusters"),
    "model": [
        ("name", "softmax", ""),
        ("dynamics", "accelerated", "first_order (classical attention) | accelerated (damped Hamiltonian)"),
        ("d", 3, ""),
        ("A", 0.2, ("query-key matrix (inverse temperature folded in); symmetric if accelerated.\n"
                   "Larger A can make the accelerated energy run away (exp beats the quadratic W)")),
        ("B", "identity", "preconditioner (symmetric if accelerated)"),
        ("#V", Raw("[[...]]"), "first_order only: value matrix, default B A"),
        ("#normalized", DEFAULT, "first_order only: true = SA (softmax), false = USA (no normalization)"),
        ("causal", False, "token i attends to j <= i only (factor 1/i)"),
        ("#summation", "fourier", "exact (default, O(N^2)) | fourier: O(N log N) for d <= 3 (sphere: d = 2, 3"),
        ("#summation_tol", DEFAULT, "and Q^T K = I; softmax: symmetric PSD A); no causal mask"),
        ("#mlp", "weights.npz", "whole transformer blocks: a token-wise MLP after every attention step"),
        ("#mlp_activation", DEFAULT, ("W1 (h, d), b1, W2 (d, h), b2; a leading layer axis L: per layer\n"
                                     "(docs/mlp-block.md)")),
        ("#weights", "gpt2.safetensors", ("a network from a weight file instead (docs/models.md): heads,\n"
                                         "layer_norm, ln_mode, ln_eps, metric; initial.law = \"tokens\"")),
        ("Q", _EYE3, "optional W(x) = 1/2 (x - m)^T Q (x - m); omit for none"),
        ("m", [0.0, 0.0, 0.0], ""),
    ],
    "damping": [("schedule", "constant"), ("a", 1.0, "")],
    "integrator": [
        ("name", "exp_euler"),
        ("h", 0.01, ("mean_shift (first_order): one attention layer without the residual,\n"
                    "x <- its average; SA without W; ignores h")),
        *_accelerated_options("heavy_ball only: momentum coefficient"),
    ],
    "initial": [
        *_GAUSSIAN,
        ("momentum", "gaussian"),
        ("momentum_scale", 0.3, ""),
        ("seed", 0, ""),
    ],
    "run": [
        ("t0", 0.0, ""),
        ("t1", 5.0, "or: steps = 500; or: oracle_calls = 500 (exactly one of the three)"),
        ("save_every", 10, None),
        ("dtype", "float64", "float64 | float32"),
        *_RUN_CLOCKS,
    ],
    "output": [("path", "run.h5", ""), ("save", ["x", "y"], "")],
    "diagnostics": [
        ("dissipation", "auto", "step | save | off | auto (softmax: save, K costs one pass over pairs)"),
        ("#network", False, "networks from weights (model.weights): only cos_mean, rank_collapse"),
    ],
    "cluster": _CLUSTER,
}

SPHERE_SPEC = {
    "header": "# meanfield parameter file: tokens on the sphere S^{d-1} (docs/models.md): clustering of "
              "self-attention\n# Run with:  meanfield run THIS.toml -o out.h5 ;  meanfield plot out.h5 --kind "
              "clusters",
    "laws": ("sphere_uniform", "equiangular", "von_mises", "file"),
    "skip": ("network", "moment_ode"),
    "model": [
        ("name", "sphere", ""),
        ("dynamics", "first_order", "first_order | accelerated (damped Hamiltonian with tangent momenta)"),
        ("d", 3, "tokens on S^{d-1}"),
        ("beta", 4.0, "inverse temperature: logits beta <Q x_i, K x_j>"),
        ("normalized", True, "true = SA (softmax), false = USA (unnormalized); accelerated: true"),
        ("normalization", "post_ln", "post_ln (|x_i| = 1) | pre_ln, peri_ln (residual stream x_i = r_i theta_i)"),
        ("causal", False, "token i attends to j <= i only (factor 1/i)"),
        ("#summation", "fourier", "exact (default, O(N^2)) | fourier: O(N log N) for d <= 3 (sphere: d = 2, 3"),
        ("#summation_tol", DEFAULT, "and Q^T K = I; softmax: symmetric PSD A); no causal mask"),
        ("#mlp", "weights.npz", "whole transformer blocks: a token-wise MLP after every attention step"),
        ("#mlp_activation", DEFAULT, ("W1 (h, d), b1, W2 (d, h), b2; a leading layer axis L: per layer\n"
                                     "(docs/mlp-block.md)")),
        ("#Q", DEFAULT, "query, key, value matrices (d x d, default identity);"),
        ("#K", DEFAULT, "accelerated: Q^T K symmetric, no V"),
        ("#V", DEFAULT, ""),
    ],
    "damping": [
        ("[section]", "accelerated (and nag) only; first-order runs warn if one is set"),
        ("schedule", "none"),
        ("#schedule", "constant", 'with dynamics = "accelerated", e.g.'),
        ("#a", DEFAULT, ""),
    ],
    "integrator": [
        ("name", "rk4", "{choices}\nmean_shift: one layer without the residual, x <- a / |a| (post_ln; ignores h)"),
        ("h", 0.05, "every step is followed by the retraction x_i <- x_i / |x_i| (post_ln)"),
        (None, ("# adaptive (long runs, metastability): name = \"auto\" (or dopri5 | ros34pw2 (stiff)), no h "
               "needed,\n# rtol = 1e-6, atol = 1e-9, h_max = 1e4; with [run] saves_per_decade = 4 and t1 = 1e8 "
               "(docs/long-time.md)")),
        ("#omega", 50.0, "tao2/strang on the sphere at beta >= 4: omega >= 25 with 2 omega h <= 1"),
    ],
    "initial": [
        ("law", "sphere_uniform", ("sphere_uniform | equiangular (rho; needs n <= d) | file (path; unit vectors)\n"
                                  "| von_mises (d = 2: mu = [angles], kappa, weights)")),
        ("n", 256, ""),
        ("momentum", "zero", "accelerated only: zero | gaussian (momentum_scale; projected to the tangent"),
        ("seed", 0, "space) | file (momentum_path)"),
    ],
    "run": [
        ("t0", 0.0, ""),
        ("t1", 20.0, "or: steps = 400; or: oracle_calls = 1600 (exactly one of the three)"),
        ("save_every", 4, ""),
        ("dtype", "float64", "float64 | float32"),
        *_RUN_CLOCKS[:-1],
        ("#max_wall_time", 3600.0, "seconds; then the run stops cleanly"),
    ],
    "output": [
        ("path", "sphere.h5", ""),
        ("save", ["x"], "trajectories to store; E_beta, min/mean inner product, n_clusters always"),
    ],
    "diagnostics": [
        ("dissipation", "auto", "accelerated: residual of dH/dt = -2 alpha K: step | save | off | auto"),
        ("#cluster_tol", 1e-3, "tokens with <x_i, x_j> > 1 - cluster_tol are in one cluster"),
    ],
    "solver": [
        ("kind", "particles", ("particles | pde: the mean-field equation (N -> infinity), d = 2 only.\n"
                              "The uniform law is a stationary state of the pde (particles cluster from\n"
                              "sampling noise only): start a pde run from a non-uniform law, e.g.\n"
                              "  meanfield run THIS.toml --set model.d=2 --set solver.kind='\"pde\"' --set\n"
                              "  'initial={law = \"von_mises\", mu = [0.0, 2.5], kappa = 1.0, n = 256}'\n"
                              "and the same --set with kind = \"particles\" for the particles beside it")),
        ("#grid", 512, "pde: cells on the circle (accelerated: [cells in theta, cells in momentum])"),
    ],
    "cluster": _CLUSTER,
}

#: ``meanfield init --model NAME`` prints ``TEMPLATES[NAME]``.
TEMPLATES = {name: render(spec, name) for name, spec in
             (("bilinear", BILINEAR_SPEC), ("softmax", SOFTMAX_SPEC), ("sphere", SPHERE_SPEC))}
