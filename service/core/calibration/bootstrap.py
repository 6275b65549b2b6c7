"""Percentile bootstrap intervals for calibration scalars, vectorised over resamples.

A resample is represented by per-sample multiplicities W (how often each sample was
drawn), so every binned sum is one weighted ``np.bincount`` (or ``np.add.reduceat`` over
bins already in order) and every per-sample mean ``W @ x / N``. Resamples are processed in
chunks so that W (R×N), times the number of groups for class-wise targets, stays under
``max_elements`` values; there is no loop over samples.
"""

from dataclasses import dataclass, replace

import numpy as np

from .._typing import FloatArray
from ..cancel import checkpoint
from ..errors import InputError
from . import METRICS, NOT_BOOTSTRAPPED, Prepared, binned_scalars, sort_for_tests
from .report import UNWEIGHTED_REASON, WEIGHTED_METRICS

_PER_CLASS = {
    "ace_nixon",
    "brier_reliability",
    "brier_resolution",
    "brier_uncertainty",
    "brier_within_bin_variance",
    "brier_within_bin_covariance",
}

#: Largest number of resamples accepted.
MAX_RESAMPLES = 10_000


@dataclass(frozen=True)
class Interval:
    """A percentile interval ``[low, high]`` of one scalar over the resamples."""

    low: float
    high: float


def resample_weights(rng: np.random.Generator, n_resamples: int, n: int) -> FloatArray:
    """Multiplicities of `n_resamples` draws of n indices with replacement (R×N float64).

    Indices are ``rng.integers(0, n, size=(R, n), dtype=np.int32)`` (int64 when R·n does
    not fit in int32), counted per resample by one ``np.bincount`` over offset indices.
    """
    # Same values as dtype=int64 (NumPy draws bounds below 2**32 from 32 bits), half the memory.
    narrow = n_resamples * n < np.iinfo(np.int32).max
    draws = rng.integers(0, n, size=(n_resamples, n), dtype=np.int32 if narrow else np.int64)
    draws += (np.arange(n_resamples, dtype=draws.dtype) * n)[:, None]
    counts = np.bincount(draws.ravel(), minlength=n_resamples * n)
    return counts.reshape(n_resamples, n).astype(np.float64)


def bootstrap_intervals(
    prep: Prepared,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    names: set[str] | None = None,
    max_elements: int = 262_144,
    sample_weight: FloatArray | None = None,
) -> dict[str, Interval]:
    """Percentile intervals at `level` for every scalar of :func:`binned_scalars`.

    Resamples draw N samples with replacement (``numpy.random.default_rng(seed)``);
    bins stay those of the full sample (quantile edges are not recomputed). The
    interval is ``np.nanpercentile`` at ``(1 - level)/2`` and ``(1 + level)/2``
    (linear interpolation). ``ace_nixon`` is resampled when `prep` was prepared with
    ``resample=True`` (its ranges re-cut per resample); ``smooth_ece`` finds σ* per resample.

    With `sample_weight` s, rows are drawn exactly as without (uniformly, weights
    ignored in the draw) and each resample's statistic is the weighted one: a row drawn
    m times weighs ``m·s`` (the usual weighted bootstrap). A resample whose drawn
    weights total 0 gives NaN, left out by ``np.nanpercentile``.

    Examples
    --------
    >>> from service.core import Distribution
    >>> from service.core.calibration import Convention, prepare
    >>> p = np.array([0.1, 0.4, 0.6, 0.8, 0.9, 0.3])
    >>> prep = prepare(np.array([0, 1, 0, 1, 1, 0]), Distribution.from_probs(p), Convention(n_bins=4))
    >>> s = np.array([1.0, 2.0, 0.5, 1.0, 0.0, 3.0])
    >>> box = bootstrap_intervals(prep, n_resamples=200, names={"brier"}, sample_weight=s)
    >>> bool(box["brier"].low <= box["brier"].high)
    True
    """
    if not 1 <= n_resamples <= MAX_RESAMPLES:
        raise InputError("bootstrap.n", f"must lie in [1, {MAX_RESAMPLES}]; got {n_resamples}")
    if not 0 < level < 1:
        raise InputError("bootstrap.level", f"must lie in (0, 1); got {level}")
    rng = np.random.default_rng(seed)
    if sample_weight is not None:  # else those `prep` was prepared with, if any
        prep = replace(prep, sample_weight=np.asarray(sample_weight, dtype=np.float64))
    # Draws are uniform over samples, so relabelling samples in confidence order changes
    # nothing but spares each resample a sort for the cumulative statistics.
    prep = sort_for_tests(prep)
    wanted = None if names is None else set(names) - set(NOT_BOOTSTRAPPED)
    if prep.sample_weight is not None:
        weighted = {name for metric in WEIGHTED_METRICS for name in METRICS[metric]}
        if wanted is not None and wanted - weighted:
            raise InputError(
                "sample_weight",
                f"does not apply to {', '.join(sorted(wanted - weighted))}: {UNWEIGHTED_REASON}",
            )
        wanted = weighted if wanted is None else wanted
    n = prep.correct.shape[0]
    groups = prep.binned.conf.shape[0]  # class-wise targets sum K pairs per sample
    for per_class in (prep.brier_pairs, prep.classes):
        if per_class is not None and (wanted is None or wanted & _PER_CLASS):
            groups = max(groups, per_class.conf.shape[0])
    chunk = max(1, max_elements // (n * groups))
    parts: dict[str, list[FloatArray]] = {}
    for start in range(0, n_resamples, chunk):
        checkpoint()
        weights = resample_weights(rng, min(chunk, n_resamples - start), n)
        if prep.sample_weight is not None:
            weights *= prep.sample_weight
        values = binned_scalars(prep, weights, names=wanted, presorted=True)
        for name, value in values.items():
            if not name.startswith("_") and (wanted is None or name in wanted):
                parts.setdefault(name, []).append(np.asarray(value, dtype=np.float64))
    tails = [50 * (1 - level), 50 * (1 + level)]
    out: dict[str, Interval] = {}
    for name, chunks in parts.items():
        samples = np.concatenate(chunks)
        if np.all(np.isnan(samples)):
            out[name] = Interval(float("nan"), float("nan"))
            continue
        # Interpolating between two infinities gives NaN: percentiles of a finite stand-in.
        big = np.finfo(np.float64).max
        low, high = np.nanpercentile(np.clip(samples, -big, big), tails)
        low, high = (float(np.inf * np.sign(v)) if abs(v) >= big / 2 else v for v in (low, high))
        out[name] = Interval(float(low), float(high))
    return {k: v for k, v in out.items() if k not in NOT_BOOTSTRAPPED}
