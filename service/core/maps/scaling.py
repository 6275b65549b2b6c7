"""Vector and matrix scaling (Guo et al. 2017; Kull et al. 2019): affine maps of the logits, then softmax.

Both are multinomial logistic regressions on the scores, fitted by L-BFGS-B on
the mean NLL (plus the stated penalty) with analytic gradients.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..distribution import log_softmax
from ..errors import InputError
from .recalibration import (
    MAX_ITER,
    FitInfo,
    as_targets,
    categorical_scores,
    fit_weights,
    minimize_mean_loss,
    penalty_scale,
)

#: Largest K for matrix scaling: K² + K parameters at O(NK²) per evaluation.
MAX_MATRIX_CLASSES = 50
#: Largest |logit| the affine maps are fitted on: L-BFGS-B's trial scales (and the products of a
#: K×K matrix) overflow float64 beyond, so the NLL is NaN where it is finite.
MAX_FITTED_LOGIT = 2.0**500


@dataclass(frozen=True)
class VectorScaling:
    """``softmax(scale ⊙ z + bias)``: one scale and one bias per class (2K parameters)."""

    scale: FloatArray
    bias: FloatArray

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities."""
        z = categorical_scores(scores)
        _check_width(z, self.scale.size, "parameters.scale")
        return _log_softmax_of_map(lambda: z * self.scale + self.bias)


