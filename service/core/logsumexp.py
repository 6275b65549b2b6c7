"""Fused, cache-blocked softmax statistics: log-sum-exp, top-1 class and entropy in one pass.

Rows are processed in blocks of about ``BLOCK_BYTES``. Narrow blocks (K < ``NARROW_K``) are
transposed to K×rows first, so every reduction runs along the long contiguous axis
(reductions along a short last axis are ~8× slower than the ``exp`` itself).
"""

from dataclasses import dataclass

import numpy as np

from ._typing import FloatArray, IntArray
from .cancel import checkpoint

BLOCK_BYTES = 1 << 19
NARROW_K = 64


@dataclass(frozen=True)
class SoftmaxSummary:
    """Per-row statistics of ``softmax(logits)``.

    Attributes
    ----------
    shift : ndarray of shape (n_samples,)
        The row maximum ``m``.
    log_norm : ndarray of shape (n_samples,)
        ``log Σ exp(z - m)``, computed as ``log1p(Σ exp(z - m) - 1)`` with the 1 of the first
        maximum removed exactly: full relative precision even when the top class's loss is 1e-15.
    top : ndarray of int, shape (n_samples,), or None
        The first index of the row maximum (``argmax``), when asked for.
    entropy : ndarray of shape (n_samples,), or None
        ``H = log_norm - Σ p (z - m)`` (no cancellation against ``m``), when asked for.
    """

    shift: FloatArray
    log_norm: FloatArray
    top: IntArray | None = None
    entropy: FloatArray | None = None

    @property
    def lse(self) -> FloatArray:
        """``log Σ exp(z)`` per row."""
        return self.shift + self.log_norm


def softmax_summary(logits: FloatArray, *, top: bool = True, entropy: bool = True) -> SoftmaxSummary:
    """Row maximum and log-normaliser of every row of `logits` (N×K), and optionally argmax and entropy.

    One pass over the data, in its dtype, in cache-sized blocks of rows.

    Examples
    --------
    >>> s = softmax_summary(np.array([[0.0, 0.0], [1e4, 0.0]]))
    >>> s.lse, s.top, s.entropy
    (array([6.93147181e-01, 1.00000000e+04]), array([0, 0]), array([0.69314718, 0.        ]))
    """
    n, k = logits.shape
    out: dict[str, np.ndarray] = {name: np.empty(n, logits.dtype) for name in ("shift", "log_norm")}
    if top:
        out["top"] = np.empty(n, np.intp)
    if entropy:
        out["entropy"] = np.empty(n, logits.dtype)
    rows = max(1, BLOCK_BYTES // (k * logits.itemsize))
    narrow = k < NARROW_K
    for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + rows)
        z = np.array(logits[block].T if narrow else logits[block], order="C")  # always a scratch copy
        for name, values in _summarise(z, 0 if narrow else 1, top=top, entropy=entropy).items():
            out[name][block] = values
    return SoftmaxSummary(**out)


def _summarise(z: FloatArray, axis: int, *, top: bool, entropy: bool) -> dict[str, np.ndarray]:
    """One block, classes along `axis`; `z` is a scratch copy, overwritten."""
    k = z.shape[axis]
    m = z.max(axis=axis, keepdims=True)
    z -= m  # z - m ≤ 0, exactly 0 at every maximum
    is_top = z == 0
    stats: dict[str, np.ndarray] = {"shift": np.squeeze(m, axis)}
    if top:
        ranks = np.arange(k, 0, -1, dtype=np.int32).reshape((k, 1) if axis == 0 else (1, k))
        stats["top"] = k - (is_top * ranks).max(axis=axis)  # first maximum, reduced along the long axis
    ties = is_top.view(np.uint8).sum(axis=axis, dtype=np.uint8 if k < 256 else np.int32).astype(z.dtype)
    e = np.exp(z)
    e -= is_top  # exp(0) = 1 exactly: the maxima now contribute 0
    rest = e.sum(axis=axis) + (ties - 1)  # Σ exp(z - m) - 1, without rounding the 1 in
    log_norm = log1p(rest)
    stats["log_norm"] = log_norm
    if entropy:
        z *= e  # the maxima have (z - m) = 0: nothing lost by zeroing their e
        stats["entropy"] = np.maximum(log_norm - z.sum(axis=axis) / (rest + 1), 0)
    return stats


def log1p(x: FloatArray) -> FloatArray:
    """``log(1 + x)`` to a few ulps via ``log(u) · x / (u - 1)``, ``u = 1 + x`` (Goldberg 1991).

    NumPy's own ``log1p`` is scalar code, several times slower than the SIMD ``log``.

    Examples
    --------
    >>> log1p(np.array([1e-20, 1.0]))
    array([1.00000000e-20, 6.93147181e-01])
    """
    u = 1 + x
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(u == 1, x, np.log(u) * (x / (u - 1)))
