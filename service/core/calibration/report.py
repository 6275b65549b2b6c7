"""The calibration report: every requested scalar, per-class errors and reliability bins."""

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from .._typing import FloatArray, IntArray
from ..distribution import Distribution
from ..errors import InputError
from .ace import ace_nixon
from .binned import BinMeans, BinSums, binned_error
from .conventions import METRICS, Convention, Target
from .pairs import Pairs, prepare
from .scalars import binned_scalars
from .smooth_ece import smooth_ece


@dataclass(frozen=True)
class Reliability:
    """One reliability diagram: per-bin edges, counts, means and Wilson intervals.

    ``group`` is the class for class-wise targets, None otherwise. ``count`` is the number
    of pairs (rows) in each bin and ``weight`` their total sample weight (``count`` without
    weights); ``confidence`` and ``accuracy`` are weighted means ``Σ s·x / Σ s``, and the
    Wilson interval takes ``weight`` as the number of trials (frequency weights). They are
    NaN in bins of weight 0; ``gap = confidence - accuracy``.
    """

    group: int | None
    lower: FloatArray
    upper: FloatArray
    count: FloatArray
    confidence: FloatArray
    accuracy: FloatArray
    wilson_low: FloatArray
    wilson_high: FloatArray
    weight: FloatArray

    @property
    def gap(self) -> FloatArray:
        """Mean confidence minus accuracy per bin (positive: over-confident)."""
        return self.confidence - self.accuracy


@dataclass(frozen=True)
class CalibrationReport:
    """Every requested scalar, per-class errors for class-wise targets, and reliability bins."""

    scalars: dict[str, float]
    per_class: dict[str, list[float]]
    reliability: list[Reliability]
    convention: Convention
    n_bins: int
    target: Target
    n_excluded_bins: int = 0
    extra: dict[str, object] = field(default_factory=dict)


def wilson_interval(successes: FloatArray, count: FloatArray, level: float) -> tuple[FloatArray, FloatArray]:
    """Wilson score interval for a binomial proportion; NaN where ``count == 0``.

    Examples
    --------
    >>> low, high = wilson_interval(np.array([5.0]), np.array([10.0]), 0.95)
    >>> round(float(low[0]), 4), round(float(high[0]), 4)
    (0.2366, 0.7634)
    """
    # 0.5 + level/2 rounds to 1 (inv_cdf raises) for a level within 1e-16 of 1: then the upper
    # quantile is minus the lower tail's, (1 - level)/2 staying positive.
    upper = 0.5 + level / 2
    z = NormalDist().inv_cdf(upper) if upper < 1 else -NormalDist().inv_cdf((1 - level) / 2)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):  # a count of 1e-320: NaN
        p = successes / count
        denom = 1 + z * z / count
        center = (p + z * z / (2 * count)) / denom
        half = z / denom * np.sqrt(p * (1 - p) / count + z * z / (4 * count * count))
    return center - half, center + half


def _reliability(
    pairs: Pairs, sums: BinSums, means: BinMeans, level: float, grouped: bool, weighted: bool
) -> list[Reliability]:
    low, high = wilson_interval(sums.outcome[0], sums.count[0], level)
    rows = sums.count[0]
    if weighted:  # rows per bin, the weight sums aside
        groups = pairs.index.shape[0]
        keys = (np.arange(groups)[:, None] * (pairs.n_slots + 1) + pairs.index).ravel()
        counted = np.bincount(keys, minlength=groups * (pairs.n_slots + 1)).astype(np.float64)
        rows = counted.reshape(groups, pairs.n_slots + 1)[:, : pairs.n_slots]
    return [
        Reliability(
            group=g if grouped else None,
            lower=np.asarray(pairs.lower[g], dtype=np.float64),
            upper=np.asarray(pairs.upper[g], dtype=np.float64),
            count=rows[g],
            weight=sums.count[0, g],
            confidence=means.confidence[0, g],
            accuracy=means.accuracy[0, g],
            wilson_low=low[g],
            wilson_high=high[g],
        )
        for g in range(sums.count.shape[1])
    ]


#: The metrics `sample_weight` applies to: those built from sums over samples.
WEIGHTED_METRICS: tuple[str, ...] = (
    "calibration_error",
    "ece",
    "mce",
    "rmsce",
    "ace_netcal",
    "debiased_l2",
    "brier",
    "nll",
    "accuracy",
    "mean_confidence",
    "confidence_gap",
    "reliability",
)
#: Why the others refuse weights: they are built from the order or the number of rows.
UNWEIGHTED_REASON = (
    "built from the order or the number of rows (np.array_split's equal-count ranges, kernel smoothing, "
    "Brownian-motion limits), and no peer (netcal, relplot, torchmetrics, scikit-learn) defines a "
    "weighted form"
)


def _check_weighted(sample_weight: FloatArray, wanted: set[str]) -> FloatArray:
    """Sample weights as one (1, N) row of multiplicities, or raise for what they do not apply to."""
    unsupported = sorted(wanted - set(WEIGHTED_METRICS))
    if unsupported:
        raise InputError(
            "sample_weight",
            f"does not apply to {', '.join(unsupported)}: {UNWEIGHTED_REASON}; leave those out",
        )
    largest = float(sample_weight.max())
    if not math.isfinite(largest * sample_weight.size):  # bounds every sum, resamples' included
        raise InputError(
            "sample_weight",
            f"must keep N × max(sample_weight) finite; got max {largest:g} with N = {sample_weight.size} "
            "(scale the weights down)",
        )
    if not sample_weight.sum() > 0:
        raise InputError("sample_weight", "must have a positive total; got 0")
    return sample_weight[None, :].astype(np.float64)


