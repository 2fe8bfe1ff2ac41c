"""GPT-2-style transformer networks read from weight files, as particle systems.

A pre-LN block maps the residual stream ``x (N, d)`` by

    x <- x + Attn(LN1(x)),    x <- x + MLP(LN2(x)),

with ``LN(u) = g (u - mean u) / sqrt(var u + eps) + b`` per token (a post-LN
block, ``layer_norm = "post"``, is ``x <- LN1(x + Attn(x))``, ``x <- LN2(x + MLP(x))``), and

    Attn(u)_i = sum_h W_o^h sum_j softmax_j(q_i^h . k_j^h / sqrt(d_h)) v_j^h + b_o,
    q_i^h = W_q^h u_i + b_q^h,  k_j^h = W_k^h u_j + b_k^h,  v_j^h = W_v^h u_j + b_v^h,

over j <= i when causal; ``MLP(u) = W2 gelu_tanh(W1 u + b1) + b2``. Each
head's interaction has rank d_h and is evaluated through its factors: the
projections are BLAS products, the heads a numba kernel running them in
parallel (:func:`meanfield._kernels.heads.multi_head_attention`: per head and
block of targets, logits and softmax-weighted value sums by BLAS, the softmax
between).

As an ODE the two sub-steps are ``x' = Attn(LN1(x))`` (the model's first-order
field, one oracle call) and ``x' = MLP(LN2(x))`` (its MLP field, run by the
block's Lie sub-step after the attention step): one Euler step with h = 1 is
exactly one block, general h the splitting of that ODE (layer l acts for t in
[t0 + l, t0 + l + 1)). Post-LN normalizes after each sub-step: a projected
Euler step, exact at h = 1.

Accelerated networks (``dynamics = "accelerated"``) integrate the damped
second-order flow of the same field, ``x' = y``, ``y' = -alpha y + Attn(LN1(x))``
(the Hamiltonian field ``(F, G) = (y, Attn(LN1(x)))``, one oracle call), with
SympFormer's Nesterov MLP sub-step on its own velocity: the flat metric
(``metric = "flat"``), since trained heads are no gradients. Networks whose
heads are symmetric, without LayerNorm or q/k biases, may instead run the
multi-head mobility Hamiltonian (``metric = "mobility"``,
:mod:`meanfield.models.mobility_heads`). The model is built by
:func:`meanfield.models.make_model` for ``name = "softmax"`` with a
``weights`` file.

``ln_mode = "fold"`` (pre-LN) folds each LN's gain and bias into the weights
that read it (``W diag(g)``, ``b_W + W b``) and centres the weights that write
to the stream (``P W_o``, ``P b_o``, ``P W2``, ``P b2`` with ``P = I - 11^T/d``)
and the initial state. LN sees only the centred part ``P x`` of a token, so
the folded stream is ``P`` of the affine one and every LN output (the final
read-out included) is the same; the stream then lives in the centred
hyperplane, where LN is the radial map ``x / sqrt(|x|^2/d + eps)``: onto the
sphere of radius sqrt(d) (exactly so at eps = 0).
"""

from __future__ import annotations

import math

import numpy as np

from .._kernels._config import TOKENWISE_SERIAL_BELOW, serial_if_small
from .._kernels.heads import attention_heads
from .._kernels.layernorm import layer_norm_rows
from ..errors import ParameterError, check_real
from ..schema import Derived, Key, Kind, OneOf, Real
from ._params import MODEL, config_path
from .base import Model
from .mlp import NESTEROV_DEFAULTS, TokenMLP, nesterov_params
from .mobility_heads import MobilityHeads, head_matrices
from .sphere import DEFAULT_CLUSTER_TOL
from .weights import load_weights

#: LayerNorm placements: before each sub-layer (GPT-2), after each residual sum (BERT), or none.
LAYER_NORMS = ("pre", "post", "none")
#: How LayerNorm is applied: literally, or with g and b folded into the weights (pre-LN only).
LN_MODES = ("affine", "fold")
#: Metrics of accelerated networks: the network's field as a force (x'' = -alpha x' + Attn), or the
#: multi-head mobility Hamiltonian of symmetric heads (docs/models.md).
METRICS = ("flat", "mobility")

