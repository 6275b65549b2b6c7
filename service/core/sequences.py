"""Token-level cross-entropy of label sequences under (B, T, K) logits or probabilities.

The B×T positions are scored in blocks of rows sized for the cache: each block is copied
(and, for float16 or bfloat16, widened to float32) into one reused scratch buffer, so no
second B×T×K array is ever allocated, whatever the vocabulary size K. Per-sequence sums and
the corpus metrics built from them live in :mod:`~service.core.perplexity`.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._typing import BoolArray, FloatArray, IntArray
from .cancel import checkpoint
from .distribution import EpsPolicy, resolve_eps
from .errors import InputError
from .logsumexp import log1p, softmax_summary
from .validation import SUM_TOLERANCE

#: Bytes of float32/float64 scratch per block (a few rows of a wide vocabulary).
SEQUENCE_BLOCK_BYTES = 1 << 20
PredictionKind = Literal["logits", "probs"]


@dataclass(frozen=True)
class TokenScores:
    """Per-position scores of a (B, T) batch of label sequences.

    Attributes
    ----------
    nll : ndarray of shape (B, T)
        ``-log p(label)`` in nats; 0 where the position is not scored. float32 for float16,
        bfloat16 and float32 input, float64 for float64.
    scored : ndarray of bool, shape (B, T)
        Positions that count: inside `mask` and with a label other than `ignore_index`.
    rank : ndarray of int32, shape (B, T), or None
        How many classes score strictly higher than the label (0: the label is a top
        class); 0 where not scored. ``rank < k`` is a top-k hit.
    confidence : ndarray of shape (B, T), or None
        The top-1 probability ``max_c p_c``; 0 where not scored.
    n_clipped : int
        Scored probabilities raised to `eps` before the log (probabilities only).
    """

    nll: FloatArray
    scored: BoolArray
    rank: IntArray | None = None
    confidence: FloatArray | None = None
    n_clipped: int = 0

    @property
    def tokens(self) -> IntArray:
        """Scored positions per sequence, shape (B,)."""
        return np.count_nonzero(self.scored, axis=1)

    @property
    def sequence_nll(self) -> FloatArray:
        """Σ of `nll` per sequence in float64, shape (B,): minus its log-likelihood."""
        return self.nll.sum(axis=1, dtype=np.float64)

    def hits(self, k: int) -> IntArray:
        """Top-`k` hits (``rank < k`` at scored positions) per sequence, shape (B,)."""
        if self.rank is None:
            raise ValueError("hits need the ranks: score with ranks=True")
        return np.count_nonzero(self.scored & (self.rank < k), axis=1)


def token_scores(
    labels: ArrayLike,
    values: ArrayLike,
    *,
    kind: PredictionKind = "logits",
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    eps: EpsPolicy = "auto",
    ranks: bool = True,
    confidence: bool = False,
    field: str | None = None,
) -> TokenScores:
    """Cross-entropy of each label of (B, T) `labels` under (B, T, K) `values`, in nats.

    Parameters
    ----------
    labels : array-like of int, shape (B, T)
        Token ids in ``[0, K)`` at scored positions; anything at unscored ones.
    values : array-like, shape (B, T, K)
        Logits (``kind="logits"``: any finite values, or ``-inf`` for impossible tokens) or
        probabilities (``kind="probs"``: in [0, 1], each row summing to 1 within the float16
        tolerance 1e-2 for float16 and bfloat16, 1e-4 for float32, 1e-6 for float64).
        float16, float32, float64, or bfloat16 as its raw ``uint16`` bit patterns with
        ``bfloat16=True``.
    kind : {"logits", "probs"}, default="logits"
        What `values` holds.
    mask : array-like of bool or 0/1, shape (B, T), optional
        1 where a position is scored (an attention mask, shifted to the labels).
    ignore_index : int or None, default=-100
        Label value of positions that are not scored, as PyTorch's ``ignore_index``.
    bfloat16 : bool, default=False
        `values` are ``uint16`` bfloat16 bit patterns (OIP ``BF16``): widened a block at a time.
    eps : float or "auto", default="auto"
        Probabilities only: the floor of ``log(max(p, eps))``; "auto" is float32's (float64's)
        machine epsilon. 0 keeps ``-log 0 = inf``.
    ranks, confidence : bool
        Also return each label's rank and the top-1 probability (one extra pass each).
    field : str, optional
        Name of `values` in error messages (default: `kind`).

    Returns
    -------
    TokenScores
        ``nll`` is PyTorch's ``F.cross_entropy(values.transpose(1, 2), labels,
        ignore_index=ignore_index, reduction="none")`` (0 at ignored positions); its sum over
        scored positions divided by their count is ``reduction="mean"``.

    Notes
    -----
    From logits the loss is ``log1p(Σ_{c≠y} exp(z_c - z_y))`` (shifted by the label's own
    logit: full relative precision where the label is the top token); rows where that
    overflows are redone by :func:`~service.core.logsumexp.softmax_summary`. Work is in
    float32 for 16-bit input, in the input's dtype otherwise, in blocks of
    ``SEQUENCE_BLOCK_BYTES``. Ties count in the label's favour: with equal logits the
    label has rank 0 (``torch.topk`` breaks ties by position instead).

    Examples
    --------
    >>> s = token_scores([[1, -100]], np.zeros((1, 2, 2)), confidence=True)
    >>> s.nll, s.tokens, s.confidence
    (array([[0.69314718, 0.        ]]), array([1]), array([[0.5, 0. ]]))
    """
    name = field or kind
    z = _check_values(values, name, bfloat16=bfloat16)
    b, t, k = z.shape
    y = _check_labels(labels, (b, t))
    scored = _scored(y, mask, ignore_index, (b, t))
    _check_scored_labels(y, scored, k)
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    safe = np.where(scored, y, 0).reshape(-1)
    out = _Outputs(b * t, work, ranks, confidence)
    if kind == "logits":
        kernel: _Kernel = _LogitKernel(name, t, bfloat16)
    else:
        sent = "bfloat16" if bfloat16 else z.dtype.name
        kernel = _ProbKernel(name, t, bfloat16, resolve_eps(eps, work), SUM_TOLERANCE.get(sent, 1e-2))
    scratch = _Scratch(k, work)
    for run, source in _blocks(z, scratch.rows):
        block = scratch.load(source, bfloat16=bfloat16)
        kernel(block, safe[run], scratch, out.at(run), run.start, source)
    off = ~scored.reshape(-1)
    for array in out.arrays():
        array[off] = 0
    nll = out.nll.reshape(b, t)
    n_clipped = int(np.count_nonzero(scored.reshape(-1) & out.clipped)) if kind == "probs" else 0
    return TokenScores(
        nll,
        scored,
        out.rank.reshape(b, t) if ranks else None,
        out.confidence.reshape(b, t) if confidence else None,
        n_clipped,
    )


def _check_values(values: ArrayLike, field: str, *, bfloat16: bool) -> np.ndarray:
    """`values` as a B×T×K array of a supported dtype (no copy when it already is one)."""
    z = np.asarray(values)
    if bfloat16:
        if z.dtype != np.uint16:
            raise InputError(field, f"must hold bfloat16 bit patterns as uint16; got dtype {z.dtype}")
    elif z.dtype.kind in "iu":
        z = z.astype(np.float64)
    elif z.dtype not in (np.float16, np.float32, np.float64):
        raise InputError(field, f"must hold float16, bfloat16, float32 or float64; got dtype {z.dtype}")
    if z.ndim != 3:
        raise InputError(field, f"must be B×T×K (sequences × positions × vocabulary); got shape {z.shape}")
    if 0 in z.shape[:2]:
        raise InputError(field, f"must hold at least one position; got shape {z.shape}")
    if z.shape[2] < 2:
        raise InputError(field, f"must have K ≥ 2 classes; got K = {z.shape[2]}")
    return z


def _check_labels(labels: ArrayLike, shape: tuple[int, int]) -> IntArray:
    y = np.asarray(labels)
    if y.shape != shape:
        raise InputError("labels", f"must be B×T = {shape[0]}×{shape[1]} like the predictions; got {y.shape}")
    if y.dtype.kind not in "iu":
        raise InputError("labels", f"must hold integers; got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def _scored(
    y: IntArray, mask: ArrayLike | None, ignore_index: int | None, shape: tuple[int, int]
) -> BoolArray:
    """Positions in `mask` whose label is not `ignore_index`; their labels must lie in [0, K)."""
    scored = np.ones(shape, bool)
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != shape:
            raise InputError("mask", f"must be B×T = {shape[0]}×{shape[1]} like the labels; got {m.shape}")
        if m.dtype != bool:
            if m.dtype.kind not in "iuf" or not np.isin(m, (0, 1)).all():
                raise InputError("mask", "must hold booleans or 0/1")
            m = m != 0
        scored &= m
    if ignore_index is not None:
        scored &= y != ignore_index
    return scored


def _check_scored_labels(y: IntArray, scored: BoolArray, k: int) -> None:
    outside = scored & ((y < 0) | (y >= k))
    if outside.any():
        index = tuple(int(i) for i in np.argwhere(outside)[0])
        raise InputError("labels", f"must lie in [0, {k}) at scored positions; got {y[index]}", index=index)


class _Scratch:
    """One reused float block and one bool block of ``SEQUENCE_BLOCK_BYTES``: they stay in cache."""

    def __init__(self, k: int, dtype: np.dtype[Any]) -> None:
        self.rows = max(1, SEQUENCE_BLOCK_BYTES // (k * dtype.itemsize))
        self.floats = np.empty((self.rows, k), dtype)
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


class _Outputs:
    """Flat (B·T) outputs; a block writes the slice of its positions."""

    def __init__(self, n: int, dtype: np.dtype[Any], ranks: bool, confidence: bool) -> None:
        self.nll = np.empty(n, dtype)
        self.rank = np.empty(n if ranks else 0, np.int32)
        self.confidence = np.empty(n if confidence else 0, dtype)
        self.clipped = np.zeros(n, bool)

    def arrays(self) -> list[np.ndarray]:
        """The outputs asked for (zeroed where not scored)."""
        return [a for a in (self.nll, self.rank, self.confidence) if a.size]

    def at(self, run: slice) -> dict[str, np.ndarray]:
        """Views of the outputs of one block of positions."""
        out = {"nll": self.nll[run], "clipped": self.clipped[run]}
        if self.rank.size:
            out["rank"] = self.rank[run]
        if self.confidence.size:
            out["confidence"] = self.confidence[run]
        return out


def _blocks(z: np.ndarray, rows: int) -> Iterator[tuple[slice, np.ndarray]]:
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


class _Kernel:
    """Scores one block of rows (in the scratch, overwritten) into the `out` views."""

    def __init__(self, field: str, t: int, bfloat16: bool) -> None:
        self.field, self.t, self.bfloat16 = field, t, bfloat16

    def __call__(
        self,
        z: FloatArray,
        labels: IntArray,
        scratch: _Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        raise NotImplementedError

    def _raise(self, bad: BoolArray, z: FloatArray, first: int, rule: str) -> None:
        row, col = (int(i) for i in np.argwhere(bad)[0])
        b, t = divmod(first + row, self.t)
        raise InputError(self.field, f"{rule}; got {z[row, col]}", index=(b, t, col))


class _LogitKernel(_Kernel):
    """``log1p(Σ_{c≠y} exp(z_c - z_y))``, the label's rank and the top-1 probability, per row."""

    def __call__(
        self,
        z: FloatArray,
        labels: IntArray,
        scratch: _Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        if not z.max() < np.inf:  # NaN or +inf somewhere (-inf is an impossible token, allowed)
            self._raise(~(z < np.inf), z, first, "must be finite or -inf")
        picks = scratch.first[: z.shape[0]] + labels
        flat = z.reshape(-1)
        own = flat.take(picks)
        with np.errstate(invalid="ignore", over="ignore"):  # overflow or a label at -inf: redone below
            z -= own[:, None]
            if "rank" in out:
                gt = scratch.flags[: z.shape[0]]
                np.greater(z, 0, out=gt)
                np.add.reduce(gt.view(np.uint8), axis=1, dtype=np.int32, out=out["rank"])
            gap = np.maximum.reduce(z, axis=1) if "confidence" in out else None
            np.exp(z, out=z)
            flat.put(picks, 0)  # the label's exp(0) = 1 leaves the sum, exactly
            nll = log1p(np.add.reduce(z, axis=1), out=out["nll"])
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
            row = int(rows[np.flatnonzero(empty)[0]])
            b, t = divmod(first + row, self.t)
            raise InputError(
                self.field, "must hold a finite logit in every scored row; got all -inf", index=(b, t)
            )
        summary = softmax_summary(z, top=False, entropy=False, labels=labels[rows])
        assert summary.picked is not None
        out["nll"][rows] = summary.log_norm - summary.picked
        if "confidence" in out:
            out["confidence"][rows] = np.exp(-summary.log_norm)


class _ProbKernel(_Kernel):
    """``-log max(p_y, eps)``, the label's rank and ``max p``, per row; rows checked on the way."""

    def __init__(self, field: str, t: int, bfloat16: bool, eps: float, tolerance: float) -> None:
        super().__init__(field, t, bfloat16)
        self.eps, self.tolerance = eps, tolerance

    def __call__(
        self,
        z: FloatArray,
        labels: IntArray,
        scratch: _Scratch,
        out: dict[str, np.ndarray],
        first: int,
        source: np.ndarray,
    ) -> None:
        if not (z.min() >= 0 and z.max() <= 1):  # NaN fails both
            self._raise(~((z >= 0) & (z <= 1)), z, first, "must lie in [0, 1]")
        error = np.abs(np.add.reduce(z, axis=1) - 1)
        if not error.max() <= self.tolerance:
            row = int(np.flatnonzero(~(error <= self.tolerance))[0])
            b, t = divmod(first + row, self.t)
            total = float(z[row].sum(dtype=np.float64))
            raise InputError(
                self.field, f"must sum to 1 within {self.tolerance:g}; got {total:.10g}", index=(b, t)
            )
        rows = np.arange(z.shape[0])
        p = z[rows, labels]
        if "rank" in out:
            gt = scratch.flags[: z.shape[0]]
            np.greater(z, p[:, None], out=gt)
            np.add.reduce(gt.view(np.uint8), axis=1, dtype=np.int32, out=out["rank"])
        if "confidence" in out:
            np.maximum.reduce(z, axis=1, out=out["confidence"])
        np.less(p, self.eps, out=out["clipped"])
        with np.errstate(divide="ignore"):  # eps = 0 and p = 0: inf, as asked
            np.log(np.maximum(p, self.eps), out=out["nll"])
        np.negative(out["nll"], out=out["nll"])