def calibration_report(
    labels: IntArray,
    dist: Distribution,
    convention: Convention | None = None,
    *,
    metrics: Collection[str] | None = None,
    sample_weight: FloatArray | None = None,
) -> CalibrationReport:
    """Calibration metrics of predictions `dist` against integer `labels`.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
        True classes, already validated against ``dist.n_classes``.
    dist : Distribution
        Predicted distributions (binary input: columns [1 - p, p]).
    convention : Convention, optional
        Binning and reduction conventions; defaults: 15 uniform bins with edges i/15,
        ``(a, b]``, top-label (positive-class for binary input), l1, mass weighting.
    metrics : collection of str, optional
        Names from :data:`METRICS`; all when omitted (with `sample_weight`: all of
        :data:`WEIGHTED_METRICS`).
    sample_weight : ndarray of shape (n_samples,), optional
        Non-negative weights s: every sum over samples becomes a sum of s (bin counts, bin
        means, N), so integer weights equal repeating each row s times and weight-0 rows
        equal dropped rows; the Brier score is ``Σ s·b / Σ s`` (scikit-learn's
        ``brier_score_loss(sample_weight=…)``) and its Murphy terms use weighted bin masses
        and means; reliability bins carry weight sums and weighted means (``count`` stays
        the number of rows); quantile edges hold equal weight (weights as frequencies). Only
        the metrics in :data:`WEIGHTED_METRICS`.

    Returns
    -------
    CalibrationReport
        ``scalars`` holds the selected values (see :data:`METRICS` for names).

    Notes
    -----
    ``calibration_error`` uses `norm` and `bin_weighting`; ``ece``/``rmsce`` are its
    l1/l2 forms and ``mce`` the largest |gap| over counted bins. Class-wise targets
    average per-class errors (Kull et al. 2019); ``marginal`` reports per-class errors
    and ``(mean_k e_k^p)^(1/p)`` (Kumar et al. 2019). ``debiased_l2`` is
    ``sqrt(max(Σ w (gap² - ā(1-ā)/(n_b-1)), 0))`` over bins with ≥ 2 pairs (Kumar,
    Liang & Ma 2019). The statistical tests and ``smooth_ece`` use top-label pairs
    (positive-class pairs when that is the target). The Brier score decomposition
    bins each class's probability with the same edges, keeping every pair.

    Examples
    --------
    >>> dist = Distribution.from_probs(np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3]))
    >>> report = calibration_report(np.array([0, 1, 0, 1, 0, 0, 1]), dist, Convention(n_bins=5))
    >>> round(report.scalars["ece"], 6)
    0.485714
    """
    convention = convention or Convention()
    default = METRICS if sample_weight is None else WEIGHTED_METRICS
    wanted = set(default) if metrics is None else set(metrics)
    unknown = sorted(wanted - set(METRICS))
    if unknown:
        raise InputError("metrics", f"must name metrics from {', '.join(METRICS)}; got {unknown[0]!r}")
    if not 0 < convention.level < 1:
        raise InputError("level", f"must lie in (0, 1); got {convention.level}")
    selected = {name for metric in wanted for name in METRICS[metric]}
    weights = None if sample_weight is None else _check_weighted(sample_weight, wanted)
    prep = prepare(labels, dist, convention, names=selected, sample_weight=sample_weight)
    values = binned_scalars(prep, weights, names=selected, keep_bins=True)
    means: BinMeans = values.pop("_means")  # type: ignore[assignment]
    sums: BinSums = values.pop("_sums")  # type: ignore[assignment]
    scalars = {name: float(v[0]) for name, v in values.items()}
    if "ace_nixon" in wanted:
        scalars["ace_nixon"] = ace_nixon(labels, dist.probs, prep.n_bins)
    if "smooth_ece" in wanted:
        result = smooth_ece(prep.test_conf, prep.test_outcome)
        scalars["smooth_ece"], scalars["smooth_ece_sigma"] = result.value, result.sigma
    per_class: dict[str, list[float]] = {}
    if prep.target in ("classwise", "marginal"):
        per_class = {
            "calibration_error": binned_error(means, convention.norm)[0].tolist(),
            "ece": binned_error(means, "l1")[0].tolist(),
        }
    grouped = prep.target in ("classwise", "marginal")
    reliability = (
        _reliability(prep.binned, sums, means, convention.level, grouped, weights is not None)
        if "reliability" in wanted
        else []
    )
    excluded = int(np.count_nonzero((sums.count[0] > 0) & ~means.valid[0]))
    return CalibrationReport(
        scalars={k: v for k, v in scalars.items() if k in selected},
        per_class=per_class,
        reliability=reliability,
        convention=prep.convention,
        n_bins=prep.n_bins,
        target=prep.target,
        n_excluded_bins=excluded,
    )
