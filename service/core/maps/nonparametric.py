"""Non-parametric maps of probabilities: isotonic regression and histogram binning.

Binary predictions map the positive-class probability q (and set 1 − q' for the
negative class). Categorical predictions are mapped one-vs-rest, class by class,
then each row is divided by its sum (a row summing to 0 becomes uniform), as
scikit-learn's ``CalibratedClassifierCV`` does.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .._optional import scipy_optimize
from .._typing import FloatArray, IntArray
from ..cancel import checkpoint
from ..errors import InputError
from .recalibration import FitInfo, as_targets, fit_weights, log_probs_of

OPTIMUM = FitInfo(True, 1, "optimum")


def _columns(scores: FloatArray) -> tuple[FloatArray, bool]:
    """The probabilities mapped: q as an N×1 column (binary), or all N×K columns."""
    probs = np.exp(log_probs_of(scores)).astype(np.float64)
    binary = scores.ndim == 1 or scores.shape[1] == 2
    return (probs[:, 1:] if binary else probs), binary


def _truth_columns(
    labels: IntArray | None, targets: FloatArray | None, n_classes: int, binary: bool
) -> FloatArray:
    t = as_targets(labels, targets, n_classes).astype(np.float64)
    return t[:, 1:] if binary else t


def _assemble(mapped: FloatArray, binary: bool) -> FloatArray:
    """N×K log-probabilities from mapped columns (binary: [1 − q', q']; else rows renormalised)."""
    if binary:
        probs = np.concatenate([1 - mapped, mapped], axis=1)
    else:
        totals = mapped.sum(axis=1, keepdims=True)
        k = mapped.shape[1]
        probs = np.divide(mapped, totals, out=np.full_like(mapped, 1 / k), where=totals > 0)
    with np.errstate(divide="ignore"):
        return np.log(probs)


@dataclass(frozen=True)
class IsotonicCalibration:
    """Piecewise-linear non-decreasing maps through knots (x, y), one per mapped class.

    Between knots values are interpolated linearly; outside them the end values
    hold (scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``).
    """

    x: Sequence[FloatArray]
    y: Sequence[FloatArray]

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities."""
        columns, binary = _columns(scores)
        if columns.shape[1] != len(self.x):
            raise InputError(
                "parameters.knots",
                f"must hold one knot set per mapped class ({columns.shape[1]}); got {len(self.x)}",
            )
        mapped = np.stack(  # one np.interp per class: knot sets differ in length
            [np.interp(columns[:, c], self.x[c], self.y[c]) for c in range(columns.shape[1])], axis=1
        )
        return _assemble(mapped, binary)


