"""Elliptical laws stay elliptical

Both bilinear flows move every particle by the same linear map,
x_i(t) = U(t) x_i(0), so an elliptically contoured initial law stays
elliptically contoured: only its mean and covariance move, by a closed
moment ODE that holds exactly at any N. This study runs the accelerated
bilinear flow (Nesterov damping, rk4) from three laws with the same mean and
covariance -- Gaussian, Student t (heavy tails, dof = 4) and uniform on an
ellipsoid -- with ``[diagnostics] moment_ode = true``, which solves the moment
ODE alongside the run.

Top: the particles at the start and at the end with the covariance ellipses
of the moment ODE (dashed). Bottom: the whitened radii
|cov^{-1/2} (x_i - mean)| at the end against those at the start (sorted): a
linear map changes the ellipse but not the whitened radius of a particle, so
the points sit on the diagonal (to round-off); the middle panel is the
relative covariance error against the ODE over time, which is the rk4 step's
error and the same for the three laws.
"""

import argparse
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Ellipse

import meanfield
import meanfield.plotting

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"small": (300, 2.0), "default": (3000, 12.0), "large": (100000, 30.0)}  # N, t1
MEAN, COV = [1.0, 0.5], [[1.0, 0.6], [0.6, 0.5]]
LAWS = {"gaussian": {"law": "gaussian", "cov": COV},
        "student t, dof = 4": {"law": "student_t", "dof": 4.0, "cov": (np.array(COV) / 2.0).tolist()},
        "uniform ellipsoid": {"law": "uniform_ellipsoid", "cov": (np.array(COV) * 4.0).tolist()}}


def config(law, n, t1):
    return {"model": {"name": "bilinear", "dynamics": "accelerated", "d": 2, "A": "identity",
                      "Q": [[1.0, 0.0], [0.0, 0.25]], "m": [0.0, 0.0]},
            "damping": {"schedule": "nesterov", "r": 3.0},
            "integrator": {"name": "rk4", "h": 0.02},
            "initial": {"n": n, "mean": MEAN, "momentum": "zero", "seed": 0, **law},
            "run": {"t0": 1.0, "t1": 1.0 + t1, "save_every": 25},
            "output": {"save": ["x"]},
            "diagnostics": {"moment_ode": True}}


def ellipse(mean, cov, **kw):
    w, V = np.linalg.eigh(cov)
    angle = np.degrees(np.arctan2(V[1, 1], V[0, 1]))
    return Ellipse(mean, 2 * np.sqrt(w[1]), 2 * np.sqrt(w[0]), angle=angle, fill=False, **kw)


def whitened_radii(x, mean, cov):
    L = np.linalg.cholesky(cov)
    return np.sort(np.linalg.norm(np.linalg.solve(L, (x - mean).T), axis=0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=list(SIZES), default="default")
    ap.add_argument("--out", default=os.path.join(ROOT, "docs", "gallery", "elliptical_laws.png"))
    args = ap.parse_args(argv)
    meanfield.plotting.check_script_outputs(ap.prog, out=args.out)  # before computing
    n, t1 = SIZES[args.size]
    fig, axes = plt.subplots(2, 3, figsize=(13, 8))
    for col, (name, law) in enumerate(LAWS.items()):
        res = meanfield.Run(config(law, n, t1)).simulate()
        x, t = res["x"], res.t
        ax = axes[0, col]
        ax.scatter(*x[0].T, s=2, color="0.7", label=f"t = {t[0]:g}")
        ax.scatter(*x[-1].T, s=2, color="C0", label=f"t = {t[-1]:g}")
        for k in (0, len(t) // 4, len(t) - 1):
            ax.add_patch(ellipse(res["ode_mean"][k], 4 * res["ode_cov"][k], color="k", ls="--", lw=1))
        ax.set_xlim(-3, 5)
        ax.set_ylim(-3, 4)
        ax.set_aspect("equal")
        ax.set_title(f"{name} (dashed: the moment ODE's 2-sigma ellipses)", fontsize=9)
        ax.legend(fontsize=8, loc="upper right", markerscale=4)
        r0 = whitened_radii(x[0], res["mean"][0], res["cov"][0])
        r1 = whitened_radii(x[-1], res["mean"][-1], res["cov"][-1])
        axes[1, 0].plot(r0, r1, ".", ms=2, label=f"{name}: max |r(t1) - r(t0)| = {np.abs(r1 - r0).max():.1e}")
        err = res["ode_rel_error_cov"]
        axes[1, 1].semilogy(t[1:], np.maximum(err[1:], 1e-17), label=name)
        axes[1, 2].semilogy(t, np.trace(res["cov"], axis1=1, axis2=2), label=name)
        print(f"{name}: max relative covariance error vs ODE {err.max():.2e}, "
              f"whitened radii moved by {np.abs(r1 - r0).max():.2e}")
    axes[1, 0].plot([0, 6], [0, 6], "k-", lw=0.5)
    axes[1, 0].set(xlabel="sorted whitened radius at t0", ylabel="at t1", title="whitened radii are kept")
    axes[1, 1].set(xlabel="t", ylabel="|cov - cov_ODE|_F / |cov_ODE|_F", title="particles vs the moment ODE")
    axes[1, 2].set(xlabel="t", ylabel="trace of the covariance", title="the cloud contracts")
    for ax in axes[1]:
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"accelerated bilinear flow (nesterov, rk4 h = 0.02), N = {n}: "
                 "only mean and covariance move")
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
