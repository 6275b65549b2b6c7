"""Brier score per sample, its scaling conventions and the binned Murphy decomposition."""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._typing import FloatArray, IntArray
from .binned import BinSums

BrierScale = Literal["sum", "half", "auto"]


def brier_factor(scale: BrierScale, n_classes: int, *, binary: bool) -> float:
    """Multiplier applied to ``Σ_k (p_k - 1[y = k])²``.

    ``sum``: 1 (range [0, 2]). ``half``: ½ (range [0, 1]; binary: ``(p - y)²``).
    ``auto``: ½ when there are two classes, else 1 — scikit-learn's
    ``brier_score_loss(scale_by_half="auto")`` (≥ 1.7).

    Examples
    --------
    >>> brier_factor("auto", 2, binary=True), brier_factor("auto", 3, binary=False)
    (0.5, 1.0)
    """
    if scale == "auto":
        return 0.5 if binary or n_classes < 3 else 1.0
    return 0.5 if scale == "half" else 1.0


def brier_rows(labels: IntArray, probs: FloatArray, *, rows: IntArray | None = None) -> FloatArray:
    """``Σ_k (p_k - 1[y = k])²`` per row, as ``Σ p² - 2 p_y + 1`` (float64).

    `rows`: ``np.arange(len(labels))`` when the caller has it already.

    Examples
    --------
    >>> brier_rows(np.array([1]), np.array([[0.25, 0.75]]))
    array([0.125])
    """
    p = probs.astype(np.float64, copy=False)
    rows = np.arange(labels.shape[0]) if rows is None else rows
    return np.einsum("ij,ij->i", p, p) - 2 * p[rows, labels] + 1.0


@dataclass(frozen=True)
class MurphyTerms:
    """Binned Murphy decomposition, per resample, already scaled like the Brier score.

    ``brier = reliability - resolution + uncertainty + within_bin_variance
    - 2 * within_bin_covariance`` holds exactly (Stephenson, Coelho & Jolliffe 2008):
    the last two terms vanish when forecasts are constant within bins.
    """

    reliability: FloatArray
    resolution: FloatArray
    uncertainty: FloatArray
    within_bin_variance: FloatArray
    within_bin_covariance: FloatArray


def murphy_terms(sums: BinSums, factor: float) -> MurphyTerms:
    """Decompose from per-class bin sums (G = classes), summed over classes and scaled."""
    n = sums.n  # (R, 1, 1): each resample's total weight
    count = sums.count
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.where(count > 0, sums.conf / count, 0.0)
        freq = np.where(count > 0, sums.outcome / count, 0.0)
        var = np.where(count > 0, sums.conf_sq / count - conf * conf, 0.0)
        cov = np.where(count > 0, sums.conf_outcome / count - conf * freq, 0.0)
        mass = count / n  # a resample of total weight 0 (all zero weights drawn): NaN terms
        base = (sums.outcome.sum(axis=-1) / n[..., 0])[..., None]

    def total(per_bin: FloatArray) -> FloatArray:
        return factor * (mass * per_bin).sum(axis=(-2, -1))

    uncertainty = factor * (base[..., 0] * (1 - base[..., 0])).sum(axis=-1)
    return MurphyTerms(
        reliability=total((conf - freq) ** 2),
        resolution=total((freq - base) ** 2),
        uncertainty=uncertainty,
        within_bin_variance=total(var),
        within_bin_covariance=total(cov),
    )
