"""Normalization schemes and their rates

Where the layer normalization sits changes how fast tokens on the sphere
collapse. With post-LN the tokens are the directions themselves (the
projected flow), and from equiangular tokens 1 - <x_i, x_j> decays
exponentially, like e^{-2t} for SA. With pre-LN the state is the residual
stream x_i = r_i theta_i, the radius grows like t and the directions slow
down as 1/r: the decay becomes algebraic, ~ t^{-2}. Peri-LN (the attention
output normalized too, s_i = r_i |a_i|) decays algebraically as well, here
with nearly the same exponent.

The three runs use the sphere model (SA, beta = 1, Q = K = V = I, rk4) from
the same equiangular tokens (n = d = 8, rho = 0.2). Left: 1 - mean
<theta_i, theta_j> on a logarithmic axis against t (post-LN a straight line);
right: the same on log-log axes (pre-LN a straight line). Dashed: the fitted
rates, printed by the script.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import meanfield
import meanfield.plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": (8, 10.0), "default": (8, 200.0), "large": (64, 1000.0)}  # n = d, t1
SCHEMES = ["post_ln", "peri_ln", "pre_ln"]


def config(scheme, n, t1):
    return {"model": {"name": "sphere", "dynamics": "first_order", "d": n, "beta": 1.0,
                      "normalization": scheme},
            "integrator": {"name": "rk4", "h": 0.05},
            "initial": {"law": "equiangular", "n": n, "rho": 0.2},
            "run": {"t0": 0.0, "t1": t1, "save_every": 10}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "normalization_rates.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    n, t1 = SIZES[args.size]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for c, scheme in enumerate(SCHEMES):
        res = meanfield.Run(config(scheme, n, t1)).simulate()
        t, gap = res.t, 1.0 - res["mean_inner"]
        ok = (gap > 1e-13) & (t > 0)
        ax.semilogy(t[ok], gap[ok], color=f"C{c}", label=scheme)
        ax2.loglog(t[ok], gap[ok], color=f"C{c}", label=scheme)
        late = ok & (t >= t[ok][-1] / 4)  # fit over the last three quarters of the decay
        if scheme == "post_ln":
            late = ok & (gap < 1e-3) & (gap > 1e-11)
            rate = -np.polyfit(t[late], np.log(gap[late]), 1)[0]
            ax.semilogy(t[late], gap[late][0] * np.exp(-rate * (t[late] - t[late][0])), "k--", lw=0.8)
            print(f"post_ln: 1 - rho ~ exp(-{rate:.3f} t)")
        elif late.sum() > 2:
            p = np.polyfit(np.log(t[late]), np.log(gap[late]), 1)[0]
            ax2.loglog(t[late], gap[late][0] * (t[late] / t[late][0]) ** p, "k--", lw=0.8)
            print(f"{scheme}: 1 - rho ~ t^{p:.3f}")
    for a in (ax, ax2):
        a.set_xlabel("t")
        a.set_ylabel("1 - mean <theta_i, theta_j>")
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    ax.set_title("log scale: post-LN decays exponentially")
    ax2.set_title("log-log: pre-LN decays like a power of t")
    fig.suptitle(f"sphere model, SA, beta = 1, equiangular tokens n = d = {n}, rho = 0.2, rk4 h = 0.05")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
