"""Record final states and saved diagnostics of a few particle runs (tests/test_loop_reference.py).

Run once with the code whose behaviour is to be kept (it was run on the time
loop before it was generalized to systems of named arrays):

    NUMBA_NUM_THREADS=1 python tests/data/make_loop_reference.py
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from loop_reference_cases import CASES, run_case  # noqa: E402

if __name__ == "__main__":
    out = {}
    for name in CASES:
        for key, value in run_case(name).items():
            out[f"{name}/{key}"] = value
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loop_reference.npz")
    np.savez_compressed(path, **out)
    print(f"wrote {path}: {len(out)} arrays")
