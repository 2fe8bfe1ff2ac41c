"""The multi-head mobility Hamiltonian of a network with symmetric heads (docs/models.md).

With H heads sharing one momentum y_i and B = I,

    H(x, y) = sum_h [ (1/N) sum_i |y_i|^2 / (2 z_i^h) - 1/(2N^2) sum_ij E^h_ij ],
    E^h_ij = exp(x_i^T A_h x_j),   z_i^h = (1/N) sum_j E^h_ij,

is the sum of H single-head Hamiltonians of the softmax model (docs/models.md
§3), so its field is the sum of theirs: ``F_i = y_i sum_h 1/z_i^h`` (the heads'
mobilities add, like conductances in parallel) and ``G_i = sum_h G^h_i``
(each head's force with its own s^h_i = |y_i|^2 / (z_i^h)^2). It exists when
every ``A_h = W_q^h^T W_k^h / sqrt(d_h)`` is symmetric and the logits carry no
bias or LayerNorm; the value map is then fixed by the energy (V_h = A_h) and
the file's W_v, W_o, b_v, b_o are not used. Each head is one accelerated
:class:`~meanfield.models.softmax.Softmax` model with per-layer matrices, so
the exact pair passes (and, for H = 1, the bits) are the softmax model's.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .softmax import Softmax, SoftmaxParams

#: Relative asymmetry ||A - A^T|| / ||A|| accepted (then A is symmetrized exactly).
SYMMETRY_TOL = 1e-12


def head_matrices(w) -> np.ndarray:
    """``A[l, h] = W_q^{l,h T} W_k^{l,h} / sqrt(d_h)``, ``(L, H, d, d)`` float64, checked and symmetrized.

    Raises
    ------
    ParameterError
        Naming ``model.metric``, the file, layer and head: a non-symmetric head or a nonzero q/k bias.
    """
    for name in ("b_q", "b_k"):
        b = np.asarray(w[name])
        if np.any(b != 0):
            l, h = np.argwhere(np.any(b != 0, axis=-1))[0]
            raise ParameterError("model.metric", f'"flat" for {w.path} (the mobility Hamiltonian needs '
                                 f"logits without bias: array {name} is nonzero in layer {l}, head {h})",
                                 "mobility")
    Wq, Wk = np.asarray(w["W_q"], np.float64), np.asarray(w["W_k"], np.float64)
    A = np.einsum("lhcd,lhce->lhde", Wq, Wk) / math.sqrt(w.d_h)
    asym = np.linalg.norm(A - np.swapaxes(A, 2, 3), axis=(2, 3))
    bad = asym > SYMMETRY_TOL * np.maximum(np.linalg.norm(A, axis=(2, 3)), np.finfo(float).tiny)
    if np.any(bad):
        l, h = np.argwhere(bad)[0]
        raise ParameterError("model.metric", f'"flat" for {w.path} (the mobility Hamiltonian needs every '
                             f"head's W_q^T W_k symmetric, e.g. W_q = W_k: layer {l}, head {h} is not)",
                             "mobility")
    return 0.5 * (A + np.swapaxes(A, 2, 3))


class MobilityHeads:
    """The H heads of the mobility Hamiltonian, one accelerated Softmax model each.

    Parameters
    ----------
    A : (L, H, d, d) array
        Symmetric query-key matrices per layer and head (:func:`head_matrices`).
    causal : bool
    dtype : float64 or float32
    """

    def __init__(self, A: np.ndarray, causal: bool, dtype):
        L, H, d, _ = A.shape
        eye, zero = np.eye(d), np.zeros((d, d))
        self.models = []
        for h in range(H):
            p = SoftmaxParams(d=d, A=A[0, h], B=eye, V=A[0, h], Q=zero, m=np.zeros(d), normalized=True,
                              causal=causal)
            m = Softmax(p, "accelerated", dtype)
            m.set_layers(A[:, h], A[:, h])  # V = B A: the force is the energy's
            self.models.append(m)
        self._buf = None

    def use_layer(self, layer: int) -> None:
        """Make every head's matrix of ``layer`` current."""
        for m in self.models:
            m.use_layer(layer)

    def field(self, x, y, t, F, G) -> None:
        """``F = y sum_h 1/z^h``, ``G = sum_h G^h`` into ``F, G (N, d)`` (the heads' fields summed)."""
        if self._buf is None or self._buf[0].shape != x.shape or self._buf[0].dtype != x.dtype:
            self._buf = (np.empty_like(x), np.empty_like(x))
        fh, gh = self._buf
        for k, m in enumerate(self.models):
            m.combine_hamiltonian(x, y, t, 0.0, 1.0, 0.0, 1.0, F if k == 0 else fh, G if k == 0 else gh)
            if k:
                F += fh
                G += gh

    def energies(self, x, y) -> dict:
        """The heads' ``energy`` (H), ``kinetic``, ``interaction`` summed (floats)."""
        out = {"energy": 0.0, "kinetic": 0.0, "interaction": 0.0}
        for m in self.models:
            e = m.energies(x, y)
            for k in out:
                out[k] += e[k]
        return out


__all__ = ["MobilityHeads", "SYMMETRY_TOL", "head_matrices"]