def _choice_not_yet(values):
    return OneOf(values, f"one of {list(values)} (others are not implemented for networks from weights yet)")


MODEL.declare(
    Key("weights", Kind("a weight file name (.npz or .safetensors)"), Derived("none: the softmax model"),
        "a network from a weight file (the schema of docs/models.md)"),
    Key("heads", Real("a positive integer", lambda v: v >= 1, integer=True), Derived("from the weight file"),
        "attention heads H (checked against the weights)"),
    Key("layer_norm", _choice_not_yet(LAYER_NORMS), "pre", "pre | post | none"),
    Key("ln_mode", _choice_not_yet(LN_MODES), "affine", "affine LayerNorm, or fold g, b into the weights"),
    Key("ln_eps", Real("a positive finite number", lambda v: v > 0), 1e-5, "LayerNorm's eps"),
    Key("metric", OneOf(METRICS, f"one of {list(METRICS)}"), "flat",
        "accelerated networks: flat (x'' = -alpha x' + Attn) or mobility (multi-head Hamiltonian)"),
    owners="network")
MODEL.accept("network", "name", "dynamics", "d", "causal", "normalized")


def layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """``out = g (x - mean) / sqrt(var + eps) + b`` per row of ``x (N, d)`` (population variance).

    Returns ``out (N, d)``; ``out`` must not alias ``x``. One pass
    (:func:`meanfield._kernels.layernorm.layer_norm_rows`), on one thread below
    ``TOKENWISE_SERIAL_BELOW`` entries.
    """
    with serial_if_small(x.size, TOKENWISE_SERIAL_BELOW):
        layer_norm_rows(x, g, b, eps, out)
    return out


def radial_norm(x: np.ndarray, eps: float, out: np.ndarray) -> np.ndarray:
    """``out = x / sqrt(|x|^2 / d + eps)`` per row of ``x (N, d)``: LN of a centred token without g, b.

    Returns ``out (N, d)``; ``out`` must not alias ``x``.
    """
    np.multiply(x, x, out=out)
    r = out.mean(axis=1, keepdims=True)
    r += eps
    np.sqrt(r, out=r)
    np.divide(x, r, out=out)
    return out


def _half_mean_square(a: np.ndarray) -> float:
    """``(1/2N) sum_i |a_i|^2`` of ``a (N, d)``, accumulated in float64."""
    return 0.5 * float(np.mean(np.einsum("ij,ij->i", a, a, dtype=np.float64)))


def _centred(a: np.ndarray, axis: int) -> np.ndarray:
    """``P a`` along ``axis`` (the d axis of a writing weight): the mean over that axis removed."""
    return a - a.mean(axis=axis, keepdims=True)


def stacked_weights(w) -> dict:
    """The block arrays in the layout the model computes with (the file's dtype).

    Parameters
    ----------
    w : NetworkWeights

    Returns
    -------
    dict
        ``Wqkv (L, 3 H d_h, d)`` and ``bqkv (L, 3 H d_h)`` (every head's q, k, v stacked: one gemm),
        ``W_o (L, d, H d_h)``, ``b_o (L, d)``, ``W1 (L, h, d)``, ``b1 (L, h)``, ``W2 (L, d, h)``, ``b2 (L, d)``.
    """
    L, H, dh, d = w.L, w.H, w.d_h, w.d
    return {"Wqkv": np.concatenate([w[n].reshape(L, H * dh, d) for n in ("W_q", "W_k", "W_v")], axis=1),
            "bqkv": np.concatenate([w[n].reshape(L, H * dh) for n in ("b_q", "b_k", "b_v")], axis=1),
            "W_o": w["W_o"].reshape(L, d, H * dh), "b_o": w["b_o"],
            **{n: w[n] for n in ("W1", "b1", "W2", "b2")}}


