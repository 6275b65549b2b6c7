"""Weights on losses held in a narrow dtype: PyTorch's products, float64 where the dtype overflows.

A loss of FP32 or FP16 predictions is held in their dtype, as PyTorch holds it, and so are the
weights that fit it. A weight past the dtype's range (a ``pos_weight`` of 2e142 on FP32 logits), or
a product past it (a weight of 6e17 on an FP16 loss), has no value there: it stays float64, so the
losses, means and sums are the finite numbers they are, not +inf (nor a cast's overflow warning).

Both run on every weighted request: overflow is raised through :mod:`service.core.overflow`'s
context variable, not ``np.errstate`` (~2,800 instructions a use against ~11,000).
"""

import numpy as np
from numpy.typing import DTypeLike

from ._typing import FloatArray
from .overflow import ERROR_STATE, RAISE_OVER


def in_dtype(values: FloatArray, dtype: DTypeLike) -> FloatArray:
    """`values` cast to `dtype` where every one fits; as they are (float64) where one does not."""
    token = ERROR_STATE.set(RAISE_OVER)
    try:
        return values.astype(dtype, copy=False)
    except FloatingPointError:
        return values
    finally:
        ERROR_STATE.reset(token)


def weigh(values: FloatArray, weights: FloatArray) -> FloatArray:
    """``values · weights`` in the values' dtype; float64 where a product overflows it.

    The float64 product of two FP32 (or FP16) numbers is exact, so rounding it once to the dtype
    is PyTorch's product bit for bit. A zero weight gives 0 even on an infinite value.
    """
    product = np.zeros(np.broadcast_shapes(np.shape(values), np.shape(weights)), dtype=np.float64)
    nonzero = np.asarray(weights) != 0
    token = ERROR_STATE.set(RAISE_OVER)
    try:
        try:
            np.multiply(values, weights, out=product, where=nonzero)
        except FloatingPointError:  # past float64 itself: an honest inf, without the warning
            with np.errstate(over="ignore"):
                np.multiply(values, weights, out=product, where=nonzero)
        try:
            return product.astype(np.asarray(values).dtype, copy=False)
        except FloatingPointError:
            return product
    finally:
        ERROR_STATE.reset(token)
