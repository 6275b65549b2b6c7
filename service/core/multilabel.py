"""Multilabel predictions: K independent binary problems per sample.

An N×K matrix of logits (sigmoid per column) or probabilities, scored against N×K targets in
[0, 1] (0/1 indicators or probabilities). Each column is a binary problem; nothing is
normalised across a row.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray
from .distribution import resolve_eps
from .errors import InputError
from .sigmoid import softplus
from .weighing import in_dtype, weigh


def check_unit_matrix(values: ArrayLike, *, field: str, shape: tuple[int, ...] | None = None) -> FloatArray:
    """Return `values` as an N×K float matrix of finite values in [0, 1], or raise.

    `shape`, when given, is the shape the matrix must have (the predictions').

    Examples
    --------
    >>> check_unit_matrix([[0, 1], [1, 0.5]], field="targets")
    array([[0. , 1. ],
           [1. , 0.5]])
    """
    array = _float_matrix(values, field)
    if shape is not None and array.shape != shape:
        raise InputError(
            field, f"must have the shape of the predictions {list(shape)}; got {list(array.shape)}"
        )
    bad = ~((array >= 0) & (array <= 1))  # NaN fails both
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(field, f"must lie in [0, 1]; got {array[i, j]}", index=(int(i), int(j)))
    return array


def check_logit_matrix(values: ArrayLike, *, field: str = "logits") -> FloatArray:
    """Return `values` as an N×K float matrix of finite logits, or raise.

    Examples
    --------
    >>> check_logit_matrix([[0.0, -3.0]])
    array([[ 0., -3.]])
    """
    array = _float_matrix(values, field)
    bad = ~np.isfinite(array)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(field, f"must be finite; got {array[i, j]}", index=(int(i), int(j)))
    return array


def _float_matrix(values: ArrayLike, field: str) -> FloatArray:
    array = np.asarray(values)
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise InputError(
            field, f"must be a non-empty N×K matrix for multilabel input; got shape {list(array.shape)}"
        )
    if array.dtype.kind in "iub":
        return array.astype(np.float64)
    if array.dtype == np.float16:
        return array.astype(np.float32)
    if array.dtype.kind != "f":
        raise InputError(field, f"must hold numbers; got dtype {array.dtype}")
    return array


@dataclass(frozen=True)
class MultilabelLogProbs:
    """Per-element ``log p`` and ``log(1 - p)`` of N×K independent binary predictions.

    Attributes
    ----------
    log_p, log_q : ndarray, shape (N, K)
        ``log σ(z) = -softplus(-z)`` and ``log(1 - σ(z)) = -softplus(z)`` from logits;
        ``log max(p, eps)`` and ``log max(1 - p, eps)`` from probabilities.
    eps : float
        The floor applied to probabilities (0 for logits).
    n_clipped : int
        How many of p and 1 - p were raised to `eps`.
    """

    log_p: FloatArray
    log_q: FloatArray
    eps: float = 0.0
    n_clipped: int = 0

    @property
    def probs(self) -> FloatArray:
        """The N×K probabilities ``exp(log_p)`` (σ(z) from logits)."""
        return np.exp(self.log_p)


def multilabel_log_probs(
    *, logits: FloatArray | None = None, probs: FloatArray | None = None, eps: Any = "auto"
) -> MultilabelLogProbs:
    """Log-probabilities of each column's positive and negative outcome.

    Parameters
    ----------
    logits : ndarray of shape (N, K), optional
        Independent logits, one sigmoid per element (PyTorch's ``BCEWithLogitsLoss``).
    probs : ndarray of shape (N, K), optional
        Independent probabilities in [0, 1] (rows need not sum to 1).
    eps : float or "auto", default="auto"
        Floor of ``p`` and ``1 - p`` before the log; "auto" is the dtype's machine epsilon
        (scikit-learn's ``log_loss`` clips to ``[eps, 1 - eps]``). Ignored for logits.

    Examples
    --------
    >>> multilabel_log_probs(logits=np.zeros((1, 2))).log_p
    array([[-0.69314718, -0.69314718]])
    """
    if logits is not None:
        return MultilabelLogProbs(-softplus(-logits), -softplus(logits))
    assert probs is not None
    floor = resolve_eps(eps, probs.dtype)
    q = 1 - probs
    if floor == 0:
        with np.errstate(divide="ignore"):
            return MultilabelLogProbs(np.log(probs), np.log(q))
    clipped = int(np.count_nonzero(probs < floor) + np.count_nonzero(q < floor))
    log_p = np.log(np.maximum(probs, floor))
    log_q = np.log(np.maximum(q, floor))
    return MultilabelLogProbs(log_p, log_q, floor, clipped)


def _times(weights: FloatArray, log: FloatArray) -> FloatArray:
    """``weights * log`` with ``0 * log = 0`` even where ``log = -inf``."""
    out = np.zeros(np.broadcast_shapes(weights.shape, log.shape), dtype=np.result_type(weights, log))
    np.multiply(weights, log, out=out, where=weights != 0)
    return out


def multilabel_bce(
    targets: FloatArray,
    lp: MultilabelLogProbs,
    *,
    pos_weight: FloatArray | None = None,
    class_weights: FloatArray | None = None,
) -> FloatArray:
    """Binary cross-entropy of every element, ``-w_k (p_k t log σ + (1 - t) log(1 - σ))``.

    Parameters
    ----------
    targets : ndarray of shape (N, K)
        Targets in [0, 1]: 0/1 indicators or probabilities.
    lp : MultilabelLogProbs
        The predictions' per-element log-probabilities.
    pos_weight : ndarray of shape (K,) or (), optional
        Weight p_k of the positive term of class k.
    class_weights : ndarray of shape (K,), optional
        Weight w_k of every term of class k.

    Returns
    -------
    losses : ndarray of shape (N, K)
        In nats. This is PyTorch's ``F.binary_cross_entropy_with_logits(z, t,
        weight=w, pos_weight=p, reduction="none")`` (``F.binary_cross_entropy`` from
        probabilities, where PyTorch has no ``pos_weight``): ``mean`` there is the mean of
        all N·K elements.

    Examples
    --------
    >>> lp = multilabel_log_probs(logits=np.array([[0.0, 0.0]]))
    >>> multilabel_bce(np.array([[1.0, 0.0]]), lp)
    array([[0.69314718, 0.69314718]])
    """
    t = targets.astype(lp.log_p.dtype, copy=False)
    positive = t if pos_weight is None else weigh(t, pos_weight)
    with np.errstate(over="ignore"):  # past float64: an honest inf (both terms ≤ 0, never inf − inf)
        losses: FloatArray = -(_times(positive, lp.log_p) + _times(1 - t, lp.log_q))
    if class_weights is not None:
        losses = weigh(losses, class_weights)
    return in_dtype(losses, lp.log_p.dtype)


def indicator_log_loss(targets: FloatArray, lp: MultilabelLogProbs) -> FloatArray:
    """scikit-learn's ``log_loss`` of an indicator matrix, per sample: ``-Σ_k t_k log p_k``.

    scikit-learn (1.9) takes a 2-D indicator ``y_true`` as one-hot rows of a
    multiclass problem: only the positive terms count, ``1 - t`` never does, and the
    rows of ``y_pred`` are not renormalised (a warning says they do not sum to 1).
    ``log_loss(Y, P)`` is the mean of these values over N.

    Examples
    --------
    >>> lp = multilabel_log_probs(probs=np.array([[0.5, 0.25]]))
    >>> indicator_log_loss(np.array([[1.0, 1.0]]), lp)
    array([2.07944154])
    """
    return -_times(targets.astype(lp.log_p.dtype, copy=False), lp.log_p).sum(axis=1)
