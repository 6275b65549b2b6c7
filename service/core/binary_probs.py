"""Binary log-loss from positive-class probabilities in cache-sized blocks.

``-log max(p_y, eps)`` with ``p_1 = p`` and ``p_0 = 1 - p``, and the count of clipped values,
each in one pass over blocks of ``BLOCK_BYTES``: no N-sized ``1 - p``, mask or ``where``
temporaries. ``p_y`` is gathered as ``|p - [y = 0]|`` (``p - 1 = -(1 - p)`` exactly as rounded),
three cheap passes where ``copyto(..., where=)`` took four times the ``log`` (measured in the
docs/internals.md, Binary cross-entropy).
"""

from typing import Any

import numpy as np

from ._typing import FloatArray, IntArray
from .cancel import checkpoint

BLOCK_BYTES = 1 << 18  # measured best on a 1 MiB L2 (docs/internals.md, Block sizes)


def count_clipped(p: FloatArray, eps: float) -> int:
    """How many of ``p`` and ``1 - p`` lie below `eps` (both sides of a binary probability).

    Examples
    --------
    >>> count_clipped(np.array([0.0, 1.0, 0.5]), 1e-7)
    2
    """
    step = max(1, BLOCK_BYTES // p.itemsize)
    hit = np.empty(min(step, p.size), bool)
    top = None
    total = 0
    for start in range(0, p.size, step):  # blocks sized for the cache, never single samples
        checkpoint()
        pb = p[start : start + step]
        if pb.min() >= eps and 1 - pb.max() >= eps:  # `1 - max p` rounds as `min (1 - p)` does
            continue  # two reductions of a block in cache; NaN fails both and is looked at
        if top is None:
            top = high_side_threshold(p.dtype, eps)
        h = hit[: pb.size]
        total += int(np.count_nonzero(np.less(pb, eps, out=h)))
        total += int(np.count_nonzero(np.greater_equal(pb, top, out=h)))  # 1 - p < eps, no 1 - p formed
    return total


def high_side_threshold(dtype: np.dtype[Any], eps: float) -> np.ndarray:
    """The least value ``t`` of `dtype` (a 0-d array) with ``1 - t < eps`` as NumPy rounds it in `dtype`.

    ``1 - p`` rounds monotonically, so ``1 - p < eps`` holds exactly for ``p >= t``: one
    comparison instead of a subtraction and a comparison. Found by bisection over the dtype's
    values in [0, 2] (non-negative floats are ordered as their bit patterns), with the very
    operation it replaces: ``1 - eps`` itself can lie many ulps away, when `eps` is finer than
    the dtype near 1 (an FP32 input with eps 1 - 2**-52 has t just above 2**-25).

    Examples
    --------
    >>> float(high_side_threshold(np.dtype(np.float32), 1 - 2**-52)) == 2**-25 + 2**-48
    True
    """

    def clipped(x: np.ndarray) -> bool:
        return bool(np.subtract(1, x) < eps)

    bits = np.dtype(dtype.str.replace("f", "u"))

    def value(pattern: int) -> np.ndarray:
        return np.array([pattern], bits).view(dtype).reshape(())

    low = int(np.array([0], dtype).view(bits)[0])
    high = int(np.array([2], dtype).view(bits)[0])
    if clipped(value(low)) or not clipped(value(high)):  # eps past 1, or not a number
        raise ValueError(f"eps must be a number in [0, 1); got {eps!r}")
    while high - low > 1:  # clipped(high), not clipped(low): at most 64 steps
        middle = (low + high) // 2
        low, high = (low, middle) if clipped(value(middle)) else (middle, high)
    return value(high)


def binary_nll_probs(labels: IntArray, p: FloatArray, eps: float) -> FloatArray:
    """``-log max(p_y, eps)`` per sample, ``p_1 = p``, ``p_0 = 1 - p``; eps 0 gives ``+inf`` at p_y = 0.

    ``+0.0`` where ``p_y = 1``. In the dtype of `p`.

    Examples
    --------
    >>> binary_nll_probs(np.array([1, 0, 1]), np.array([0.5, 0.5, 0.0]), 0.0)
    array([0.69314718, 0.69314718,        inf])
    """
    out = np.empty(p.shape, p.dtype)
    step = max(1, BLOCK_BYTES // p.itemsize)
    chosen = np.empty(min(step, p.size), p.dtype)
    negative = np.empty(min(step, p.size), bool)
    floor = np.full(chosen.size, eps, p.dtype)  # an array operand: NumPy's scalar maximum is ~3× slower
    for start in range(0, p.size, step):  # blocks sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + step)
        pb = p[block]
        c, y0 = chosen[: pb.size], negative[: pb.size]
        np.equal(labels[block], 0, out=y0)
        np.subtract(pb, y0, out=c)  # p, or p - 1 = -(1 - p) where y = 0
        np.abs(c, out=c)
        if eps > 0:
            np.maximum(c, floor[: pb.size], out=c)
        with np.errstate(divide="ignore"):
            np.log(c, out=c)
        np.subtract(0.0, c, out=out[block])  # 0 - x, not -x: p_y = 1 gives +0.0
    return out
