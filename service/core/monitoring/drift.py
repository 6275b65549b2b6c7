"""Drift between class distributions: the Jensen–Shannon divergence of two count vectors."""

import math

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray
from ..errors import InputError


def js_drift(current: ArrayLike, reference: ArrayLike, *, base: float = 2) -> float:
    """Jensen–Shannon *divergence* between two class distributions (counts are normalised first).

    ``½ KL(p‖m) + ½ KL(q‖m)``, ``m = (p + q) / 2``, in log-base `base` (``2``: in [0, 1]).
    It is the square of ``scipy.spatial.distance.jensenshannon(current, reference, base)``
    (the JS *distance*).

    Examples
    --------
    >>> js_drift([1, 0], [0, 1])
    1.0
    """
    p = _distribution(current, "current")
    q = _distribution(reference, "reference")
    if p.shape != q.shape:
        raise InputError("reference", f"must have as many classes as `current` ({p.size}); got {q.size}")
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p / m), 0.0) + np.where(q > 0, q * np.log(q / m), 0.0)
    return max(float(terms.sum()) / 2 / math.log(base), 0.0)


def _distribution(values: ArrayLike, field: str) -> FloatArray:
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.all(np.isfinite(v) & (v >= 0)) or v.sum() <= 0:
        raise InputError(
            field, "must be a non-empty vector of finite, non-negative numbers with a positive sum"
        )
    return v / v.sum()
