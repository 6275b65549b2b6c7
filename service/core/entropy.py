"""Cross-entropy, entropy and divergences, per sample, in nats.

All functions take log-probabilities (see :class:`~service.core.Distribution`)
and return one value per row; callers reduce. Convert to bits by dividing by
``log(2)`` (:func:`to_base`).
"""

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray, IntArray
from .distribution import Distribution, masked_row_dot
from .divergence.log_ratio import js_terms_into
from .validation import check_labels
from .weighing import weigh


def to_base(values: FloatArray, base: float) -> FloatArray:
    """Convert nats to log-base `base` units (``base=2``: bits).

    Examples
    --------
    >>> to_base(np.array([np.log(2)]), 2)
    array([1.])
    """
    return values if base == np.e else values / np.log(base)


def _safe_labels(labels: IntArray, ignored: np.ndarray | None) -> IntArray:
    return labels if ignored is None else np.where(ignored, 0, labels)


def as_distribution(predictions: "Distribution | FloatArray") -> Distribution:
    """`predictions` as a :class:`Distribution`; an array is taken as logits.

    Log-probabilities are logits whose log-sum-exp is 0, so an N×K ``log_probs``
    array may be passed as it is.
    """
    if isinstance(predictions, Distribution):
        return predictions
    return Distribution.from_logits(predictions, validate=False)


def label_weights(
    labels: ArrayLike,
    *,
    class_weights: FloatArray | None = None,
    ignore_index: int | None = None,
) -> FloatArray:
    """Per-sample weight ``w[y_i]`` (1 without class weights; 0 where ``y_i == ignore_index``).

    The weighted mean of :func:`nll` losses is ``losses.sum() / label_weights(...).sum()``,
    PyTorch's ``reduction="mean"`` with ``weight``.

    Examples
    --------
    >>> label_weights([0, 1, -100], class_weights=np.array([1.0, 3.0]), ignore_index=-100)
    array([1., 3., 0.])
    """
    y = np.asarray(labels)
    ignored = None if ignore_index is None else y == ignore_index
    safe = _safe_labels(y, ignored)
    weights = np.ones(y.shape) if class_weights is None else class_weights[safe].astype(np.float64)
    if ignored is not None:
        weights[ignored] = 0.0
    return weights


def nll(
    labels: ArrayLike,
    predictions: Distribution | FloatArray,
    *,
    class_weights: FloatArray | None = None,
    label_smoothing: float = 0.0,
    ignore_index: int | None = None,
) -> FloatArray:
    """Cross-entropy of integer labels under the predicted distributions, per sample.

    Parameters
    ----------
    labels : array-like of int, shape (n_samples,)
        True classes in ``[0, n_classes)`` (or `ignore_index`). Not validated here.
    predictions : Distribution or ndarray of shape (n_samples, n_classes)
        The predictions, e.g. ``Distribution.from_logits(z)``; an array is taken as
        logits (log-probabilities are logits too).
    class_weights : ndarray of shape (n_classes,), optional
        Per-class weights ``w``.
    label_smoothing : float, default=0.0
        ε in [0, 1]: the target becomes ``(1 - ε) onehot(y) + ε / K``.
    ignore_index : int, optional
        Samples with this label get loss 0.

    Returns
    -------
    losses : ndarray of shape (n_samples,)
        ``(1 - ε) w[y] (-log p[y]) + (ε / K) Σ_c w[c] (-log p[c])`` in nats, 0 for ignored
        samples, in the dtype of the predictions. This is PyTorch's
        ``F.cross_entropy(..., reduction="none")``; divide the sum by
        :func:`label_weights` for its ``"mean"``. From logits, ``-log p[y]`` is
        ``logsumexp(z) - z[y]``: no N×K log-softmax is materialised.

    Examples
    --------
    >>> nll([1], Distribution.from_logits([[0.0, 0.0]]))
    array([0.69314718])
    """
    dist = as_distribution(predictions)
    y = np.asarray(labels)
    ignored = None if ignore_index is None else y == ignore_index
    safe = _safe_labels(y, ignored)
    if label_smoothing and dist.logits is not None and not dist.binary:
        dist.summarise(labels=safe)  # one fused pass serves both -log p[y] and the smoothing term
    losses = dist.nll_at(safe)
    if class_weights is not None:
        losses = weigh(losses, class_weights[safe])
    if label_smoothing:
        k = dist.n_classes
        weights = np.ones(k, dist.dtype) if class_weights is None else class_weights
        smooth = -dist.log_prob_dot(weights)
        losses = (1 - label_smoothing) * losses + (label_smoothing / k) * smooth
    if ignored is not None:
        losses = np.where(ignored, 0.0, losses).astype(dist.dtype, copy=False)
    return losses


