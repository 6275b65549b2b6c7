"""Token losses of (B, T, K) sequences under PyTorch's class weights, label smoothing or soft targets.

The positions are read a block of rows at a time (the blocks of
:func:`~service.core.language.sequences.token_scores`): each block is copied, widened for
float16/bfloat16, into one reused scratch and scored there by the N×K functions
(:func:`~service.core.entropy.nll`, :func:`~service.core.entropy.soft_cross_entropy`), so the
answer is the N×K one on the flattened rows and no second B×T×K array is allocated. Soft targets
are a B×T×K array sent with the request; they are read a block at a time alongside the predictions.
"""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._typing import BoolArray, FloatArray
from ..calibration.brier import brier_rows
from ..cancel import checkpoint
from ..distribution import Distribution, EpsPolicy, resolve_eps
from ..entropy import nll, soft_cross_entropy
from ..errors import InputError
from ..validation import SUM_TOLERANCE, check_probabilities
from .blocks import Kernel, LogitKernel, ProbKernel, Scratch
from .sequences import PredictionKind, check_values, labelled_positions, scored_positions


@dataclass(frozen=True)
class SequenceLoss:
    """PyTorch's per-position loss of a (B, T) batch and the weight its mean divides by.

    Attributes
    ----------
    loss : ndarray of shape (B, T)
        ``F.cross_entropy(..., reduction="none")`` per position, nats; 0 where not scored.
    weight : ndarray of float64, shape (B, T)
        The mean's denominator per position: ``w[y]`` for labels (1 without class weights),
        1 for soft targets; 0 where not scored.
    scored : ndarray of bool, shape (B, T)
        Positions that count (inside `mask`, label not `ignore_index`).
    correct, entropy : ndarray of shape (B, T), or None
        Soft targets only: whether the prediction's argmax is the target's, and the
        predictive entropy (nats); 0 where not scored.
    n_clipped : int
        Soft targets with probabilities: scored probabilities raised to `eps`.
    """

    loss: FloatArray
    weight: FloatArray
    scored: BoolArray
    correct: BoolArray | None = None
    entropy: FloatArray | None = None
    n_clipped: int = 0

    @property
    def sequence_loss(self) -> FloatArray:
        """Σ `loss` per sequence in float64, shape (B,)."""
        return self.loss.sum(axis=1, dtype=np.float64)

    @property
    def sequence_weight(self) -> FloatArray:
        """Σ `weight` per sequence, shape (B,): each sequence's mean is ``loss / weight``."""
        return self.weight.sum(axis=1)


def sequence_loss(
    values: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    targets: ArrayLike | None = None,
    kind: PredictionKind = "logits",
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    eps: EpsPolicy = "auto",
    class_weights: FloatArray | None = None,
    label_smoothing: float = 0.0,
    field: str | None = None,
) -> SequenceLoss:
    """PyTorch's cross-entropy of (B, T) `labels` or (B, T, K) `targets` under (B, T, K) `values`.

    Parameters
    ----------
    values : array-like, shape (B, T, K)
        Logits or probabilities, as :func:`~service.core.language.sequences.token_scores`.
    labels : array-like of int, shape (B, T), optional
        Token ids (exactly one of `labels` and `targets`).
    targets : array-like, shape (B, T, K), optional
        Soft targets: each position's row of probabilities (e.g. a teacher's), checked as
        probabilities (in [0, 1], summing to 1 within the tolerance of their dtype).
    kind, mask, ignore_index, bfloat16, eps, field
        As :func:`~service.core.language.sequences.token_scores`; `ignore_index` applies to labels.
    class_weights : ndarray of shape (K,), optional
        PyTorch's ``weight``.
    label_smoothing : float, default=0.0
        PyTorch's ``label_smoothing`` ε.

    Returns
    -------
    SequenceLoss
        ``loss`` is ``F.cross_entropy(values.transpose(1, 2), labels_or_targets.transpose(1, 2)
        , weight=, label_smoothing=, ignore_index=, reduction="none")``; ``loss.sum() /
        weight.sum()`` is its ``reduction="mean"`` (with soft targets: over the scored positions,
        PyTorch's mean over all B·T when no mask is sent).

    Examples
    --------
    >>> s = sequence_loss(np.zeros((1, 2, 2)), labels=[[0, 1]], class_weights=np.array([1.0, 3.0]))
    >>> s.loss, s.weight
    (array([[0.69314718, 2.07944154]]), array([[1., 3.]]))
    """
    if (labels is None) == (targets is None):
        raise ValueError("pass exactly one of labels and targets")
    name = field or kind
    z = check_values(values, name, bfloat16=bfloat16)
    b, t, k = z.shape
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    sent = "bfloat16" if bfloat16 else z.dtype.name
    floor = 0.0 if kind == "logits" else resolve_eps(eps, work)
    kernel = _kernel(kind, name, t, bfloat16, floor, sent)
    if targets is not None:
        if ignore_index is not None:
            raise InputError("ignore_index", "applies to hard `labels` only; got soft `targets`")
        soft = np.asarray(targets)
        if soft.shape != z.shape:
            raise InputError(
                "targets", f"must have the shape of `{name}` {list(z.shape)} (B×T×K); got {list(soft.shape)}"
            )
        scored = scored_positions(np.zeros((b, t), np.int64), mask, None, (b, t))
        y = np.zeros(b * t, np.int64)
    else:
        assert labels is not None
        y_all, scored = labelled_positions(labels, mask, ignore_index, (b, t), k)
        y = np.where(scored, y_all, 0).reshape(-1)
    loss = np.zeros(b * t, work)
    correct = np.zeros(b * t, bool) if targets is not None else None
    entropy = np.zeros(b * t, work) if targets is not None else None
    n_clipped = 0
    scratch = Scratch(k, work)
    for run, block, source in _blocks(z, soft if targets is not None else None, scratch.rows):
        z_block = scratch.load(block, bfloat16=bfloat16)
        kernel.check(z_block, run.start)
        dist = (
            Distribution.from_logits(z_block, validate=False)
            if kind == "logits"
            else Distribution.from_probs(z_block, eps=floor, validate=False)
        )
        if source is None:
            loss[run] = nll(y[run], dist, class_weights=class_weights, label_smoothing=label_smoothing)
            continue
        tolerance = SUM_TOLERANCE.get(source.dtype.name, 1e-2)
        target = _check_targets(source, run.start, t, tolerance).astype(work, copy=False)
        loss[run] = soft_cross_entropy(
            target, dist, class_weights=class_weights, label_smoothing=label_smoothing
        )
        assert correct is not None and entropy is not None
        correct[run] = dist.predicted() == np.argmax(target, axis=1)
        entropy[run] = dist.entropy()
        if floor > 0:
            n_clipped += int(np.count_nonzero(z_block[scored.reshape(-1)[run]] < floor))
    off = ~scored.reshape(-1)
    loss[off] = 0
    weight = np.where(scored, 1.0, 0.0)
    if targets is None and class_weights is not None:
        weight *= np.asarray(class_weights, np.float64)[y.reshape(b, t)]
    if correct is not None and entropy is not None:
        correct[off], entropy[off] = False, 0
        return SequenceLoss(
            loss.reshape(b, t), weight, scored, correct.reshape(b, t), entropy.reshape(b, t), n_clipped
        )
    return SequenceLoss(loss.reshape(b, t), weight, scored)


