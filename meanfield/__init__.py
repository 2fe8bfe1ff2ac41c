"""meanfield: attention as an interacting particle system.

Classical attention flows and their accelerated (damped Hamiltonian)
counterparts, simulated with numba kernels. See README.md.
"""

import os as _os

# OpenBLAS's idle threads spin after a matmul and halve the speed of a numba
# parallel region started right after (measured on the reference machine). Only effective
# when meanfield is imported before numpy.
_os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

__version__ = "0.1.0"

from .errors import ParameterError, SimulationError
from .io.reader import Trajectory, load
from .run import Run, RunResult, simulate_config

__all__ = [
    "ParameterError",
    "Run",
    "RunResult",
    "SimulationError",
    "Trajectory",
    "__version__",
    "load",
    "simulate_config",
]