def soft_cross_entropy(
    targets: FloatArray,
    predictions: Distribution | FloatArray,
    *,
    class_weights: FloatArray | None = None,
    label_smoothing: float = 0.0,
) -> FloatArray:
    """Cross-entropy ``-Σ_c w[c] t[c] log p[c]`` of soft targets (N×K), per sample.

    With ``label_smoothing`` ε the targets become ``(1 - ε) t + ε / K`` first.
    Matches PyTorch's ``F.cross_entropy`` with probability targets
    (``reduction="mean"`` there divides the sum by N, not by weights).
    Terms with target 0 contribute 0 even where ``log p = -inf``.

    Examples
    --------
    >>> soft_cross_entropy(np.array([[0.5, 0.5]]), Distribution.from_probs([[0.5, 0.5]]))
    array([0.69314718])
    """
    dist = as_distribution(predictions)
    t = targets
    if label_smoothing:
        t = (1 - label_smoothing) * t + label_smoothing / dist.n_classes
    if class_weights is not None:
        t = t * class_weights
    return 0.0 - dist.log_prob_dot(t)


def cross_entropy(labels: ArrayLike, logits: ArrayLike, *, validate: bool = True) -> FloatArray:
    """Cross-entropy of integer labels under ``softmax(logits)``, per sample, in nats.

    ``logsumexp(z) - z[y]``, never ``-log(softmax(z)[y])``. Matches
    ``-scipy.special.log_softmax(logits, axis=1)[range(n), labels]``.
    Binary (length-N) logits use ``σ(z)``, as PyTorch's
    ``binary_cross_entropy_with_logits``.

    Examples
    --------
    >>> cross_entropy([1], [[0.0, 0.0]])
    array([0.69314718])
    """
    dist = Distribution.from_logits(logits, validate=validate)
    y = check_labels(labels, dist.n_classes) if validate else np.asarray(labels)
    return nll(y, dist)


def entropy(probs: FloatArray, log_probs: FloatArray) -> FloatArray:
    """Shannon entropy ``H(p) = -Σ p log p`` per row, with ``0 log 0 = 0``.

    Matches ``scipy.stats.entropy(p, axis=1)``.

    Examples
    --------
    >>> entropy(np.array([[0.5, 0.5, 0.0]]), np.array([[-np.log(2), -np.log(2), -np.inf]]))
    array([0.69314718])
    """
    return -masked_row_dot(probs, log_probs)


def cross_entropy_rows(probs: FloatArray, log_q: FloatArray) -> FloatArray:
    """Cross-entropy ``H(p, q) = -Σ p log q`` per row; ``+inf`` where p > 0 = q (eps 0)."""
    return -masked_row_dot(probs, log_q)


def kl_divergence(probs: FloatArray, log_p: FloatArray, log_q: FloatArray) -> FloatArray:
    """``KL(p‖q) = Σ p (log p - log q)`` per row, ``0 log 0 = 0``; ``+inf`` where p > 0 = q.

    The log-space form, exact for the logs it is given (log-softmax of logits). Where p
    and q are probabilities use :func:`~service.core.divergence.relative_entropy`: ``log p - log q``
    cancels where p ≈ q (issue #20), its ``log1p`` form does not. Matches
    ``scipy.special.rel_entr(p, q).sum(axis=1)`` to the rounding of the logs.

    Examples
    --------
    >>> kl_divergence(np.array([[1.0, 0.0]]), np.log([[1.0, 1e-300]]), np.log([[0.5, 0.5]]))
    array([0.69314718])
    """
    with np.errstate(invalid="ignore"):
        return masked_row_dot(probs, log_p - log_q)


def js_divergence(p: FloatArray, q: FloatArray) -> FloatArray:
    """Jensen–Shannon divergence ``½ KL(p‖m) + ½ KL(q‖m)``, ``m = (p + q) / 2``, per row.

    From the probabilities themselves (no eps): always finite and at most ``log 2`` nats,
    each term ``p log(p/m)`` within a few ulps (:func:`~service.core.divergence.log_ratio.js_terms_into`).
    Its square root is the Jensen–Shannon distance (``scipy.spatial.distance.jensenshannon``).

    Examples
    --------
    >>> js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    array([0.69314718])
    """
    x, y = np.asarray(p), np.asarray(q)
    dtype = np.result_type(x, y, np.float32)
    shape = np.broadcast_shapes(x.shape, y.shape)
    x, y = (
        np.broadcast_to(x, shape).astype(dtype, copy=False),
        np.broadcast_to(y, shape).astype(dtype, copy=False),
    )
    zero = (x == 0) | (y == 0)
    terms = js_terms_into(x, y, np.empty(shape, dtype), np.empty(shape, dtype), np.empty(shape, dtype), zero)
    return np.maximum(0.5 * terms.sum(axis=1), 0)