@dataclass(frozen=True)
class MatrixScaling:
    """``softmax(z Wᵀ + bias)``: a full K×K matrix and a bias (K² + K parameters)."""

    weights: FloatArray
    bias: FloatArray

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities."""
        z = categorical_scores(scores)
        _check_width(z, self.bias.size, "parameters.bias")
        return _log_softmax_of_map(lambda: z @ self.weights.T + self.bias)


def _log_softmax_of_map(mapped: Callable[[], FloatArray]) -> FloatArray:
    """``log_softmax`` of the affine map's logits; a 422 naming the row the map takes past float64's range."""
    with np.errstate(over="ignore", invalid="ignore"):
        a = mapped()
    if not np.isfinite(a).all():  # (finite logits and parameters: an overflow)
        row = int(np.flatnonzero(~np.isfinite(a).all(axis=1))[0])
        raise InputError(
            "parameters",
            f"map `logits` row {row} past float64's range (±1.8e308): its probabilities cannot be computed",
        )
    return log_softmax(a)


def _check_fitted_range(z: FloatArray) -> None:
    """Refuse logits past ±:data:`MAX_FITTED_LOGIT` (the fits' products overflow float64 beyond)."""
    if not np.abs(z).max(initial=0.0) <= MAX_FITTED_LOGIT:
        raise InputError(
            "logits",
            "must lie within ±2**500 (3.3e150) to fit vector or matrix scaling: the fit's products "
            "overflow float64 beyond; divide them by a power of two (the fitted scale absorbs it)",
        )


def _check_width(z: FloatArray, k: int, field: str) -> None:
    if z.shape[1] != k:
        raise InputError(field, f"must have one entry per class of the predictions ({z.shape[1]}); got {k}")


def _residual(logits: FloatArray, targets: FloatArray, weights: FloatArray) -> tuple[float, FloatArray]:
    """Weighted mean NLL ``Σ w·nll`` of ``softmax(logits)`` (Σ w = 1) and its gradient ``w·(p - t)``."""
    log_p = log_softmax(logits)
    loss = -float(np.dot(weights, np.einsum("nk,nk->n", targets, log_p)))
    return loss, (np.exp(log_p) - targets) * weights[:, None]


def fit_vector_scaling(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    l2: float = 0.0,
    sample_weight: FloatArray | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[VectorScaling, FitInfo]:
    """Fit vector scaling: minimise ``NLL + l2 · (mean (scale - 1)² + mean bias²)``.

    The NLL is the mean over samples, or ``Σ s·nll / Σ s`` with `sample_weight`
    (scikit-learn's semantics; PyTorch's ``F.cross_entropy(reduction="none")`` weighted).

    Starts from the identity (scale 1, bias 0). Cost: one softmax pass over the
    data per L-BFGS evaluation, O(NK). Prefer it to temperature scaling when the
    classes are miscalibrated differently and N per class is in the hundreds.

    Examples
    --------
    >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> fit, info = fit_vector_scaling(z, labels=np.array([0, 1, 1]))
    >>> bool(info.converged)
    True
    """
    z = categorical_scores(scores).astype(np.float64)
    _check_fitted_range(z)
    n, k = z.shape
    t = as_targets(labels, targets, k).astype(np.float64)
    weights = fit_weights(sample_weight, n)

    def loss_grad(x: FloatArray) -> tuple[float, FloatArray]:
        scale, bias = x[:k], x[k:]
        loss, g = _residual(z * scale + bias, t, weights)
        grad = np.concatenate([np.einsum("nk,nk->k", g, z), g.sum(axis=0)])
        if l2:
            loss += l2 * float(np.mean((scale - 1) ** 2) + np.mean(bias**2))
            grad += (l2 / k) * (2 * np.concatenate([scale - 1, bias]))  # (2·l2 may pass float64)
        return loss, grad

    scale = np.full(2 * k, penalty_scale(l2, k))
    x0 = np.concatenate([np.ones(k), np.zeros(k)])
    x, info = minimize_mean_loss(loss_grad, x0, max_iter=max_iter, scale=scale)
    return VectorScaling(x[:k], x[k:]), info


def fit_matrix_scaling(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    l2: float = 0.0,
    off_diagonal: float = 0.0,
    bias_l2: float = 0.0,
    sample_weight: FloatArray | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[MatrixScaling, FitInfo]:
    """Fit matrix scaling with Kull et al. (2019)'s ODIR penalty and an optional ridge.

    Minimises ``NLL + off_diagonal · mean_{i≠j} W_ij² + bias_l2 · mean b² + l2 · mean (W - I)²``
    from W = I, b = 0; the NLL is ``Σ s·nll / Σ s`` with `sample_weight` (unpenalised:
    ``LogisticRegression(C=inf).fit(z, y, sample_weight=s)``). Cost: O(NK²) per evaluation
    and K² + K parameters; for moderate K (tens), with thousands of samples or a penalty,
    else it overfits.

    Examples
    --------
    >>> z = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    >>> fit, info = fit_matrix_scaling(z, labels=np.array([0, 1, 1]), l2=0.1)
    >>> bool(info.converged)
    True
    """
    z = categorical_scores(scores).astype(np.float64)
    _check_fitted_range(z)
    n, k = z.shape
    if k > MAX_MATRIX_CLASSES:
        raise InputError(
            "method",
            f"matrix scaling fits K² + K parameters and is offered for K ≤ {MAX_MATRIX_CLASSES}; "
            f"got K = {k} (use vector or temperature scaling)",
        )
    t = as_targets(labels, targets, k).astype(np.float64)
    weights = fit_weights(sample_weight, n)
    off = ~np.eye(k, dtype=bool)
    n_off = max(k * (k - 1), 1)

    def loss_grad(x: FloatArray) -> tuple[float, FloatArray]:
        w, b = x[: k * k].reshape(k, k), x[k * k :]
        loss, g = _residual(z @ w.T + b, t, weights)
        grad_w = g.T @ z
        grad_b = g.sum(axis=0)
        if off_diagonal:
            loss += off_diagonal * float(np.sum(w[off] ** 2)) / n_off
            grad_w = grad_w + (off_diagonal / n_off) * (2 * np.where(off, w, 0.0))
        if l2:
            loss += l2 * float(np.mean((w - np.eye(k)) ** 2))
            grad_w = grad_w + (l2 / k**2) * (2 * (w - np.eye(k)))
        if bias_l2:
            loss += bias_l2 * float(np.mean(b**2))
            grad_b = grad_b + (bias_l2 / k) * (2 * b)
        return loss, np.concatenate([grad_w.ravel(), grad_b])

    # each parameter's penalty curvature: l2 on every weight, off_diagonal on those off it, bias_l2 on b
    curvature = np.where(off, off_diagonal / n_off, 0.0) + l2 / k**2
    scale = np.concatenate(
        [[penalty_scale(c, 1) for c in curvature.ravel()], np.full(k, penalty_scale(bias_l2, k))]
    )
    x0 = np.concatenate([np.eye(k).ravel(), np.zeros(k)])
    x, info = minimize_mean_loss(loss_grad, x0, max_iter=max_iter, scale=scale)
    return MatrixScaling(x[: k * k].reshape(k, k), x[k * k :]), info
