"""Sigmoid (Platt) calibration of raw scores per class, as scikit-learn's ``method="sigmoid"``.

scikit-learn's ``CalibratedClassifierCV(method="sigmoid")`` fits ``_SigmoidCalibration``
on each class's raw score against Platt's smoothed targets (N₊ + 1)/(N₊ + 2) and
1/(N₋ + 2), weights counted by ``sample_weight``; binary scores get one map, N×K scores
one map per class, one-vs-rest, with each row divided by its sum (all 0: uniform).
"""

from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray
from ..errors import InputError
from ..sigmoid import softplus
from .nonparametric import _assemble, _truth_columns
from .recalibration import MAX_ITER, FitInfo, minimize_mean_loss

#: scikit-learn divides a class's scores by their largest |s| when it reaches this (conditioning only).
RESCALE_AT = 30.0


@dataclass(frozen=True)
class SigmoidScoreCalibration:
    """``P(class k) ∝ σ(a_k·s_k + b_k)`` (binary: one map, P(negative) = 1 − P(positive)).

    scikit-learn's ``_SigmoidCalibration`` writes ``1 / (1 + exp(A·s + B))``: A = −a, B = −b.
    """

    a: FloatArray
    b: FloatArray

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """N×K log-probabilities: sklearn's ``_CalibratedClassifier.predict_proba``, logged."""
        columns = scores[:, None] if scores.ndim == 1 else scores
        if columns.shape[1] != self.a.size:
            raise InputError(
                "parameters.a",
                f"must hold one slope per mapped class ({columns.shape[1]}); got {self.a.size}",
            )
        with np.errstate(over="ignore"):  # a huge slope saturates σ at 0 or 1
            mapped = np.exp(-softplus(-(columns * self.a + self.b)))
        return _assemble(mapped, scores.ndim == 1)


def fit_sigmoid_scores(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
    max_iter: int = MAX_ITER,
) -> tuple[SigmoidScoreCalibration, FitInfo]:
    """Fit Platt's sigmoid on each class's raw score, one-vs-rest, with his smoothed targets.

    The K logistic fits are separable: one L-BFGS-B run minimises the sum of their mean
    losses over the 2K parameters (each class's scores divided by their largest |s| when
    that reaches 30, as scikit-learn does; the slopes are scaled back).

    Examples
    --------
    >>> fit, _ = fit_sigmoid_scores(np.array([-2.0, -1.0, 1.0, 2.0]), labels=np.array([0, 0, 1, 1]))
    >>> bool(fit.a[0] > 0)
    True
    """
    columns = (scores[:, None] if scores.ndim == 1 else scores).astype(np.float64)
    binary = scores.ndim == 1
    truth = _truth_columns(labels, targets, 2 if binary else columns.shape[1], binary)
    n, k = columns.shape
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if not w.max() > 0:
        raise InputError("sample_weight", "must have a positive total; got 0")
    total = w.sum()  # unscaled: Platt's priors count the weights
    positive = truth > 0  # sklearn's mask: y > 0 is a positive
    prior1 = w @ positive
    prior0 = total - prior1
    t = np.where(positive, (prior1 + 1) / (prior1 + 2), 1 / (prior0 + 2))
    largest = np.abs(columns).max(axis=0)
    scale = np.where(largest >= RESCALE_AT, largest, 1.0)
    f = columns / scale

    def loss_grad(x: FloatArray) -> tuple[float, FloatArray]:
        u = f * x[:k] + x[k:]
        loss = float(w @ (softplus(u) - t * u).sum(axis=1)) / total
        residual = (np.exp(-softplus(-u)) - t) * w[:, None]
        return loss, np.concatenate([(residual * f).sum(axis=0), residual.sum(axis=0)]) / total

    x0 = np.concatenate([np.zeros(k), np.log((prior1 + 1) / (prior0 + 1))])
    x, info = minimize_mean_loss(loss_grad, x0, max_iter=max_iter)
    return SigmoidScoreCalibration(x[:k] / scale, x[k:]), info
