"""The long-context phase transition of one attention layer

One pure self-attention layer (the ``mean_shift`` block: x_i <- a_i / |a_i|,
SA on the sphere, Q = K = V = I) applied to equiangular tokens
(<x_i, x_j> = rho for i != j, N = d) at inverse temperature beta = gamma log N.
The image is equiangular again, with the closed-form inner product
``meanfield.reductions.equiangular.one_layer_inner``. As N -> infinity it
tends to 1 (the layer collapses the context) for gamma < 1/(1 - rho), to
4 rho / (1 + 3 rho) at gamma = 1/(1 - rho), and stays rho above: a phase
transition in the temperature scaling of long-context attention.

Points: one layer on N particles, computed by ``meanfield.Run`` (one oracle
call each); lines: the closed form at the same N; black: the N -> infinity
limit (``long_context_limit``). What to look for: the particles sit on the
closed form, and the curves steepen towards the step at gamma = 1/(1 - rho)
as N grows.
"""

import argparse
import math
import os

# many small runs: BLAS threads cost more than the d x d factorizations they would share
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import meanfield  # noqa: E402
import meanfield.plotting  # noqa: E402
from meanfield.reductions.equiangular import long_context_limit, one_layer_inner  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": ([8, 16], 5), "default": ([8, 32, 128], 25), "large": ([8, 32, 128, 512, 2048], 41)}
RHO = 0.5


def layer(n, gamma):
    """Mean pairwise inner product after one layer on n equiangular particles."""
    cfg = {"model": {"name": "sphere", "dynamics": "first_order", "d": n, "beta": gamma * math.log(n)},
           "integrator": {"name": "mean_shift", "h": 1.0},
           "initial": {"law": "equiangular", "n": n, "rho": RHO},
           "run": {"t0": 0.0, "steps": 1, "save_every": 1}}
    return float(meanfield.Run(cfg).simulate()["mean_inner"][-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "long_context.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    sizes, n_gamma = SIZES[args.size]
    crit = 1.0 / (1.0 - RHO)
    gammas = np.linspace(0.25, 2 * crit, n_gamma)
    fine = np.linspace(gammas[0], gammas[-1], 400)
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    worst = 0.0
    for c, n in enumerate(sizes):
        particles = [layer(n, g) for g in gammas]
        exact = [one_layer_inner(RHO, g * math.log(n), n) for g in gammas]
        worst = max(worst, float(np.max(np.abs(np.subtract(particles, exact)))))
        ax.plot(fine, [one_layer_inner(RHO, g * math.log(n), n) for g in fine], color=f"C{c}", lw=1)
        ax.plot(gammas, particles, "o", color=f"C{c}", ms=4, label=f"N = d = {n}")
    lim = [long_context_limit(RHO, g) for g in fine]
    ax.plot(fine, lim, "k-", lw=2, label="N -> infinity")
    ax.plot([crit], [4 * RHO / (1 + 3 * RHO)], "ko", ms=6)
    ax.axvline(crit, color="0.5", ls=":", lw=1)
    ax.set_xlabel("gamma (beta = gamma log N)")
    ax.set_ylabel("<x_i, x_j> after one layer")
    ax.set_title(f"equiangular tokens, rho = {RHO:g}: one SA layer (points: particles, lines: closed form)",
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}; largest |particles - closed form| = {worst:.1e}")


if __name__ == "__main__":
    main()
