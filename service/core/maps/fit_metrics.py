"""The before/after scores reported with every recalibration fit: NLL, ECE, Brier, accuracy.

The ECE is /v1/calibration's top-label ECE with its default convention (15 bins,
exact edges i/15, closed on the right), which is also Guo et al. (2017)'s.
"""

from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..calibration.bin_edges import assign_shared, uniform_edges
from ..sums import mean64

#: Equal-width bins of the top-label ECE (Guo et al. 2017).
ECE_BINS = 15


@dataclass(frozen=True)
class FitMetrics:
    """Scores of one set of predictions against the truth (means over samples).

    Attributes
    ----------
    nll : float
        Mean negative log-likelihood (cross-entropy) in nats.
    ece : float
        Top-label expected calibration error, 15 equal-width bins.
    brier : float
        Mean Brier score.
    accuracy : float
        Fraction of samples whose arg-max is the true class.
    """

    nll: float
    ece: float
    brier: float
    accuracy: float


def _scaled(weights: FloatArray) -> FloatArray:
    """`weights` divided by their maximum (kept when 0): sums of weights near 1e308 cannot overflow."""
    top = float(np.max(weights)) if weights.size else 0.0
    return np.asarray(weights, dtype=np.float64) / top if top > 0 else np.asarray(weights, dtype=np.float64)


def fit_metrics(
    log_probs: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
) -> FitMetrics:
    """NLL, top-label ECE, Brier score and accuracy of ``exp(log_probs)`` (N×K) against the truth.

    Parameters
    ----------
    log_probs : ndarray, shape (n_samples, n_classes)
        Log-probabilities (binary: the two columns [negative, positive]).
    labels : ndarray of int, shape (n_samples,), optional
        True classes; exactly one of `labels` and `targets`.
    targets : ndarray, shape (n_samples, n_classes), optional
        Soft labels (rows summing to 1).
    sample_weight : ndarray, shape (n_samples,), optional
        Non-negative weights s with a positive sum: every mean becomes ``Σ s·x / Σ s`` and ECE's
        bin shares ``Σ_b s / Σ s`` (scikit-learn's ``sample_weight``).

    Returns
    -------
    FitMetrics

    Notes
    -----
    - NLL: ``-mean Σ_c t_c log p_c`` (hard labels: ``-mean log p_y``), nats;
      ``inf`` if a true class has probability 0.
    - ECE: confidence ``max_c p_c``; bin b holds confidences in ``(b/15, (b+1)/15]``
      (0 goes to the first bin); ``Σ_b (n_b/N) |mean acc_b − mean conf_b|`` over
      non-empty bins. The "accuracy" of a sample is ``t[argmax p]`` (1 or 0 for hard
      labels), as in Guo et al.'s code (``bin_lower < conf ≤ bin_upper``).
    - Brier: ``mean Σ_c (p_c − t_c)²`` over the K classes, halved when K = 2 so that
      it equals ``(p_1 − t_1)²`` — scikit-learn's ``brier_score_loss`` (≥ 1.7,
      ``scale_by_half="auto"``).
    - Accuracy: mean of ``t[argmax p]``; ties go to the lowest class.

    Examples
    --------
    >>> m = fit_metrics(np.log([[0.8, 0.2], [0.4, 0.6]]), labels=np.array([0, 0]))
    >>> round(m.nll, 6), round(m.ece, 6), round(m.brier, 6), m.accuracy
    (0.569717, 0.4, 0.2, 0.5)
    """
    n, k = log_probs.shape
    rows = np.arange(n)
    probs = np.exp(log_probs)
    predicted = np.argmax(log_probs, axis=1)
    confidence = probs[rows, predicted].astype(np.float64)
    s = None if sample_weight is None else _scaled(sample_weight)  # only ratios of weights matter
    total = float(n) if s is None else float(np.sum(s, dtype=np.float64))

    def mean(values: FloatArray) -> float:
        # (values near ±1.8e308 can overflow the sum, not the mean: then a convex combination instead)
        if s is None:
            return mean64(values)
        kept = np.where(s == 0, 0.0, values)  # a 0-weight -inf log p stays out, as repeated 0 times
        with np.errstate(over="ignore"):
            found = float(np.dot(kept, s) / total)
        return found if np.isfinite(found) or not np.isfinite(kept).all() else float(np.dot(kept / total, s))

    if labels is not None:
        with np.errstate(invalid="ignore"):
            nll = 0.0 - mean(log_probs[rows, labels].astype(np.float64))  # 0.0 - x: never -0.0
        correct = (predicted == labels).astype(np.float64)
        residual = probs.astype(np.float64, copy=True)
        residual[rows, labels] -= 1
    else:
        assert targets is not None
        terms = np.zeros(log_probs.shape, dtype=np.float64)
        np.multiply(targets, log_probs, out=terms, where=targets > 0)
        nll = 0.0 - mean(terms.sum(axis=1))
        correct = targets[rows, predicted].astype(np.float64)
        residual = probs.astype(np.float64) - targets
    brier = mean(np.einsum("nk,nk->n", residual, residual)) / (2 if k == 2 else 1)
    ece = top_label_ece(confidence, correct, s, total)
    return FitMetrics(nll=nll, ece=ece, brier=brier, accuracy=mean(correct))


def top_label_ece(
    confidence: FloatArray, correct: FloatArray, weights: FloatArray | None = None, total: float | None = None
) -> float:
    """``Σ_b |Σ_{i∈b} s_i (correct_i − confidence_i)| / Σ s`` over 15 bins ``(b/15, (b+1)/15]``.

    The ECE of :func:`fit_metrics` from the (top-1 probability, top-1 is right) pairs; `total` is
    ``Σ s`` (N without `weights`).

    Examples
    --------
    >>> round(top_label_ece(np.array([0.8, 0.6]), np.array([1.0, 0.0])), 6)
    0.4
    """
    if total is None:
        total = float(confidence.size) if weights is None else float(np.sum(weights, dtype=np.float64))
    bins = assign_shared(confidence, uniform_edges(ECE_BINS), "right")  # /v1/calibration's exact i/15 edges
    gaps = correct - confidence if weights is None else (correct - confidence) * weights
    gap = np.bincount(bins, weights=gaps, minlength=ECE_BINS)
    return float(np.abs(gap).sum() / total)
