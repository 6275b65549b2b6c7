"""Token-level cross-entropy of label sequences under (B, T, K) logits or probabilities.

The B×T positions are scored in blocks of rows sized for the cache: each block is copied
(and, for float16 or bfloat16, widened to float32) into one reused scratch buffer, so no
second B×T×K array is ever allocated, whatever the vocabulary size K. Per-sequence sums and
the corpus metrics built from them live in :mod:`~service.core.language.perplexity`.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._typing import BoolArray, FloatArray, IntArray
from ..distribution import EpsPolicy, resolve_eps
from ..errors import InputError
from ..validation import SUM_TOLERANCE, integral_floats
from .blocks import Kernel, LogitKernel, Outputs, ProbKernel, Scratch, blocks

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
    entropy : ndarray of shape (B, T), or None
        The entropy of the predicted distribution, nats; 0 where not scored.
    n_clipped : int
        Scored probabilities raised to `eps` before the log (probabilities only).
    """

    nll: FloatArray
    scored: BoolArray
    rank: IntArray | None = None
    confidence: FloatArray | None = None
    n_clipped: int = 0
    entropy: FloatArray | None = None

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
    entropy: bool = False,
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
    ranks, confidence, entropy : bool
        Also return each label's rank, the top-1 probability and the predictive entropy
        (one or two extra passes each, over the block in cache).
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
    z = check_values(values, name, bfloat16=bfloat16)
    b, t, k = z.shape
    y, scored = labelled_positions(labels, mask, ignore_index, (b, t), k)
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    safe = np.where(scored, y, 0).reshape(-1)
    out = Outputs(b * t, work, ranks, confidence, entropy)
    if kind == "logits":
        kernel: Kernel = LogitKernel(name, t, bfloat16)
    else:
        sent = "bfloat16" if bfloat16 else z.dtype.name
        kernel = ProbKernel(name, t, bfloat16, resolve_eps(eps, work), SUM_TOLERANCE.get(sent, 1e-2))
    scratch = Scratch(k, work, second=entropy)
    for run, source in blocks(z, scratch.rows):
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
        out.entropy.reshape(b, t) if entropy else None,
    )


def check_values(values: ArrayLike, field: str, *, bfloat16: bool) -> np.ndarray:
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


def labelled_positions(
    labels: ArrayLike, mask: ArrayLike | None, ignore_index: int | None, shape: tuple[int, int], k: int
) -> tuple[IntArray, BoolArray]:
    """Checked (B, T) labels and the positions scored; scored labels must lie in [0, K)."""
    y = _check_labels(labels, shape)
    scored = scored_positions(y, mask, ignore_index, shape)
    _check_scored_labels(y, scored, k)
    return y, scored


def _check_labels(labels: ArrayLike, shape: tuple[int, int]) -> IntArray:
    y = np.asarray(labels)
    if y.shape != shape:
        raise InputError("labels", f"must be B×T = {shape[0]}×{shape[1]} like the predictions; got {y.shape}")
    if y.dtype.kind == "f":  # 2.0 is an integer, as JSON Schema and the N-row labels count it
        return integral_floats(y, field="labels")
    if y.dtype.kind not in "iu":
        raise InputError("labels", f"must hold integers; got dtype {y.dtype}")
    return y.astype(np.int64, copy=False)


def scored_positions(
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
