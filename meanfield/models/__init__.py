"""Models: each module owns one model's parameters, fields and energies."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from ._params import MODEL
from .base import DYNAMICS, Model
from .bilinear import Bilinear, BilinearParams
from .mlp import MLP_KEYS, TokenMLP, load_layered_matrix, nesterov_params, splitting_of
from .network import Network
from .softmax import Softmax
from .sphere import Sphere

#: Names used in parameter files -> model classes (each has ``from_dict`` and ``keys``).
MODELS: dict[str, type[Model]] = {"bilinear": Bilinear, "softmax": Softmax, "sphere": Sphere}


#: Largest token dimension accepted (model matrices are dense d x d).
MAX_D = 4096


def make_model(p: dict, dtype=np.float64, base_dir: str | None = None, diagnostics=None) -> Model:
    """Build a model from the ``[model]`` section of a parameter file.

    ``base_dir`` is the folder relative file names (``mlp``, per-layer ``A``,
    ``V`` files) are read from (the parameter file's; the working directory if None).
    ``diagnostics``: the run's ``[diagnostics]`` as the schema types it; the model takes
    the keys that are its own (``cluster_tol``, ``network``: :meth:`Model.set_diagnostics`).
    """
    model = _make_model(p, dtype, base_dir)
    if diagnostics is not None:
        model.set_diagnostics(diagnostics)
    return model


def _make_model(p: dict, dtype, base_dir) -> Model:
    given = MODEL.typed(p)
    name = given.name if given.name is not None else MODEL.default("name")
    if not isinstance(name, str) or name not in MODELS:
        raise ParameterError("model.name", f"one of {sorted(MODELS)}", name)
    d = given.d
    if isinstance(d, int) and not isinstance(d, bool) and d > MAX_D:
        raise ParameterError("model.d", f"a dimension <= {MAX_D} (d x d matrices are stored densely)", d)
    dynamics = given.dynamics if given.dynamics is not None else MODEL.default("dynamics", name)
    if not isinstance(dynamics, str) or dynamics not in DYNAMICS:
        # checked before the model parses its parameters, which depend on the dynamics
        raise ParameterError("model.dynamics", f"one of {list(DYNAMICS)}", dynamics)
    if name == "softmax" and given.weights is not None:  # a network from a weight file: its own keys
        return Network.from_dict(p, dtype=dtype, base_dir=base_dir)
    cls = MODELS[name]
    block = {k: v for k, v in given.given().items() if k in MLP_KEYS}
    for key in p:
        if key not in cls.keys and key not in block:
            raise ParameterError(
                f"model.{key}", f"a key of model {name!r} (valid: {', '.join(cls.keys + MLP_KEYS)})", key
            )
    if block and name == "bilinear":
        key = "mlp" if given.mlp is not None else next(iter(block))
        raise ParameterError(f"model.{key}", "the softmax or sphere model (a token-wise MLP breaks the "
                             "bilinear model's closed moment dynamics: not supported)", name)
    if block and given.mlp is None:
        key = next(iter(block))
        raise ParameterError(f"model.{key}", f"model.mlp (the weight file) with model.{key}", None)
    p = {k: v for k, v in p.items() if k not in MLP_KEYS}
    files = {}
    if name == "softmax" and isinstance(d, int) and not isinstance(d, bool) and d >= 1:
        for key in ("A", "V"):
            loaded = load_layered_matrix(getattr(given, key), d, f"model.{key}", base_dir)
            if loaded is not None:
                files[key] = loaded
                p[key] = loaded[0][0]  # layer 0 validates like a matrix given inline
    elif name == "sphere":
        for key in ("Q", "K", "V"):
            value = getattr(given, key)
            if isinstance(value, str) and value.lower().endswith((".npy", ".npz")):
                raise ParameterError(f"model.{key}", "a matrix given inline (per-layer matrix files "
                                     "are read by the softmax model only)", value)
    model = cls.from_dict(p, dtype=dtype)
    if files:
        _set_layers(model, p, files)
    if block:
        model.mlp = TokenMLP.from_file(given.mlp, model.d, MODEL.read(block, name).mlp_activation, base_dir)
        model.mlp_splitting = splitting_of(block, model.accelerated)
        model.mlp_nesterov = nesterov_params(block)
        _layer_count(model, model.mlp.n_layers, "model.mlp", model.mlp.path)
        model.block_files = {**getattr(model, "block_files", {}), "mlp": model.mlp.path}
    return model


def _layer_count(model, L: int, key: str, path: str) -> None:
    """Check that per-layer weights agree on the number of layers; set ``model.n_layers``."""
    if L == 1 or L == model.n_layers:
        return
    if model.n_layers != 1:
        raise ParameterError(key, f"{model.n_layers} layers (as the other per-layer arrays)",
                             f"{path}: {L} layers")
    model.n_layers = L


def _set_layers(model, p: dict, files: dict) -> None:
    """Per-layer A and V of the softmax model from (L, d, d) files (a 2-D file is every layer's)."""
    from ._params import require_symmetric

    stacks = {k: arr for k, (arr, _) in files.items()}
    L = max(v.shape[0] for v in stacks.values())
    for key, arr in stacks.items():
        if arr.shape[0] not in (1, L):
            raise ParameterError(f"model.{key}", f"{L} layers (as the other per-layer matrix file)",
                                 f"{files[key][1]}: {arr.shape[0]} layers")
    if model.params.summation != "exact" and L > 1:
        raise ParameterError("model.summation", '"exact" with per-layer matrices', model.params.summation)
    A = np.broadcast_to(stacks.get("A", model.A[None]), (L, model.d, model.d))
    if model.accelerated:
        for l in range(L):
            require_symmetric(A[l], "model.A", expected="a symmetric matrix in every layer for accelerated "
                              "softmax dynamics", found=f"layer {l} is not symmetric")
        V = np.einsum("ij,ljk->lik", model.B, A)
    elif "V" in stacks:
        V = np.broadcast_to(stacks["V"], (L, model.d, model.d))
    elif MODEL.typed(p).V is not None:  # one V given inline for every layer
        V = np.broadcast_to(model.V, (L, model.d, model.d))
    else:
        V = np.einsum("ij,ljk->lik", model.B, A)
        model.V_is_BA = True  # per layer: the description must not pin layer 0's V
    model.set_layers(A, V)
    model.block_files = {k: path for k, (_, path) in files.items()}


__all__ = ["DYNAMICS", "MODELS", "Bilinear", "BilinearParams", "Model", "Network", "Softmax", "Sphere", "make_model"]
