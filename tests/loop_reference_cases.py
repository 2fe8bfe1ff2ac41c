"""Particle runs whose results must not change when the time loop is restructured.

Each case exercises a different path of the loop: damped and undamped
dissipation quadrature (per step: Simpson and trapezoid; per save), a
shortened last step, multistep history, a nag schedule, a causal mask, the
sphere projection, float32.
"""

import numpy as np

import meanfield

BIL = {"name": "bilinear", "d": 2, "A": [[1.0, 0.3], [-0.1, 0.8]],
       "Q": [[1.0, 0.2], [0.2, 2.0]], "m": [0.3, -0.2]}
SOFT = {"name": "softmax", "d": 2, "A": [[0.2, 0.05], [0.05, 0.1]], "B": "identity",
        "normalized": True, "Q": [[2.0, 0.0], [0.0, 1.0]], "m": [0.1, -0.1]}
SPH = {"name": "sphere", "d": 3, "beta": 2.0, "normalized": True}
GAUSS = {"law": "gaussian", "n": 40, "seed": 3, "momentum": "gaussian", "momentum_scale": 0.5}


def _cfg(model, dynamics, integ, h, run, initial=GAUSS, damping=None, diagnostics=None):
    return {
        "model": {**model, "dynamics": dynamics},
        "integrator": {"name": integ, "h": h},
        "damping": damping or {"schedule": "none"},
        "initial": dict(initial),
        "run": run,
        "output": {"save": ["x", "y"]},
        "diagnostics": diagnostics or {"dissipation": "auto"},
    }


CASES = {
    # nesterov damping, saves every 4 steps (Simpson), t1 not on the step grid
    "bil_exp_euler": _cfg(BIL, "accelerated", "exp_euler", 0.07,
                          {"t0": 1.0, "t1": 2.33, "save_every": 4},
                          damping={"schedule": "nesterov", "r": 3.0}),
    # odd saves (trapezoid on the last pieces), constant damping
    "bil_tao2": _cfg(BIL, "accelerated", "tao2", 0.05, {"t0": 0.0, "steps": 17, "save_every": 3},
                     damping={"schedule": "constant", "a": 0.7}),
    "bil_ab2_save_diss": _cfg(BIL, "accelerated", "ab2", 0.05, {"t0": 0.0, "steps": 12, "save_every": 5},
                              damping={"schedule": "constant", "a": 0.4},
                              diagnostics={"dissipation": "save"}),
    "bil_first_heun": _cfg(BIL, "first_order", "heun", 0.1, {"t0": 0.0, "steps": 9, "save_every": 2}),
    "bil_causal_rk4": _cfg({**BIL, "causal": True}, "accelerated", "rk4", 0.05,
                           {"t0": 0.0, "steps": 8, "save_every": 3},
                           damping={"schedule": "constant", "a": 0.3}),
    "soft_strang": _cfg(SOFT, "accelerated", "strang", 0.05, {"t0": 1.0, "steps": 10, "save_every": 2},
                        damping={"schedule": "loglin", "c_log": 1.0, "c_lin": 0.1}),
    "soft_nag": _cfg(SOFT, "first_order", "nag", 0.1, {"t0": 1.0, "steps": 10, "save_every": 3},
                     damping={"schedule": "nesterov", "r": 3.0}),
    "sphere_rk4": _cfg(SPH, "first_order", "rk4", 0.1, {"t0": 0.0, "steps": 10, "save_every": 5},
                       initial={"law": "sphere_uniform", "n": 30, "seed": 1}),
    "sphere_acc_f32": _cfg(SPH, "accelerated", "exp_euler", 0.1,
                           {"t0": 0.0, "steps": 10, "save_every": 5, "dtype": "float32"},
                           initial={"law": "sphere_uniform", "n": 30, "seed": 1, "momentum": "zero"},
                           damping={"schedule": "constant", "a": 1.0}),
}


def run_case(name) -> dict:
    """Final state, every saved task except x/y, and the scales (without wall time)."""
    res = meanfield.Run(CASES[name]).simulate()
    out = {"final_x": res.x}
    if res.y is not None:
        out["final_y"] = res.y
    for key in ("sim_time", "iteration", "oracle_calls"):
        out[key] = res.scales[key]
    for key, value in res.tasks.items():
        out[f"task_{key}"] = value
    return out
