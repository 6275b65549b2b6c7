"""Binary parametric maps: Platt scaling (Platt 1999) and beta calibration (Kull et al. 2017).

Both are logistic regressions on features of the positive-class score, fitted
by L-BFGS-B on the mean binary NLL with analytic gradients.
"""

import math
from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..distribution import binary_log_probs
from ..errors import InputError
from ..sigmoid import softplus
from .recalibration import MAX_ITER, FitInfo, fit_weights, half_logit, minimize_mean_loss

_ORDINARY_FEATURE = 2.0**64  # features larger than this are fitted scaled down (see _feature_scale)


@dataclass(frozen=True)
class PlattScaling:
    """``p = σ(a·s + b)`` with s the positive-class logit (``log p1 − log p0``).

    scikit-learn's ``_sigmoid_calibration`` writes ``1 / (1 + exp(A·s + B))``: A = −a, B = −b.
    """

    a: float
    b: float

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×2 log-probabilities."""
        h = half_logit(scores, field="logits")
        with np.errstate(over="ignore"):  # a logit past the float range saturates: p exactly 0 or 1
            return binary_log_probs(2 * (self.a * h) + self.b)


@dataclass(frozen=True)
class BetaCalibration:
    """``p = σ(c + a·ln q − b·ln(1 − q))`` with q the positive-class probability, a, b ≥ 0."""

    a: float
    b: float
    c: float

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×2 log-probabilities: ``ln q = −2·lower``, ``ln(1 − q) = −2·upper``."""
        lower, upper = _half_features(scores)
        with np.errstate(over="ignore"):  # a huge a or b saturates the logit at ±inf: p exactly 0 or 1
            logit = self.c - 2 * (self.a * lower) + 2 * (self.b * upper)
        return binary_log_probs(logit)


