"""Block kernels of :func:`~service.core.language.sequences.token_scores`: one reused scratch, no B×T×K copy.

Each block of positions is copied (float16 and bfloat16 widened to float32) into a scratch of
``SEQUENCE_BLOCK_BYTES`` that stays in cache, and scored there: loss, rank of the label,
top-1 probability and entropy, each only when asked.
"""

from collections.abc import Iterator
from typing import Any

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from ..cancel import checkpoint
from ..errors import InputError
from ..logsumexp import log1p, softmax_summary

#: Bytes of float32/float64 scratch per block (a few rows of a wide vocabulary).
SEQUENCE_BLOCK_BYTES = 1 << 20


class Scratch:
    """One reused float block and one bool block of ``SEQUENCE_BLOCK_BYTES``: they stay in cache."""

    def __init__(self, k: int, dtype: np.dtype[Any], *, second: bool = False) -> None:
        self.rows = max(1, _block_bytes() // (k * dtype.itemsize * (2 if second else 1)))
        self.floats = np.empty((self.rows, k), dtype)
        self.second = np.empty((self.rows if second else 0, k), dtype)  # entropy's products
        self.flags = np.empty((self.rows, k), bool)
        self.first = np.arange(self.rows) * k  # flat index of each row's class 0

    def load(self, source: np.ndarray, *, bfloat16: bool) -> FloatArray:
        """Copy `source` rows into the scratch, widened to its dtype."""
        block = self.floats[: source.shape[0]]
        _widen(source, block, bfloat16=bfloat16)
        return block


def _widen(source: np.ndarray, out: FloatArray, *, bfloat16: bool) -> None:
    """Copy `source` into `out` (float32/64); bfloat16 bit patterns become float32 as ``bits << 16``."""
    if bfloat16:
        np.left_shift(source, 16, out=out.view(np.uint32), dtype=np.uint32)
    else:
        np.copyto(out, source)


class Outputs:
    """Flat (B·T) outputs; a block writes the slice of its positions."""

    def __init__(self, n: int, dtype: np.dtype[Any], ranks: bool, confidence: bool, entropy: bool) -> None:
        self.nll = np.empty(n, dtype)
        self.rank = np.empty(n if ranks else 0, np.int32)
        self.confidence = np.empty(n if confidence else 0, dtype)
        self.entropy = np.empty(n if entropy else 0, dtype)
        self.clipped = np.zeros(n, bool)

    def arrays(self) -> list[np.ndarray]:
        """The outputs asked for (zeroed where not scored)."""
        return [a for a in (self.nll, self.rank, self.confidence, self.entropy) if a.size]

    def at(self, run: slice) -> dict[str, np.ndarray]:
        """Views of the outputs of one block of positions."""
        out = {"nll": self.nll[run], "clipped": self.clipped[run]}
        if self.rank.size:
            out["rank"] = self.rank[run]
        if self.confidence.size:
            out["confidence"] = self.confidence[run]
        if self.entropy.size:
            out["entropy"] = self.entropy[run]
        return out


def blocks(z: np.ndarray, rows: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Runs of at most `rows` positions as (flat slice of B·T, rows×K view), never copying.

    A C-contiguous array is read as one (B·T)×K matrix; otherwise (e.g. ``logits[:, :-1]``)
    each sequence's T×K slice is cut into blocks of its own.
    """
    b, t, k = z.shape
    if z.flags.c_contiguous:
        flat = z.reshape(b * t, k)
        for start in range(0, b * t, rows):  # cache-sized blocks of positions, never single ones
            checkpoint()
            yield slice(start, min(start + rows, b * t)), flat[start : start + rows]
        return
    for i in range(b):
        for start in range(0, t, rows):
            checkpoint()
            stop = min(start + rows, t)
            yield slice(i * t + start, i * t + stop), z[i, start:stop]


class Kernel:
    """Scores one block of rows (in the scratch, overwritten) into the `out` views.

    :meth:`__call__` is the set-up both kinds share: check the block, pick each row's label
    value, count the classes above it (the rank), then :meth:`score` the rest.
    """

    def __init__(self, field: str, t: int, bfloat16: bool) -> None:
        self.field, self.t, self.bfloat16 = field, t, bfloat16

    def __call__(
        self,
        z: FloatArray,
        labels: IntArray,
        scratch: Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        """Score the block `z` (scratch) with labels `labels` into `out`; `source` is the block as sent."""
        self.check(z, first)
        picks = scratch.first[: z.shape[0]] + labels
        own = z.reshape(-1).take(picks)
        with np.errstate(invalid="ignore", over="ignore"):  # logits: redone below where it matters
            threshold = self.shift(z, own)
            if "rank" in out:
                above = scratch.flags[: z.shape[0]]
                np.greater(z, threshold, out=above)
                np.add.reduce(above.view(np.uint8), axis=1, dtype=np.int32, out=out["rank"])
            self.score(z, own, picks, labels, scratch, out, first, source)

    def check(self, z: FloatArray, first: int) -> None:
        """Refuse a block holding a value outside the kind's domain."""
        raise NotImplementedError

    def shift(self, z: FloatArray, own: FloatArray) -> FloatArray | float:
        """What a class must exceed to rank above the label (after any in-place shift of `z`)."""
        raise NotImplementedError

    def score(
        self,
        z: FloatArray,
        own: FloatArray,
        picks: IntArray,
        labels: IntArray,
        scratch: Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        """Write the loss (and confidence, entropy when asked) of the block."""
        raise NotImplementedError

    def position(self, first: int, row: int) -> tuple[int, int]:
        """(b, t) of row `row` of the block starting at flat position `first`."""
        b, t = divmod(first + row, self.t)
        return b, t

    def _raise(self, bad: BoolArray, z: FloatArray, first: int, rule: str) -> None:
        row, col = (int(i) for i in np.argwhere(bad)[0])
        raise InputError(self.field, f"{rule}; got {z[row, col]}", index=(*self.position(first, row), col))


class LogitKernel(Kernel):
    """``log1p(Σ_{c≠y} exp(z_c - z_y))``, the label's rank and the top-1 probability, per row."""

    def check(self, z: FloatArray, first: int) -> None:
        """NaN or +inf refused (-inf is an impossible token, allowed)."""
        if not z.max() < np.inf:
            self._raise(~(z < np.inf), z, first, "must be finite or -inf")

    def shift(self, z: FloatArray, own: FloatArray) -> float:
        """``z -= z_y`` in place (overflow or a label at -inf is redone by :meth:`_redo`)."""
        z -= own[:, None]
        return 0.0

    def score(
        self,
        z: FloatArray,
        own: FloatArray,
        picks: IntArray,
        labels: IntArray,
        scratch: Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        """Loss, confidence and entropy of the shifted block ``z - z_y``."""
        impossible = "entropy" in out and not (z.min() > -np.inf)
        gap = np.maximum.reduce(z, axis=1) if "confidence" in out else None
        e = scratch.second[: z.shape[0]] if "entropy" in out else z
        np.exp(z, out=e)
        e.reshape(-1).put(picks, 0)  # the label's exp(0) = 1 leaves the sum, exactly
        rest = np.add.reduce(e, axis=1)
        if "entropy" in out:
            _entropy(e, z, rest, impossible, scratch, out["entropy"])
        nll = log1p(rest, out=out["nll"])
        if "entropy" in out:  # H = log S - Σ p (z - z_y) = nll - Σ e (z - z_y) / S
            out["entropy"] += nll
            np.maximum(out["entropy"], 0, out=out["entropy"])
        if gap is not None:
            np.exp(np.minimum(gap - nll, 0), out=out["confidence"])  # p_top = exp((m - z_y) - nll)
        if not nll.max() < np.inf:
            self._redo(np.flatnonzero(~(nll < np.inf)), labels, out, first, source)

    def _redo(
        self, rows: IntArray, labels: IntArray, out: dict[str, np.ndarray], first: int, source: np.ndarray
    ) -> None:
        """Rows whose shifted sum overflowed (or whose label is at -inf): shift by the row maximum."""
        z = np.empty((rows.size, source.shape[1]), out["nll"].dtype)
        _widen(source[rows], z, bfloat16=self.bfloat16)
        empty = ~(z.max(axis=1) > -np.inf)
        if empty.any():
            raise InputError(
                self.field,
                "must hold a finite logit in every scored row; got all -inf",
                index=self.position(first, int(rows[np.flatnonzero(empty)[0]])),
            )
        summary = softmax_summary(z, top=False, entropy="entropy" in out, labels=labels[rows])
        assert summary.picked is not None
        out["nll"][rows] = summary.log_norm - summary.picked
        if "confidence" in out:
            out["confidence"][rows] = np.exp(-summary.log_norm)
        if summary.entropy is not None:
            out["entropy"][rows] = summary.entropy


class ProbKernel(Kernel):
    """``-log max(p_y, eps)``, the label's rank and ``max p``, per row; rows checked on the way."""

    def __init__(self, field: str, t: int, bfloat16: bool, eps: float, tolerance: float) -> None:
        super().__init__(field, t, bfloat16)
        self.eps, self.tolerance = eps, tolerance

    def check(self, z: FloatArray, first: int) -> None:
        """Values in [0, 1] (NaN fails both), rows summing to 1 within the tolerance."""
        if not (z.min() >= 0 and z.max() <= 1):
            self._raise(~((z >= 0) & (z <= 1)), z, first, "must lie in [0, 1]")
        error = np.abs(np.add.reduce(z, axis=1) - 1)
        if not error.max() <= self.tolerance:
            row = int(np.flatnonzero(~(error <= self.tolerance))[0])
            total = float(z[row].sum(dtype=np.float64))
            raise InputError(
                self.field,
                f"must sum to 1 within {self.tolerance:g}; got {total:.10g}",
                index=self.position(first, row),
            )

    def shift(self, z: FloatArray, own: FloatArray) -> FloatArray:
        """Nothing moves: a class ranks above the label when its probability is larger."""
        return own[:, None]

    def score(
        self,
        z: FloatArray,
        own: FloatArray,
        picks: IntArray,
        labels: IntArray,
        scratch: Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        """Loss, confidence and entropy of the block of probabilities."""
        if "confidence" in out:
            np.maximum.reduce(z, axis=1, out=out["confidence"])
        if "entropy" in out:  # -Σ p log p, 0 log 0 = 0
            positive = scratch.flags[: z.shape[0]]
            np.greater(z, 0, out=positive)
            terms = scratch.second[: z.shape[0]]
            terms[...] = 0
            np.log(z, out=terms, where=positive)
            terms *= z
            np.negative(np.add.reduce(terms, axis=1), out=out["entropy"])
        np.less(own, self.eps, out=out["clipped"])
        with np.errstate(divide="ignore"):  # eps = 0 and p = 0: inf, as asked
            np.log(np.maximum(own, self.eps), out=out["nll"])
        np.negative(out["nll"], out=out["nll"])


def _entropy(
    e: FloatArray, d: FloatArray, rest: FloatArray, impossible: bool, scratch: Scratch, out: FloatArray
) -> None:
    """``out = -Σ e·d / (1 + rest)`` per row: the entropy less ``log S`` (added by the caller).

    `e` is ``exp(z - z_y)`` with the label's term zeroed and `d` is ``z - z_y``; where a
    logit is ``-inf`` (`impossible`), ``e·d`` is ``0·(-inf)`` and counts 0.
    """
    if impossible:
        finite = scratch.flags[: e.shape[0]]
        np.greater(e, 0, out=finite)
        np.multiply(e, d, out=e, where=finite)
    else:
        e *= d
    np.add.reduce(e, axis=1, out=out)
    out /= rest + 1
    np.negative(out, out=out)


def _block_bytes() -> int:
    """``SEQUENCE_BLOCK_BYTES``, read at call time (tests shrink it to make blocks straddle sequences)."""
    return SEQUENCE_BLOCK_BYTES
