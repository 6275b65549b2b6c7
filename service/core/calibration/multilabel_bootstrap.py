"""Percentile bootstrap intervals for multilabel calibration: the means over classes, resampled by rows."""

import math
from collections.abc import Collection

import numpy as np

from .._typing import FloatArray
from ..cancel import checkpoint
from ..errors import InputError
from .bootstrap import MAX_RESAMPLES, Interval, resample_weights
from .multilabel import MultilabelPairs, multilabel_scalars


def multilabel_bootstrap(
    prep: MultilabelPairs,
    names: Collection[str],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    max_elements: int = 262_144,
) -> dict[str, Interval]:
    """Percentile intervals at `level` of each named metric's mean over the K classes.

    A resample draws N rows with replacement (``numpy.random.default_rng(seed).integers``,
    resample after resample, as the categorical route draws them), every column of a row
    together; bins stay those of the full sample; ``ace_nixon`` re-cuts its equal-count
    ranges per resample. The interval is ``np.nanpercentile`` at ``(1 - level)/2`` and
    ``(1 + level)/2`` (linear interpolation). Resamples go in chunks of at most
    `max_elements` multiplicities times K, with no loop over samples or classes.

    With weights kept in `prep` (``prepare_multilabel(..., sample_weight=s)``), rows are
    drawn exactly as without (uniformly) and each resample's statistic is the weighted one,
    a row drawn m times weighing ``m·s`` (the weighted bootstrap of the categorical route's
    :func:`bootstrap_intervals`); a resample of total weight 0 gives NaN, left out by
    ``np.nanpercentile``. ``ace_nixon`` refuses weights.

    Examples
    --------
    >>> from service.core.calibration.conventions import Convention
    >>> from service.core.calibration.multilabel import prepare_multilabel
    >>> from service.core.multilabel import multilabel_log_probs
    >>> lp = multilabel_log_probs(probs=np.array([[0.8, 0.1], [0.6, 0.3], [0.3, 0.6]]))
    >>> prep = prepare_multilabel(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), lp, Convention(n_bins=5))
    >>> interval = multilabel_bootstrap(prep, ["brier"], n_resamples=200, seed=1)["brier"]
    >>> 0 <= interval.low <= interval.high <= 1
    True
    >>> s = np.array([2.0, 0.5, 1.0])
    >>> prep = prepare_multilabel(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]), lp, sample_weight=s,
    ...                           convention=Convention(n_bins=5))
    >>> box = multilabel_bootstrap(prep, ["brier"], n_resamples=200, seed=1)["brier"]
    >>> 0 <= box.low <= box.high <= 1
    True
    """
    if not 1 <= n_resamples <= MAX_RESAMPLES:
        raise InputError("bootstrap.n", f"must lie in [1, {MAX_RESAMPLES}]; got {n_resamples}")
    if not 0 < level < 1:
        raise InputError("bootstrap.level", f"must lie in (0, 1); got {level}")
    n, k = prep.squared.shape
    scale = prep.sample_weight
    if scale is not None:
        if "ace_nixon" in names:
            raise InputError(
                "sample_weight",
                "does not apply to ace_nixon with multilabel (equal-count ranges); leave it out",
            )
        if not math.isfinite(float(scale.max()) * n):  # m·s stays finite, m ≤ N
            raise InputError(
                "sample_weight",
                f"must keep N × max(sample_weight) finite with bootstrap; got max {float(scale.max()):g} "
                f"with N = {n} (scale the weights down)",
            )
    rng = np.random.default_rng(seed)
    chunk = max(1, max_elements // (n * k))
    parts: dict[str, list[FloatArray]] = {}
    for start in range(0, n_resamples, chunk):
        checkpoint()
        weights = resample_weights(rng, min(chunk, n_resamples - start), n)
        if scale is not None:
            weights *= scale
        values, _ = multilabel_scalars(prep, weights, names, counts=scale is None)
        for name, value in values.items():
            with np.errstate(invalid="ignore"):  # NaN columns stay NaN in their mean
                parts.setdefault(name, []).append(value.mean(axis=1))
    tails = [50 * (1 - level), 50 * (1 + level)]
    out: dict[str, Interval] = {}
    for name, chunks in parts.items():
        samples = np.concatenate(chunks)
        if np.all(np.isnan(samples)):
            out[name] = Interval(float("nan"), float("nan"))
            continue
        big = np.finfo(np.float64).max  # interpolating between two infinities gives NaN
        low, high = np.nanpercentile(np.clip(samples, -big, big), tails)
        low, high = (float(np.inf * np.sign(v)) if abs(v) >= big / 2 else v for v in (low, high))
        out[name] = Interval(float(low), float(high))
    return out