def _half_features(scores: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``−ln q / 2`` and ``−ln(1 − q) / 2`` of binary scores: ``softplus(∓s) / 2``, finite for finite scores.

    ``ln(1 − q)`` of logits ``[1e308, −1e308]`` is −2e308, past float64; its half is not,
    so a zero coefficient stays zero (not ``0 · inf`` = NaN) and a small one gives the
    finite product it should.
    """
    h = half_logit(scores, field="logits")
    with np.errstate(over="ignore"):  # 2|h| past the range: exp(−inf) = 0, the term vanishes as it should
        tail = softplus(-2 * np.abs(h)) / 2
    return np.maximum(-h, 0) + tail, np.maximum(h, 0) + tail


def _feature_scale(*halves: FloatArray) -> float:
    """The k of a fit on ``k · half``: 2 (the features as they are) up to 2**64, beyond a power of two to ≤ 1.

    L-BFGS from x0 = 1 on features of 1e308 overflows ``u = features @ x`` at its first
    step; scaled by a power of two, the features fit as any others and the
    coefficients scale back exactly.
    """
    peak = max(float(np.max(np.abs(half), initial=0.0)) for half in halves)
    if not np.isfinite(peak) or 2 * peak <= _ORDINARY_FEATURE:
        return 2.0
    return 2.0 ** -math.ceil(math.log2(peak))


def _binary_targets(labels: IntArray | None, targets: FloatArray | None) -> FloatArray:
    """Positive-class target per sample: the label, or column 1 of N×2 soft targets."""
    if targets is not None:
        return targets[:, 1].astype(np.float64)
    assert labels is not None
    return labels.astype(np.float64)


def _logistic_fit(
    features: FloatArray,
    t: FloatArray,
    x0: FloatArray,
    bounds: list[tuple[float | None, float | None]] | None,
    max_iter: int,
    weights: FloatArray,
) -> tuple[FloatArray, FitInfo]:
    """Minimise the weighted mean ``Σ w·(softplus(u) − t·u)`` over u = features @ x (Σ w = 1)."""

    def loss_grad(x: FloatArray) -> tuple[float, FloatArray]:  # (an overflow: minimize_mean_loss's inf)
        u = features @ x
        loss = float(np.dot(weights, softplus(u) - t * u))
        residual = np.exp(-softplus(-u)) - t  # σ(u) without overflow
        return loss, features.T @ (weights * residual)

    return minimize_mean_loss(loss_grad, x0, bounds=bounds, max_iter=max_iter)


def _smoothed(positives: float) -> float:
    """Platt's positive target ``(N₊ + 1)/(N₊ + 2)``; 1 when a sum of huge weights overflowed to inf."""
    return (positives + 1) / (positives + 2) if np.isfinite(positives) else 1.0


def fit_platt(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    target_smoothing: bool = False,
    sample_weight: FloatArray | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[PlattScaling, FitInfo]:
    """Fit Platt scaling ``σ(a·s + b)`` on the positive-class logit s.

    With `target_smoothing` (hard labels only), targets are Platt's
    ``(N₊ + 1)/(N₊ + 2)`` and ``1/(N₋ + 2)`` instead of 1 and 0, as scikit-learn's
    ``CalibratedClassifierCV(method="sigmoid")`` always does; this also keeps a
    and b finite on separable data. Cost: O(N) per evaluation, 2 parameters.
    With `sample_weight` the NLL is ``Σ s·nll / Σ s`` and N₊, N₋ are sums of
    weights, as scikit-learn's ``_sigmoid_calibration(…, sample_weight)``.

    Examples
    --------
    >>> fit, info = fit_platt(np.array([2.0, -1.0, 0.5, -2.0]), labels=np.array([1, 1, 0, 0]))
    >>> bool(info.converged), round(fit.a, 4)
    (True, 0.6023)
    """
    h = half_logit(scores, field="logits").astype(np.float64)
    k = _feature_scale(h)  # s = 2h: k = 2 fits on s itself; a is rescaled below
    t = _binary_targets(labels, targets)
    weights = fit_weights(sample_weight, h.size)
    if target_smoothing:
        if labels is None:
            raise InputError("target_smoothing", "applies to hard `labels` only; got soft `targets`")
        counts = np.ones(h.size) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        with np.errstate(over="ignore"):  # sums of weights near 1e308: inf, handled by _smoothed
            positives = float(np.sum(counts, where=labels == 1))
            negatives = float(np.sum(counts, where=labels != 1))
        t = np.where(labels == 1, _smoothed(positives), 1 / (negatives + 2))
    features = np.stack([k * h, np.ones_like(h)], axis=1)
    x, info = _logistic_fit(features, t, np.array([1.0, 0.0]), None, max_iter, weights)
    return PlattScaling(float(x[0]) * k / 2, float(x[1])), info


def fit_beta(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[BetaCalibration, FitInfo]:
    """Fit beta calibration: logistic regression on ``[ln q, −ln(1 − q)]`` with a, b ≥ 0.

    Kull et al. refit without a feature whose coefficient comes out negative;
    here the bounds give the constrained optimum directly (the same map when both
    come out positive). Cost: O(N) per evaluation, 3 parameters. Prefer it to
    Platt scaling when the scores are probabilities bunched near 0 or 1. With
    `sample_weight` the NLL is ``Σ s·nll / Σ s`` (``LogisticRegression.fit(…, sample_weight)``).

    Examples
    --------
    >>> fit, info = fit_beta(np.array([2.0, -1.0, 0.5, -2.0]), labels=np.array([1, 1, 0, 0]))
    >>> bool(info.converged)
    True
    """
    lower, upper = (half.astype(np.float64) for half in _half_features(scores))
    k = _feature_scale(lower, upper)  # ln q = −2·lower: k = 2 fits on ln q itself; a, b rescaled below
    t = _binary_targets(labels, targets)
    features = np.stack([-k * lower, k * upper, np.ones_like(lower)], axis=1)
    bounds: list[tuple[float | None, float | None]] = [(0.0, None), (0.0, None), (None, None)]
    weights = fit_weights(sample_weight, t.size)
    x, info = _logistic_fit(features, t, np.array([1.0, 1.0, 0.0]), bounds, max_iter, weights)
    return BetaCalibration(float(x[0]) * k / 2, float(x[1]) * k / 2, float(x[2])), info
