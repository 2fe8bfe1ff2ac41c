"""meanfield.errors.check_real: the one check behind numeric parameters."""

from __future__ import annotations

import numpy as np
import pytest

from meanfield.errors import ParameterError, check_real


@pytest.mark.parametrize("value, integer, ok", [
    (True, False, False), (float("nan"), False, False), (float("inf"), False, False), ("1", False, False),
    (2.5, True, False), (3, True, True), (np.float64(0.5), False, True), (np.int64(4), True, True),
    (-1.0, False, False), (10**400, True, False), (10**400, False, False),
])
def test_check_real_is_the_one_number_check(value, integer, ok):
    """errors.check_real: a bool, NaN, inf, an integer beyond the float range, a string, a float for an
    integer or a value failing the condition is a ParameterError with the caller's key and expected text; otherwise the number."""
    if ok:
        out = check_real("s.k", value, "a positive number", lambda v: v > 0, integer=integer)
        assert out == value and type(out) is (int if integer else float)
    else:
        with pytest.raises(ParameterError, match=r"\[s\.k\] expected a positive number"):
            check_real("s.k", value, "a positive number", lambda v: v > 0, integer=integer)
