"""What a monitor keeps of each row of ``softmax(logits)``, in one blocked pass over the logits.

:meth:`~service.core.monitoring.stats.MonitorStats.summarise` needs, per row, the top-label class
and confidence (the first maximum of the probabilities ``p = exp(z - lse)``, as ``/v1/calibration``),
``Σ_k p_k²`` and ``p[y]`` for the Brier score, and for K = 2 the positive-class probability. Taken
one at a time (the N×K probabilities, then :func:`~service.core.narrow_rows.row_argmax` over them,
then :func:`~service.core.calibration.brier.brier_rows` on a float64 copy) that is three passes
over N×K values, two of them transposing; here each cache-sized block of rows is transposed once
(K×rows: every reduction along the long axis) and all of it computed while the block is in cache.
The statistics' own pass (:class:`RowsPass`) takes each block from the log-sum-exp pass that
copied it there (``softmax_summary(..., each=...)``): one transposed copy of the logits, not two.

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
from ..scratch import borrowed

#: Bytes of float64 squares taken at a time (a piece of a block, in cache), and of the blocks of
#: :func:`softmax_rows`' own pass. The log-sum-exp pass's blocks feeding :class:`RowsPass` are its
#: own (512 KiB); every buffer is the thread's own, lent again to its next call
#: (:mod:`~service.core.scratch`).
SCRATCH_BYTES = 120 << 10
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


class RowsPass:
    """:class:`SoftmaxRows` of N×K `logits` (K < ``NARROW_K``), fed one K×width block at a time.

    Called with each block (:meth:`__call__`), in order, as the log-sum-exp pass transposes it
    (``softmax_summary(..., each=...)``): the block is then in cache and its transposed copy is
    not made twice. :func:`softmax_rows` feeds it blocks of its own. `labels`: a valid class per
    row, or None (no Brier terms).
    """

    def __init__(self, logits: FloatArray, labels: IntArray | None) -> None:
        n, k = logits.shape
        self.n, self.k, self.labels = n, k, labels
        self.done = 0  # rows fed so far
        self.predicted = np.empty(n, np.intp)
        self.top = np.empty(n, logits.dtype)
        self.sumsq = None if labels is None else np.empty(n, np.float64)
        self.picked = None if labels is None else np.empty(n, logits.dtype)
        self.positive = np.empty(n, logits.dtype) if k == 2 else None
        self.part = max(2, SCRATCH_BYTES // (k * 8))  # rows of float64 squares at a time
        self.ranks = np.arange(k, 0, -1, dtype=np.uint8)[:, None]  # k, ..., 1
        self.first = np.arange(0)  # row i's class 0 in a K×width block, flat: class c at i + c·width

    def __call__(self, block: slice, pt: FloatArray, lse: FloatArray, spans: bool) -> None:
        """One K×width block of the logits (scratch: overwritten with its probabilities), its rows' lse."""
        k, width = pt.shape
        if width > self.first.size:
            self.first = np.arange(width)
        squares = (k * min(width, self.part) if self.labels is not None else 0, np.float64)
        with borrowed((k * width, bool), (k * width, np.uint8), squares) as scratch:  # (the thread's own)
            self._block(block, pt, lse, spans, *scratch)

    def _block(
        self,
        block: slice,
        pt: FloatArray,
        lse: FloatArray,
        spans: bool,
        is_top: np.ndarray,
        ranked: np.ndarray,
        squares: np.ndarray,
    ) -> None:
        k, width = pt.shape
        top, predicted = self.top, self.predicted
        with np.errstate(over="ignore") if spans else nullcontext():  # as logsumexp.minus: −inf, p = 0
            np.subtract(pt, lse, out=pt)
        np.exp(pt, out=pt)
        best = np.maximum.reduce(pt, axis=0, out=top[block])
        mask = is_top.reshape(k, width)
        np.equal(pt, best, out=mask)
        rank = ranked.reshape(k, width)
        np.multiply(mask, self.ranks, out=rank)
        np.subtract(k, np.maximum.reduce(rank, axis=0), out=predicted[block])  # the first maximum
        if self.positive is not None:
            self.positive[block] = pt[1]
        labels, sumsq, picked = self.labels, self.sumsq, self.picked
        if labels is not None and sumsq is not None and picked is not None:
            pt.reshape(-1).take(self.first[:width] + labels[block] * width, out=picked[block], mode="clip")
            pieces = -(-width // self.part)  # equal pieces: none a lone column either
            bounds = [width * i // pieces for i in range(pieces + 1)]
            for at, end in zip(bounds[:-1], bounds[1:], strict=True):
                sq = squares[: k * (end - at)].reshape(k, end - at)
                np.copyto(sq, pt[:, at:end])
                np.multiply(sq, sq, out=sq)  # float32 p: exact
                np.add.reduce(sq, axis=0, out=sumsq[block][at:end])  # class by class
        self.done = block.stop

    def result(self) -> SoftmaxRows | None:
        """The rows' values; None if a row is NaN, or the pass did not feed every row."""
        if self.done < self.n or np.isnan(self.top).any():  # NaN equals nothing: left to argmax (N×K)
            return None
        brier = None
        if self.sumsq is not None and self.picked is not None:  # as brier_rows: Σ p² - 2 p[y] + 1
            brier = self.picked.astype(np.float64)
            brier *= -2
            brier += self.sumsq
            brier += 1.0
        return SoftmaxRows(self.predicted, self.top, brier, self.positive)


def softmax_rows(logits: FloatArray, summary: SoftmaxSummary, labels: IntArray | None) -> SoftmaxRows | None:
    """:class:`SoftmaxRows` of N×K `logits` (K < ``NARROW_K``) given their `summary`; None if a row is NaN.

    `labels`: a valid class per row, or None (no Brier terms). The pass on its own, in blocks of
    its own (:class:`RowsPass` fed by the log-sum-exp pass makes one transposed copy fewer).

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
    feed = RowsPass(logits, labels)
    rows = min(n, max(2, SCRATCH_BYTES // (k * logits.itemsize)))
    p = np.empty(k * rows, logits.dtype)
    for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
        checkpoint()
        # a lone last row takes the one before along: a K×1 column would be added pairwise
        block = slice(start - 1 if n - start == 1 and start > 0 else start, start + rows)
        source = logits[block]
        pt = p[: source.size].reshape(k, source.shape[0])
        np.copyto(pt, source.T)
        feed(block, pt, lse[block], summary.spans)
    return feed.result()
