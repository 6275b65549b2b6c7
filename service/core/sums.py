"""Means and sums of finite float values accumulated in float64, past whose range they stay honest.

Finite values near ±1.8e308 can overflow a float64 sum: the sum is then ±inf (NaN from +inf and
−inf), which is the value it has; the mean is not past the range, and is taken as Σ (v / n).
"""

import math

import numpy as np

from ._typing import FloatArray


def mean64(values: FloatArray) -> float:
    """The mean of `values`, accumulated in float64; a sum past float64's range: Σ (v / n) instead."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(np.mean(values, dtype=np.float64))
    if not math.isfinite(mean) and np.isfinite(values).all():
        return float(np.add.reduce(values.astype(np.float64) / values.size))
    return mean


def sum64(values: FloatArray) -> float:
    """The sum of `values` in float64; past float64's range ±inf, without a warning."""
    with np.errstate(over="ignore", invalid="ignore"):
        return float(np.sum(values, dtype=np.float64))