def _kept_rows(
    columns: FloatArray, truth: FloatArray, sample_weight: FloatArray | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """The rows of positive weight and their weights (1 each without `sample_weight`).

    A zero weight is a dropped row, as scikit-learn's ``IsotonicRegression`` drops them.
    """
    if sample_weight is None:
        return columns, truth, np.ones(columns.shape[0])
    fit_weights(sample_weight, columns.shape[0])  # validates; all zero is an error
    s = np.asarray(sample_weight, dtype=np.float64)
    kept = s > 0
    return columns[kept], truth[kept], _summable(s[kept])


def _summable(s: FloatArray) -> FloatArray:
    """Positive weights scaled by a power of two so that no sum of them overflows: the same ratios.

    Weights whose sum cannot overflow are returned as they are (the scale is exact). Scaled
    down, a weight more than 2**1074 times below the largest would round to 0 and its tied
    group's mean would be 0 / 0: it is kept at the smallest positive double instead (its weight
    relative to the largest, < 2**-1074, is lost; a row with no weight at all is dropped before).
    """
    _, exponent = np.frexp(s.max())  # max = m · 2**exponent, 0.5 <= m < 1
    headroom = 1022 - int(s.size).bit_length()  # N · 2**headroom stays below 2**1023
    shift = int(exponent) - headroom
    if shift <= 0:
        return s
    return np.maximum(np.ldexp(s, -shift), np.nextafter(0.0, 1.0))


def isotonic_knots(q: FloatArray, t: FloatArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Weighted PAVA on (q, t, s) with ties in q pooled first; keep the ends of each constant run.

    As scikit-learn's ``IsotonicRegression.fit(q, t, sample_weight=s)``: tied q pool
    into their weighted mean with their total weight.
    """
    checkpoint()  # called once per class
    xs, inverse = np.unique(q, return_inverse=True)
    counts = np.bincount(inverse, weights=s)
    means = np.bincount(inverse, weights=s * t) / counts
    fitted = np.clip(
        scipy_optimize("isotonic regression").isotonic_regression(means, weights=counts, increasing=True).x,
        0,
        1,
    )
    keep = np.ones(fitted.size, dtype=bool)
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return xs[keep], fitted[keep]


def fit_isotonic(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
) -> tuple[IsotonicCalibration, FitInfo]:
    """Fit isotonic regression of the truth on the predicted probability (one-vs-rest for K > 2).

    With `sample_weight`, weighted pool-adjacent-violators (``scipy.optimize.isotonic_regression``
    weights; scikit-learn's ``IsotonicRegression.fit(…, sample_weight)``): rows of weight 0 are
    dropped, integer weights equal repeated rows.

    Cost: a sort and pool-adjacent-violators pass per mapped class, O(N log N);
    the knots returned are at most the distinct probabilities. Prefer it with
    many samples (thousands) and an arbitrary monotone miscalibration; it may
    map to exactly 0 or 1 (an infinite NLL on a later surprise).

    Examples
    --------
    >>> fit, _ = fit_isotonic(np.array([-2.0, -1.0, 1.0, 2.0]), labels=np.array([0, 1, 0, 1]))
    >>> fit.y[0].tolist()
    [0.0, 0.5, 0.5, 1.0]
    """
    columns, binary = _columns(scores)
    k = 2 if binary else columns.shape[1]
    truth = _truth_columns(labels, targets, k, binary)
    columns, truth, s = _kept_rows(columns, truth, sample_weight)
    knots = [isotonic_knots(columns[:, c], truth[:, c], s) for c in range(columns.shape[1])]
    return IsotonicCalibration([x for x, _ in knots], [y for _, y in knots]), OPTIMUM


@dataclass(frozen=True)
class HistogramBinning:
    """Equal-width bins on [0, 1] with one value per bin and mapped class (Zadrozny & Elkan 2001).

    A probability in ``(edges[b], edges[b+1]]`` (0 in the first bin) maps to ``values[c][b]``.
    """

    edges: FloatArray
    values: FloatArray

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities."""
        columns, binary = _columns(scores)
        if self.values.shape[0] != columns.shape[1]:
            raise InputError(
                "parameters.values",
                f"must hold one row per mapped class ({columns.shape[1]}); got {self.values.shape[0]}",
            )
        bins = _bin_index(columns, self.edges)
        mapped = np.take_along_axis(self.values.T, bins, axis=0)
        return _assemble(mapped, binary)


def _bin_index(columns: FloatArray, edges: FloatArray) -> IntArray:
    """Bin of each probability: b with ``edges[b] < p ≤ edges[b+1]``, 0 in the first bin."""
    n_bins = edges.size - 1
    return np.clip(np.searchsorted(edges, columns, side="left") - 1, 0, n_bins - 1)


def fit_histogram(
    scores: FloatArray,
    *,
    labels: IntArray | None = None,
    targets: FloatArray | None = None,
    sample_weight: FloatArray | None = None,
    n_bins: int = 15,
) -> tuple[HistogramBinning, FitInfo]:
    """Fit histogram binning: each bin's value is the mean truth of the samples in it.

    With `sample_weight` the weighted mean ``Σ s·t / Σ s`` (rows of weight 0 are dropped).
    An empty bin keeps its midpoint (the identity there). Cost: one pass, O(N·K);
    n_bins·K values. Simple and robust for moderate N, but piecewise constant:
    it changes rankings within a bin and loses resolution.

    Examples
    --------
    >>> fit, _ = fit_histogram(np.array([-2.0, -1.0, 1.0, 2.0]), labels=np.array([0, 1, 0, 1]), n_bins=2)
    >>> fit.values.tolist()
    [[0.5, 0.5]]
    """
    columns, binary = _columns(scores)
    k = 2 if binary else columns.shape[1]
    truth = _truth_columns(labels, targets, k, binary)
    columns, truth, s = _kept_rows(columns, truth, sample_weight)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = _bin_index(columns, edges) + n_bins * np.arange(columns.shape[1])
    weights = np.broadcast_to(s[:, None], bins.shape).ravel()
    counts = np.bincount(bins.ravel(), weights=weights, minlength=n_bins * columns.shape[1])
    sums = np.bincount(bins.ravel(), weights=(truth * s[:, None]).ravel(), minlength=counts.size)
    midpoints = np.tile((edges[:-1] + edges[1:]) / 2, columns.shape[1])
    values = np.divide(sums, counts, out=midpoints, where=counts > 0)
    return HistogramBinning(edges, values.reshape(columns.shape[1], n_bins)), OPTIMUM