def fold_weights(w) -> dict:
    """The arrays of the fold mode (float64): LN gains and biases folded in, writing weights centred.

    Parameters
    ----------
    w : NetworkWeights

    Returns
    -------
    dict
        The keys of :func:`stacked_weights`: reading weights ``W diag(g)`` with biases
        ``b_W + W b`` of the LN before them, writing weights ``P W``, ``P b``.
    """
    a = {k: np.asarray(v, np.float64) for k, v in stacked_weights(w).items()}
    g1, b1, g2, b2 = (np.asarray(w[n], np.float64) for n in ("ln1_g", "ln1_b", "ln2_g", "ln2_b"))
    Wqkv, W1 = a["Wqkv"], a["W1"]
    return {"Wqkv": Wqkv * g1[:, None, :], "bqkv": a["bqkv"] + np.einsum("lkd,ld->lk", Wqkv, b1),
            "W_o": _centred(a["W_o"], 1), "b_o": _centred(a["b_o"], 1),
            "W1": W1 * g2[:, None, :], "b1": a["b1"] + np.einsum("lhd,ld->lh", W1, b2),
            "W2": _centred(a["W2"], 1), "b2": _centred(a["b2"], 1)}


class Network(Model):
    """A GPT-2-style network (weights from a file) as a first-order particle system.

    Parameters
    ----------
    weights : NetworkWeights
        The validated arrays (:func:`meanfield.models.weights.load_weights`).
    causal : bool
        Sum over sources j <= i only.
    layer_norm : {"pre", "post", "none"}
        Pre-LN blocks, post-LN blocks, or LayerNorm as the identity.
    ln_eps : float
        The LayerNorm's eps.
    dtype : float64 or float32
        The state's type; the weights are converted once.
    ln_mode : {"affine", "fold"}
        LayerNorm applied literally, or folded into the weights (pre-LN).
    dynamics : {"first_order", "accelerated"}
        The network's forward flow, or its damped second-order flow (flat metric).
    nesterov : ModelParams or None
        ``mlp_mu, mlp_beta, mlp_gamma`` of the accelerated MLP sub-step (:func:`nesterov_params`;
        None: the schema's defaults, those of the SympFormer code).
    metric : {"flat", "mobility"}
        Accelerated networks: the flat damped flow, or the multi-head mobility Hamiltonian.
    """

    name = "softmax"
    keys = MODEL.keys_of("network")

    def __init__(self, weights, causal=True, layer_norm="pre", ln_eps=1e-5, dtype=np.float64,
                 ln_mode="affine", dynamics="first_order", nesterov=None, metric="flat"):
        super().__init__(weights.d, dynamics, dtype)
        w = weights
        self.weights = w
        self.causal = bool(causal)
        self.layer_norm = layer_norm
        self.ln_mode = ln_mode
        self.ln_eps = float(ln_eps)
        self.heads, self.d_h, self.n_layers = w.H, w.d_h, w.L
        self.scale = 1.0 / math.sqrt(w.d_h)
        t = self.dtype
        a = fold_weights(w) if ln_mode == "fold" else stacked_weights(w)
        # (L, d, 3 H d_h): one gemm per layer gives every head's q, k, v
        self._WqkvT = np.ascontiguousarray(np.swapaxes(a["Wqkv"], 1, 2), dtype=t)
        self._bqkv = np.ascontiguousarray(a["bqkv"], dtype=t)
        self._WoT = np.ascontiguousarray(np.swapaxes(a["W_o"], 1, 2), dtype=t)
        self._bo = np.ascontiguousarray(a["b_o"], dtype=t)
        self._ln = {k: np.ascontiguousarray(w[k], dtype=t) for k in ("ln1_g", "ln1_b", "ln2_g", "ln2_b")}
        if w.get("ln_f_g") is not None:  # the final LN: read-outs at every save
            self._ln.update(ln_f_g=np.ascontiguousarray(w["ln_f_g"], dtype=t),
                            ln_f_b=np.ascontiguousarray(w["ln_f_b"], dtype=t))
        self.mlp = TokenMLP(a["W1"], a["b1"], a["W2"], a["b2"], "gelu_tanh", layered=True, path=w.path)
        self.mlp._weights(t)  # in the run's dtype now: converting at the first MLP call cost 0.3 s of the loop's clock
        self.mlp_splitting = "lie"
        self.mlp_nesterov = nesterov if nesterov is not None else nesterov_params({})
        self.block_files = {"weights": w.path}
        self.metric = metric
        #: Clusters of tokens and head outputs are counted at this tolerance (``[diagnostics] cluster_tol``).
        self.cluster_tol = DEFAULT_CLUSTER_TOL
        #: Record the full diagnostics at every save (``[diagnostics] network``), or only the O(N d) ones.
        self.full_diagnostics = True
        self._mobility = MobilityHeads(head_matrices(w), self.causal, t) if metric == "mobility" else None
        self._layer = 0
        self._work = {}

    @classmethod
    def from_dict(cls, p: dict, dtype=np.float64, base_dir: str | None = None) -> Network:
        """The network of a ``[model]`` section with ``weights``; ParameterError naming the key otherwise."""
        for key in p:
            if key not in cls.keys:
                raise ParameterError(f"model.{key}", f"a key of a network from weights (valid: "
                                     f"{', '.join(cls.keys)})", key)
        s = MODEL.read(p, "network")
        dynamics = s.dynamics
        nesterov = {k: v for k, v in MODEL.typed(p).given().items() if k in NESTEROV_DEFAULTS}  # as given
        if nesterov and dynamics != "accelerated":
            key = next(iter(nesterov))
            raise ParameterError(f"model.{key}", 'dynamics = "accelerated" (the Nesterov MLP sub-step of '
                                 "accelerated blocks)", nesterov[key])
        path = s.weights
        if not isinstance(path, str) or not path:
            raise ParameterError("model.weights", "a weight file name (.npz or .safetensors)", path)
        d, heads = s.d, s.heads  # heads: checked by its schema kind in MODEL.read
        if d is not None:
            check_real("model.d", d, "a positive integer", lambda v: v >= 1, integer=True)
        if s.mlp_activation != "gelu_tanh":
            raise ParameterError("model.mlp_activation", "one of ['gelu_tanh'] (others are not implemented "
                                 "for networks from weights yet)", s.mlp_activation)
        ln, mode, metric = s.layer_norm, s.ln_mode, s.metric
        if metric == "mobility" and (dynamics != "accelerated" or ln != "none"):
            raise ParameterError("model.metric", '"flat" unless dynamics = "accelerated" and layer_norm = '
                                 '"none" (the mobility Hamiltonian\'s energy has no LayerNorm in its logits)',
                                 metric)
        if mode == "fold" and ln != "pre":
            raise ParameterError("model.ln_mode", '"affine" with layer_norm = "%s" (fold needs pre-LN: a '
                                 "post-LN stream is the LN output itself, not a centred residual sum)" % ln,
                                 mode)
        if not s.normalized:
            raise ParameterError("model.normalized", "true (softmax attention) for networks from weights",
                                 False)
        w = load_weights(config_path(path, base_dir), "model.weights", d, heads)
        return cls(w, s.causal, ln, float(s.ln_eps), dtype, mode, dynamics, nesterov_params(nesterov),
                   metric)

    # ---------------------------------------------------------------- layers
    def use_layer(self, layer: int) -> None:
        """Make ``layer``'s weights current (a run's step uses the layer of its midpoint time)."""
        self._layer = int(layer)
        if self._mobility is not None:
            self._mobility.use_layer(self._layer)

    def _buffers(self, n: int) -> tuple:
        """Work arrays for ``n`` tokens: ``u (n, d)``, ``qkv (n, 3 H d_h)``, ``heads (n, H, d_h)``, ``f (n, d)``,
        and the heads kernel's ``(3, H, n, d_h)`` (allocated once: fresh pages at every step cost page faults)."""
        buf = self._work.get(n)
        if buf is None:
            t, H, dh, d = self.dtype, self.heads, self.d_h, self.d
            buf = self._work[n] = (np.empty((n, d), t), np.empty((n, 3 * H * dh), t),
                                   np.empty((n, H, dh), t), np.empty((n, d), t), np.empty((3, H, n, dh), t))
        return buf

    def _norm(self, x, which: str, out):
        """What sub-layer ``which`` reads: ``LN_which(x)`` into ``out`` for pre-LN, else ``x`` itself."""
        if self.layer_norm != "pre":
            return x
        if self.ln_mode == "fold":  # g, b are in the reading weights; x is centred
            return radial_norm(x, self.ln_eps, out)
        return self._affine_ln(x, which, out)

    def _affine_ln(self, x, which: str, out):
        """``LN_which(x)`` into ``out`` with the current layer's gain and bias (``which``: ln1, ln2)."""
        l = self._layer
        return layer_norm(x, self._ln[which + "_g"][l], self._ln[which + "_b"][l], self.ln_eps, out)

    def post_norm(self, x, sublayer: str) -> None:
        """Post-LN: ``x <- LN1(x)`` after the attention sub-step, ``LN2(x)`` after the MLP (in place).

        Nothing for pre-LN and layer_norm = "none" (the residual stream is not normalized).
        """
        if self.layer_norm != "post":
            return
        which = "ln1" if sublayer == "attention" else "ln2"
        x[...] = self._affine_ln(x, which, self._buffers(x.shape[0])[0])

    def check_state(self, x, y) -> None:
        """Fold mode: centre the initial tokens in place (LN reads only ``P x``: read-outs are unchanged)."""
        self.project(x, y)

    def project(self, x, y) -> None:
        """Fold mode: keep the stream (and a velocity ``y``) in the centred hyperplane (the round-off of ``P``)."""
        if self.ln_mode == "fold":
            x -= x.mean(axis=1, keepdims=True)
            if y is not None:
                y -= y.mean(axis=1, keepdims=True)

    def attention(self, x, out, layer: int | None = None):
        """``out = Attn(LN1(x))`` of the current layer (or ``layer``), ``(N, d)``; not counted as an oracle call."""
        if layer is not None:
            self.use_layer(layer)
        l, n = self._layer, x.shape[0]
        u, qkv, heads_out, _, work = self._buffers(n)
        u = self._norm(x, "ln1", u)
        np.matmul(u, self._WqkvT[l], out=qkv)
        attention_heads(qkv, self._bqkv[l], self.heads, self.dtype.type(self.scale), self.causal, heads_out, work)
        np.matmul(heads_out.reshape(n, self.heads * self.d_h), self._WoT[l], out=out)
        out += self._bo[l]
        return out

    def _combine_first_order(self, x, t, a, b, out):
        f = self._buffers(x.shape[0])[3]
        self.attention(x, f)
        tp = self.dtype.type
        np.multiply(f, tp(b), out=f)  # in the buffer: the bits of ``out += b * f`` without its (N, d) temporary
        if a == 0.0:
            out[...] = f
        else:
            np.multiply(x, tp(a), out=out)  # out may alias x: f is already computed
            out += f
        return out

    def _combine_hamiltonian(self, x, y, t, ax, bx, ay, by, out_x, out_y):
        """``(F, G) = (y, Attn(LN1(x)))`` (flat), or the heads' mobility field ``(y sum_h 1/z^h, sum_h G^h)``."""
        n = x.shape[0]
        f = self._buffers(n)[3]
        tp = self.dtype.type
        if self._mobility is None:
            F = y
            self.attention(x, f)
        else:
            F = self._buffers(n)[0]
            self._mobility.field(x, y, t, F, f)
        np.multiply(x, tp(ax), out=out_x)  # out_x may alias x: F and f are already computed
        out_x += tp(bx) * F
        np.multiply(y, tp(ay), out=out_y)
        out_y += tp(by) * f

    def kinetic(self, x, y) -> float:
        """``K = (1/2N) sum_i |y_i|^2`` (flat metric); ``sum_h (1/N) sum_i |y_i|^2 / (2 z_i^h)`` (mobility)."""
        if self._mobility is not None:
            return self._mobility.energies(x, y)["kinetic"]
        return _half_mean_square(y)

    def mlp_field(self, at, base, layer: int, out):
        """``out = MLP_layer(LN2_layer(at))``, ``(N, d)`` (``base`` unused: Euclidean)."""
        self.use_layer(layer)
        u = self._norm(at, "ln2", self._buffers(at.shape[0])[0])
        return self.mlp(u, layer, out)

    def block(self, x, layer: int) -> np.ndarray:
        """One whole block ``x + Attn(LN1(x))``, then ``+ MLP(LN2(.))`` (post-LN: LN after each sum).

        Returns a new ``(N, d)`` array.
        """
        f = np.empty_like(x)
        x = x + self.attention(x, f, layer)
        self.post_norm(x, "attention")
        x = x + self.mlp_field(x, x, layer, f)
        self.post_norm(x, "mlp")
        return x

    def readout(self, x):
        """The final LayerNorm ``LN_f(x)``, a new ``(N, d)`` array; None without ln_f_g or with LN off."""
        if "ln_f_g" not in self._ln or self.layer_norm == "none":
            return None
        return layer_norm(x, self._ln["ln_f_g"], self._ln["ln_f_b"], self.ln_eps, np.empty_like(x))

    def embed(self, ids) -> np.ndarray:
        """``x_i(0) = wte[ids[i]] + wpe[i]``, ``(N, d)`` float64; ParameterError on a bad id."""
        wte, wpe = self.weights.get("wte"), self.weights.get("wpe")
        if wte is None or wpe is None:
            raise ParameterError("initial.law", f"a weight file with wte and wpe for tokens "
                                 f"({self.weights.path} has {'no wte' if wte is None else 'no wpe'})", "tokens")
        ids = np.asarray(ids)
        if ids.ndim != 1 or ids.size < 1 or ids.dtype.kind not in "iu":
            raise ParameterError("initial.ids", "a non-empty list of integer token ids", ids.tolist())
        if ids.min() < 0 or ids.max() >= wte.shape[0]:
            raise ParameterError("initial.ids", f"token ids in [0, {wte.shape[0]})", int(ids.max()))
        if ids.size > wpe.shape[0]:
            raise ParameterError("initial.ids", f"at most {wpe.shape[0]} tokens (rows of wpe)", ids.size)
        return wte[ids] + wpe[: ids.size]

    # ------------------------------------------------------------ diagnostics
    def energies(self, x, y) -> dict:
        """``energy = potential = (1/2N) sum_i |x_i|^2``, the residual stream's mean squared norm.

        Under ``metric = "mobility"``: the Hamiltonian's ``energy`` H, ``kinetic``,
        ``interaction`` (= ``potential``), summed over heads.

        A network's field is no gradient: there is no energy it decreases; the
        loop records one scalar per save, and the stream's norm is the one
        researchers track across layers. Accelerated: also ``kinetic`` (1/2N) sum_i |y_i|^2.
        """
        e = _half_mean_square(x)
        if self._mobility is not None:  # a Hamiltonian: H = K + interaction
            h = self._mobility.energies(x, y)
            return {**h, "potential": h["interaction"], "first_order_energy": h["interaction"]}
        if not self.accelerated:
            return {"energy": e, "potential": e}
        return {"energy": e, "potential": e, "kinetic": _half_mean_square(y)}

    def diagnostics(self, x, y) -> dict:
        """Per-save diagnostics of the residual stream ``x (N, d)`` (:mod:`meanfield.diagnostics.network`).

        Returns
        -------
        dict
            ``cos_mean``, ``cos_min``, ``cos_max``, ``cos_quantiles (5,)`` (at
            0.05, 0.25, 0.5, 0.75, 0.95): the pairwise cosine similarities of the
            tokens over i != j; the same of the centred tokens X - 1 xbar^T
            (``cos_centred_*``); ``rank_collapse`` ||X - 1 xbar^T||_F / ||X||_F;
            ``effective_rank`` and ``effective_rank_centred`` (entropy effective
            rank of X and of the centred X); per head of the layer the model last
            used (``use_layer``; layer 0 before the first step), from its
            projections of what they read (LN1(x); x for post-LN), biases included: ``E_beta_heads (H,)`` =
            1/(2 N^2) sum_ij exp(q_i . k_j / sqrt(d_h)) and ``n_clusters_heads (H,)``,
            the clusters of the directions of its outputs sum_j softmax_j v_j;
            ``n_clusters``: the clusters of the tokens on the LayerNorm sphere
            (directions of x_i - mean_k x_ik). Cluster tolerance: ``cluster_tol``
            (``[diagnostics] cluster_tol``, default the sphere model's).
            With ``full_diagnostics`` False (``[diagnostics] network = false``):
            only ``cos_mean`` and ``rank_collapse``, O(N d) (the full set costs
            0.85 s per save at GPT-2-small size, about five blocks: docs/performance.md).
        """
        from ..diagnostics import network as ND

        x = np.asarray(x, dtype=np.float64)
        if not self.full_diagnostics:
            return {"cos_mean": ND.mean_cosine(x), "rank_collapse": ND.rank_collapse(x)}
        xc = ND.centred(x)
        out = {}
        for prefix, z in (("cos", x), ("cos_centred", xc)):
            st = ND.cosine_statistics(z)
            out.update({f"{prefix}_{k}": st[k] for k in ("mean", "min", "max", "quantiles")})
        out["rank_collapse"] = ND.rank_collapse(x)
        out["effective_rank"] = ND.effective_rank(x)
        out["effective_rank_centred"] = ND.effective_rank(xc)
        tol = self.cluster_tol
        heads = ND.head_statistics(*self._head_projections(x), self.causal, tol)
        out["E_beta_heads"], out["n_clusters_heads"] = heads["E_beta"], heads["n_clusters"]
        out["n_clusters"] = np.int64(ND.count_clusters(ND.row_centred_directions(x), tol))
        return out

    def _head_projections(self, x) -> tuple:
        """``q, k, v (N, H, d_h)`` float64 of the current layer's heads at what they read, biases included.

        ``x (N, d)`` float64; the heads read LN1(x) (pre-LN; fold: the radial map, g and b in the
        weights) or ``x`` itself (post-LN, none), as :meth:`attention` does.
        """
        l, n, hd = self._layer, x.shape[0], self.heads * self.d_h
        u = self._norm(x, "ln1", np.empty_like(x))
        qkv = u @ self._WqkvT[l].astype(np.float64) + self._bqkv[l]
        return tuple(qkv[:, i * hd:(i + 1) * hd].reshape(n, self.heads, self.d_h) for i in range(3))

    def set_diagnostics(self, diagnostics) -> None:
        """``[diagnostics] cluster_tol`` and ``network`` (full diagnostics, or the O(N d) ones only)."""
        if diagnostics.cluster_tol is not None:
            self.cluster_tol = float(diagnostics.cluster_tol)
        if diagnostics.network is not None:
            self.full_diagnostics = diagnostics.network

    def describe(self) -> dict:
        return {"name": self.name, "dynamics": self.dynamics, "d": self.d, "heads": self.heads,
                "causal": self.causal, "layer_norm": self.layer_norm, "ln_mode": self.ln_mode, "metric": self.metric,
                "ln_eps": self.ln_eps, "mlp_activation": "gelu_tanh"}


__all__ = ["LAYER_NORMS", "LN_MODES", "METRICS", "Network", "fold_weights", "layer_norm", "radial_norm", "stacked_weights"]
