"""What a monitor keeps of each row of ``softmax(logits)``, in one blocked pass over the logits.

:meth:`~service.core.monitoring.stats.MonitorStats.summarise` needs, per row, the top-label class
and confidence (the first maximum of the probabilities ``p = exp(z - lse)``, as ``/v1/calibration``),
``Σ_k p_k²`` and ``p[y]`` for the Brier score, and for K = 2 the positive-class probability. Taken
one at a time (the N×K probabilities, then :func:`~service.core.narrow_rows.row_argmax` over them,
then :func:`~service.core.calibration.brier.brier_rows` on a float64 copy) that is three passes
over N×K values, two of them transposing; here each cache-sized block of rows is transposed once
(K×rows: every reduction along the long axis) and all of it computed while the block is in cache.

The probabilities, and so the class, the confidence and ``p[y]``, are those values bit for bit:
``fl(z - lse)`` and ``exp`` element by element, in the logits' dtype. ``Σ p²`` adds float64 squares
(exact for float32 probabilities) class by class, where ``brier_rows``' ``einsum`` adds them in its
own order: they may differ in the last bit.
"""

from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..cancel import checkpoint
from ..logsumexp import SoftmaxSummary

#: Bytes of the largest scratch buffer (the block's float64 squares): below ``xent serve``'s 128 KiB
#: mmap threshold (``service.api.serving.MALLOC_ENV``), so no buffer is a fresh ``mmap``
#: page-faulted in on every call (docs/internals.md, Block sizes).
SCRATCH_BYTES = 120 << 10
#: The log-sum-exp pass's blocks for such a batch: its block-sized buffers under that threshold too
#: (its default 512 KiB blocks are a fresh ``mmap`` there, ~100 page faults a 10,000×10 call).
LSE_BLOCK_BYTES = 120 << 10
#: Rows at least this wide are left to the N×K path (as :mod:`~service.core.narrow_rows` leaves them).
NARROW_K = 64


@dataclass(frozen=True)
class SoftmaxRows:
    """Per-row values of ``p = exp(z - lse)`` (:func:`softmax_rows`).

    Attributes
    ----------
    predicted : ndarray of intp
        First index of the row's largest probability.
    top : ndarray, the logits' dtype
        That probability.
    brier : ndarray of float64, or None
        ``Σ_k p_k² - 2 p[y] + 1`` (with labels).
    positive : ndarray, the logits' dtype, or None
        ``p[:, 1]`` (K = 2 only).
    """

    predicted: IntArray
    top: FloatArray
    brier: FloatArray | None
    positive: FloatArray | None


def softmax_rows(logits: FloatArray, summary: SoftmaxSummary, labels: IntArray | None) -> SoftmaxRows | None:
    """:class:`SoftmaxRows` of N×K `logits` (K < ``NARROW_K``) given their `summary`; None if a row is NaN.

    `labels`: a valid class per row, or None (no Brier terms).

    Examples
    --------
    >>> from service.core.logsumexp import softmax_summary
    >>> z = np.log(np.array([[0.25, 0.75], [0.5, 0.5]]))
    >>> rows = softmax_rows(z, softmax_summary(z), np.array([1, 0]))
    >>> rows.predicted, rows.top, rows.brier
    (array([1, 0]), array([0.75, 0.5 ]), array([0.125, 0.5  ]))
    """
    n, k = logits.shape
    lse = summary.lse
    predicted = np.empty(n, np.intp)
    top = np.empty(n, logits.dtype)
    sumsq = None if labels is None else np.empty(n, np.float64)
    picked = None if labels is None else np.empty(n, logits.dtype)
    positive = np.empty(n, logits.dtype) if k == 2 else None
    rows = min(n, max(2, SCRATCH_BYTES // (k * logits.itemsize)))
    part = max(2, SCRATCH_BYTES // (k * 8))  # rows of float64 squares at a time
    p = np.empty(k * rows, logits.dtype)
    squares = np.empty(k * min(rows, part) if labels is not None else 0, np.float64)
    is_top = np.empty(k * rows, bool)
    ranked = np.empty(k * rows, np.uint8)
    ranks = np.arange(k, 0, -1, dtype=np.uint8)[:, None]  # k, ..., 1
    first = np.arange(rows)  # flat index of row i's class 0 in a K×width block: class c at i + c·width
    with np.errstate(over="ignore") if summary.spans else nullcontext():  # as logsumexp.minus: −inf, p = 0
        for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
            checkpoint()
            # a lone last row takes the one before along: a K×1 column would be added pairwise
            block = slice(start - 1 if n - start == 1 and start > 0 else start, start + rows)
            source = logits[block]
            width = source.shape[0]
            pt = p[: k * width].reshape(k, width)
            np.copyto(pt, source.T)
            np.subtract(pt, lse[block], out=pt)
            np.exp(pt, out=pt)
            best = np.maximum.reduce(pt, axis=0, out=top[block])
            mask = is_top[: k * width].reshape(k, width)
            np.equal(pt, best, out=mask)
            rank = ranked[: k * width].reshape(k, width)
            np.multiply(mask, ranks, out=rank)
            np.subtract(k, np.maximum.reduce(rank, axis=0), out=predicted[block])  # the first maximum
            if positive is not None:
                positive[block] = pt[1]
            if labels is not None and sumsq is not None and picked is not None:
                pt.reshape(-1).take(first[:width] + labels[block] * width, out=picked[block], mode="clip")
                pieces = -(-width // part)  # equal pieces: none a lone column either
                bounds = [width * i // pieces for i in range(pieces + 1)]
                for at, end in zip(bounds[:-1], bounds[1:], strict=True):
                    sq = squares[: k * (end - at)].reshape(k, end - at)
                    np.copyto(sq, pt[:, at:end])
                    np.multiply(sq, sq, out=sq)  # float32 p: exact
                    np.add.reduce(sq, axis=0, out=sumsq[block][at:end])  # class by class
    if np.isnan(top).any():  # NaN equals nothing: leave the row to argmax (the N×K path)
        return None
    brier = None
    if sumsq is not None and picked is not None:  # as brier_rows: Σ p² - 2 p[y] + 1
        brier = picked.astype(np.float64)
        brier *= -2
        brier += sumsq
        brier += 1.0
    return SoftmaxRows(predicted, top, brier, positive)