def sequence_brier(
    labels: ArrayLike,
    values: ArrayLike,
    *,
    kind: PredictionKind = "logits",
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    field: str | None = None,
) -> FloatArray:
    """``Σ_k (p_k - 1[y = k])²`` per position of (B, T) `labels` under (B, T, K) `values`, float64.

    The unscaled multiclass Brier term of each position (0 where not scored), computed a block of
    rows at a time by :func:`~service.core.calibration.brier.brier_rows` (softmax of the block for
    logits, the probabilities as sent otherwise): its mean over the scored positions is
    scikit-learn's ``brier_score_loss(y, p, scale_by_half=False)`` on the flattened scored rows.
    Arguments as :func:`~service.core.language.sequences.token_scores`.

    Examples
    --------
    >>> sequence_brier([[0, 1]], np.log([[[0.75, 0.25], [0.75, 0.25]]]))
    array([[0.125, 1.125]])
    """
    name = field or kind
    z = check_values(values, name, bfloat16=bfloat16)
    b, t, k = z.shape
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    kernel = _kernel(kind, name, t, bfloat16, 0.0, "bfloat16" if bfloat16 else z.dtype.name)
    y_all, scored = labelled_positions(labels, mask, ignore_index, (b, t), k)
    y = np.where(scored, y_all, 0).reshape(-1)
    out = np.zeros(b * t)
    scratch = Scratch(k, work)
    for run, block, _ in _blocks(z, None, scratch.rows):
        z_block = scratch.load(block, bfloat16=bfloat16)
        kernel.check(z_block, run.start)
        probs = Distribution.from_logits(z_block, validate=False).probs if kind == "logits" else z_block
        out[run] = brier_rows(y[run], probs)
    out[~scored.reshape(-1)] = 0
    return out.reshape(b, t)


def _kernel(kind: PredictionKind, name: str, t: int, bfloat16: bool, floor: float, sent: str) -> Kernel:
    """The block kernel whose `check` refuses values outside the kind's domain."""
    if kind == "logits":
        return LogitKernel(name, t, bfloat16)
    return ProbKernel(name, t, bfloat16, floor, SUM_TOLERANCE.get(sent, 1e-2))


def _blocks(
    z: np.ndarray, targets: np.ndarray | None, rows: int
) -> Iterator[tuple[slice, np.ndarray, np.ndarray | None]]:
    """Runs of at most `rows` positions of `z` (and of `targets`, alike) as (flat slice, rows×K views)."""
    b, t, k = z.shape
    whole = z.flags.c_contiguous and (targets is None or targets.flags.c_contiguous)
    for i in range(1 if whole else b):  # sequences only when not one (B·T)×K matrix
        stop = b * t if whole else t
        for start in range(0, stop, rows):
            checkpoint()
            end = min(start + rows, stop)
            run = slice(start, end) if whole else slice(i * t + start, i * t + end)
            view = z.reshape(b * t, k)[run] if whole else z[i, start:end]
            other = None
            if targets is not None:
                other = targets.reshape(b * t, k)[run] if whole else targets[i, start:end]
            yield run, view, other


def _check_targets(block: np.ndarray, first: int, t: int, tolerance: float) -> FloatArray:
    """A block of target rows checked as probabilities; errors point at ``[b, t, k]``."""
    try:
        return check_probabilities(block, field="targets", tolerance=tolerance)
    except InputError as error:
        if not error.index:
            raise
        bt = divmod(first + error.index[0], t)
        raise InputError("targets", error.reason, index=(*bt, *error.index[1:])) from None
