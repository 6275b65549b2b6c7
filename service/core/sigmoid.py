"""Softplus and binary cross-entropy from logits (log-sigmoid) in one cache-blocked pass.

``softplus(x) = max(x, 0) + log1p(exp(-|x|))`` costs NumPy six full passes over the array (and
its ``log1p`` is scalar code). Here the array is cut into blocks of ``BLOCK_BYTES``; every
elementwise step of a block runs in a few scratch buffers that stay in the L2 cache, and
``log1p(t)`` for ``t`` in [0, 1] is the SIMD ``log`` of ``u = fl(1 + t)`` plus the exact rounding
error ``e`` of that sum; dropping the ``1/u`` of ``log(u) + e/u`` errs by ``e·t/u``, a relative
error of at most half the machine epsilon.
"""

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray, IntArray
from .cancel import checkpoint

BLOCK_BYTES = 1 << 18  # measured best on a 1 MiB L2 (docs/internals.md, Block sizes)


def softplus(x: ArrayLike) -> FloatArray:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``, in the dtype of `x`.

    Integer input is computed in float64.

    Examples
    --------
    >>> softplus([0.0, 1e4, -1e4])
    array([6.93147181e-01, 1.00000000e+04, 0.00000000e+00])
    """
    x = np.asarray(x)
    x = x if x.dtype.kind == "f" else x.astype(np.float64)
    return _blocked(x, None)


def binary_nll(labels: IntArray, logits: FloatArray) -> FloatArray:
    """``-log σ(±z)`` per sample: ``softplus(z)`` where the label is 0, ``softplus(-z)`` where it is 1.

    PyTorch's ``F.binary_cross_entropy_with_logits(z, y, reduction="none")`` for labels in
    {0, 1}, exact at z = ±1e4; in the dtype of `logits`.

    Examples
    --------
    >>> binary_nll(np.array([1, 0]), np.array([0.0, 1e4]))
    array([6.93147181e-01, 1.00000000e+04])
    """
    return _blocked(logits, labels)


def _blocked(x: FloatArray, labels: IntArray | None) -> FloatArray:
    """``softplus(x)``, or ``softplus(x) - labels·x`` (= softplus(-x) where the label is 1), by blocks."""
    shape = x.shape
    flat = x.reshape(-1)
    y = None if labels is None else np.asarray(labels).reshape(-1)
    out = np.empty(flat.shape, x.dtype)
    step = max(1, BLOCK_BYTES // x.itemsize)
    size = min(step, flat.size)
    scratch = np.empty((3, size), x.dtype)
    zeros, hit = np.zeros(size, x.dtype), np.empty(size, bool)
    bits = np.dtype(f"i{x.itemsize}")
    sign = np.array(-0.0, x.dtype).view(bits)  # only the sign bit set
    for start in range(0, flat.size, step):  # blocks sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + step)
        xb = flat[block]
        t, u, c = scratch[:, : xb.size]
        np.bitwise_or(xb.view(bits), sign, out=t.view(bits))  # t = -|x|: one integer pass, not two
        np.exp(t, out=t)  # t = exp(-|x|) in [0, 1]
        np.add(t, 1, out=u)  # u = fl(1 + t) in [1, 2]; u - 1 is exact
        np.subtract(u, 1, out=c)
        np.subtract(t, c, out=c)  # e, the exact rounding error of 1 + t
        np.log(u, out=u)
        u += c  # log1p(t) = log(u) + e/u + O(e²); adding e itself errs by e·t/u ≤ log1p(t)·2^-p
        np.maximum(xb, zeros[: xb.size], out=c)  # an array operand: NumPy's scalar-0 maximum is 3× slower
        if y is not None:
            is_one = hit[: xb.size]
            np.equal(y[block], 1, out=is_one)
            np.multiply(xb, is_one, out=t)
            c -= t  # max(x, 0) - x = max(-x, 0) exactly where the label is 1
        np.add(c, u, out=out[block])
    return out.reshape(shape)
