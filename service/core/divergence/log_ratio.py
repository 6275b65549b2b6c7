"""Logs of ratios of probabilities that do not cancel when the two are nearly equal.

``p (log p - log q)`` loses the digits the two logs share: for p = 0.9456657713430001 and
q = 0.9456657713430094 it is 5e-4 off in relative terms (issue #20), and ``p log(p / q)``
is 2e-3 off (the ratio itself is rounded next to 1). Written as
``sign(p - q) · log1p(|p - q| / min(p, q))`` every step is exact or well conditioned:
``p - q`` is exact when the two are within a factor of 2 (Sterbenz), the quotient is
non-negative so ``log1p`` never nears its pole, and the result is within a few ulps of the
exact ``log(p / q)`` (checked against mpmath in ``tests/core/test_log_ratio.py``).
"""

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray

LOG2 = float(np.log(2.0))


def log_ratio(a: ArrayLike, b: ArrayLike) -> FloatArray:
    """``log(a / b)`` elementwise for ``a, b ≥ 0``, to a few ulps even where ``a ≈ b``.

    Parameters
    ----------
    a, b : array-like of float, same shape
        Non-negative values (probabilities, possibly floored at an eps).

    Returns
    -------
    ratio : ndarray
        ``sign(a - b) · log1p(|a - b| / min(a, b))``: ``+inf`` where ``a > 0 = b``, ``-inf``
        where ``a = 0 < b``, NaN where both are 0 (callers weight that term by 0). The form
        SciPy's ``rel_entr`` uses near ``a = b``.

    Examples
    --------
    >>> float(0.9456657713430001 * log_ratio(0.9456657713430001, 0.9456657713430094))
    -9.325873406851269e-15
    """
    x, y = np.asarray(a), np.asarray(b)
    dtype = np.result_type(x, y, np.float32)
    out = np.empty(np.broadcast_shapes(x.shape, y.shape), dtype)
    return log_ratio_into(x, y, out, np.empty_like(out), subnormal=True)


def log_ratio_into(
    a: FloatArray, b: FloatArray, out: FloatArray, scratch: FloatArray, *, subnormal: bool
) -> FloatArray:
    """:func:`log_ratio` written into `out`, `scratch` of its shape used on the way.

    `subnormal` False promises ``min(a, b)`` is 0 or at least the smallest normal number
    (both sides floored at an eps of at least ``finfo.tiny``), so ``|a - b| / min(a, b)``
    cannot overflow; True adds a check that recomputes the overflowed terms as
    ``log a - log b`` (then both logs are near ``log tiny``, so nothing cancels).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # overflow: undone below
        np.subtract(a, b, out=scratch)  # exact when b/2 <= a <= 2b
        np.minimum(a, b, out=out)
        np.divide(scratch, out, out=scratch)  # signed (a - b) / min(a, b)
        np.abs(scratch, out=out)
        np.log1p(out, out=out)
        np.copysign(out, scratch, out=out)
    if subnormal:
        _undo_overflow(np.broadcast_to(a, out.shape), np.broadcast_to(b, out.shape), out)
    return out


def _undo_overflow(a: FloatArray, b: FloatArray, out: FloatArray) -> None:
    """``log a - log b`` where ``|a - b| / min(a, b)`` overflowed though both are positive."""
    bad = np.isinf(out)
    if not bad.any():
        return
    bad &= np.minimum(a, b) > 0
    out[bad] = np.log(a[bad]) - np.log(b[bad])


def js_terms_into(
    p: FloatArray, q: FloatArray, out: FloatArray, s1: FloatArray, s2: FloatArray, zero: np.ndarray | None
) -> FloatArray:
    """``p log(p/m) + q log(q/m)``, ``m = (p + q)/2``, elementwise into `out` (twice the JS terms).

    The larger x of p and q gives ``x log1p(|p - q| / (p + q))`` and the smaller y
    ``-y log1p(|p - q| / 2y)``: each term to a few ulps (their sum still cancels where
    p ≈ q, as the divergence itself is second order there). `zero` marks where p or q is 0
    (None: nowhere); there the pair is ``(p + q) log 2`` (``0 log 0 = 0``). `s1` and `s2`
    are scratch of `out`'s shape.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        np.subtract(p, q, out=s1)
        np.abs(s1, out=s1)  # |p - q|
        np.minimum(p, q, out=out)
        np.add(out, out, out=s2)  # 2y, exact
        np.divide(s1, s2, out=s2)
        np.log1p(s2, out=s2)
        np.multiply(out, s2, out=s2)  # y log1p(|p - q| / 2y) = -y log(y/m)
        np.add(p, q, out=out)
        np.divide(s1, out, out=s1)
        np.log1p(s1, out=s1)
        np.maximum(p, q, out=out)
        np.multiply(out, s1, out=out)  # x log(x/m)
        np.subtract(out, s2, out=out)
    if zero is not None:
        np.add(p, q, out=out, where=zero)  # one of them is 0: the other's p log 2
        np.multiply(out, LOG2, out=out, where=zero)
    return out
