"""Models: each module owns one model's parameters, fields and energies."""

from __future__ import annotations

import numpy as np

from ..errors import ParameterError
from .base import DYNAMICS, Model
from .bilinear import Bilinear, BilinearParams
from .softmax import Softmax
from .sphere import Sphere

#: Names used in parameter files -> model classes (each has ``from_dict`` and ``keys``).
MODELS: dict[str, type[Model]] = {"bilinear": Bilinear, "softmax": Softmax, "sphere": Sphere}


#: Largest token dimension accepted (model matrices are dense d x d).
MAX_D = 4096


def make_model(p: dict, dtype=np.float64) -> Model:
    """Build a model from the ``[model]`` section of a parameter file."""
    name = p.get("name", "bilinear")
    if not isinstance(name, str) or name not in MODELS:
        raise ParameterError("model.name", f"one of {sorted(MODELS)}", name)
    d = p.get("d")
    if isinstance(d, int) and not isinstance(d, bool) and d > MAX_D:
        raise ParameterError("model.d", f"a dimension <= {MAX_D} (d x d matrices are stored densely)", d)
    dynamics = p.get("dynamics", "accelerated")
    if not isinstance(dynamics, str) or dynamics not in DYNAMICS:
        # checked before the model parses its parameters, which depend on the dynamics
        raise ParameterError("model.dynamics", f"one of {list(DYNAMICS)}", dynamics)
    cls = MODELS[name]
    for key in p:
        if key not in cls.keys:
            raise ParameterError(
                f"model.{key}", f"a key of model {name!r} (valid: {', '.join(cls.keys)})", key
            )
    return cls.from_dict(p, dtype=dtype)


__all__ = ["DYNAMICS", "MODELS", "Bilinear", "BilinearParams", "Model", "Softmax", "Sphere", "make_model"]
