"""NumPy's overflow raised for one operation, at the cost of two context-variable calls.

``np.errstate(over="raise")`` costs ~11,000 instructions a use (its ``__init__``, ``__enter__`` and
``__exit__`` run in Python and build NumPy's error-state object each time): more than the
subtraction it guards on a 32×10 batch. Setting the context variable ``np.errstate`` sets, to an
error state built once, costs ~2,800 (callgrind, `python -m benchmarks.error_state`)::

    token = ERROR_STATE.set(RAISE_OVER)
    try:
        ...  # an overflow raises FloatingPointError; other errors as NumPy's defaults
    finally:
        ERROR_STATE.reset(token)

This relies on NumPy's internals (``numpy._core._ufunc_config._extobj_contextvar``, NumPy 2.x);
``tests/core/test_overflow.py`` pins them: an overflow raises inside, warns outside, and the
caller's own state comes back.
"""

import numpy as np
from numpy._core._ufunc_config import _extobj_contextvar as ERROR_STATE  # type: ignore[attr-defined]

with np.errstate(over="raise"):
    RAISE_OVER = ERROR_STATE.get()

__all__ = ["ERROR_STATE", "RAISE_OVER"]
