"""Per-bin sums and the binned calibration errors computed from them.

Every array here has shape ``(R, G, S)``: R resamples (1 without bootstrap), G groups
of (confidence, outcome) pairs (1 for top-label or positive-class, K for class-wise)
and S bins. The same kernels serve the point estimate and the bootstrap.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

from .._typing import FloatArray, IntArray
from ..cancel import checkpoint

Norm = Literal["l1", "l2", "max"]
Weighting = Literal["mass", "uniform"]


@dataclass(frozen=True)
class BinSums:
    """Weighted sums per (resample, group, bin).

    Attributes
    ----------
    count, conf, outcome, conf_sq, conf_outcome : ndarray, shape (R, G, S)
        Σ w, Σ w·c, Σ w·o, Σ w·c², Σ w·c·o over the pairs in each bin.
    n : ndarray, shape (R, 1, 1)
        Total weight of each resample (N, the number of samples, without weights; excluded
        pairs included).
    """

    count: FloatArray
    conf: FloatArray
    outcome: FloatArray
    conf_sq: FloatArray
    conf_outcome: FloatArray
    n: FloatArray


def _totals(n_res: int, n: int, weights: FloatArray | None) -> FloatArray:
    """Total weight per resample, shape (R, 1, 1): N without `weights`."""
    if weights is None:
        return np.full((n_res, 1, 1), float(n))
    return weights.sum(axis=1).reshape(n_res, 1, 1)


def bin_sums(
    conf: FloatArray,
    outcome: FloatArray,
    index: IntArray,
    n_slots: int,
    *,
    weights: FloatArray | None = None,
    second_moments: bool = False,
    runs: IntArray | None = None,
    grouped: "GroupRuns | None" = None,
) -> BinSums:
    """Sum pairs into bins with ``np.bincount``: one pass per statistic, no loop.

    Parameters
    ----------
    conf, outcome : ndarray, shape (G, N)
        Confidences and 0/1 outcomes (outcome may be fractional).
    index : ndarray of int, shape (G, N)
        Bin of each pair in ``[0, n_slots]``; ``n_slots`` marks a pair in no bin.
    n_slots : int
        Number of bins S.
    weights : ndarray, shape (R, N), optional
        Per-sample multiplicities of R resamples (keys then run over R·G·(S+1) cells).
    second_moments : bool, default=False
        Also sum c² and c·o (for the Brier decomposition).
    runs : ndarray of int, optional
        Start of each run of equal bins when G = 1 and pairs are in bin order
        (:func:`bin_runs`); found on each call when omitted.
    grouped : GroupRuns, optional
        Every group's pairs put in (group, bin) order once (:func:`group_runs`): with
        `weights`, each statistic is one gather and one ``np.add.reduceat``.
    """
    n_groups, n = conf.shape
    width = n_slots + 1
    c = conf.astype(np.float64, copy=False)
    o = outcome.astype(np.float64, copy=False)
    if weights is not None and grouped is not None:
        return _grouped_sums(c, o, weights, grouped, width, second_moments)
    if weights is not None and runs is None:
        runs = bin_runs(index)
    if weights is not None and runs is not None:
        return _segment_sums(c, o, index, width, weights, second_moments, runs)
    keys = (np.arange(n_groups)[:, None] * width + index).ravel()
    n_res = 1 if weights is None else weights.shape[0]
    size = n_res * n_groups * width
    if weights is not None:
        keys = ((np.arange(n_res) * (n_groups * width))[:, None] + keys[None, :]).ravel()
        w = np.broadcast_to(weights[:, None, :], (n_res, n_groups, n)).reshape(n_res, -1)

    def total(values: FloatArray | None) -> FloatArray:
        if weights is None:
            data = None if values is None else values.ravel()
        else:
            data = w.ravel() if values is None else (w * values.reshape(1, -1)).ravel()
        sums = np.bincount(keys, weights=data, minlength=size).astype(np.float64, copy=False)
        return sums.reshape(n_res, n_groups, width)[..., :n_slots]

    zero = np.zeros((n_res, n_groups, n_slots))
    return BinSums(
        count=total(None),
        conf=total(c),
        outcome=total(o),
        conf_sq=total(c * c) if second_moments else zero,
        conf_outcome=total(c * o) if second_moments else zero,
        n=_totals(n_res, n, weights),
    )


def bin_runs(index: IntArray) -> IntArray | None:
    """Start of each run of equal bins if there is one group in bin order, else None."""
    if index.shape[0] != 1 or index.shape[1] == 0 or not np.all(index[0, 1:] >= index[0, :-1]):
        return None
    row = index[0]
    return np.concatenate([[0], np.flatnonzero(row[1:] != row[:-1]) + 1])


def _segment_sums(
    c: FloatArray,
    o: FloatArray,
    index: IntArray,
    width: int,
    weights: FloatArray,
    second_moments: bool,
    starts: IntArray,
) -> BinSums:
    """Bin sums when pairs are already in bin order: one ``np.add.reduceat`` over each bin's run."""
    n_res = weights.shape[0]
    bins = index[0][starts]
    values = [c[0], o[0]] + ([c[0] * c[0], c[0] * o[0]] if second_moments else [])
    data = np.empty((len(values), n_res, weights.shape[1]))
    for row, v in zip(data, values, strict=True):  # 2 or 4 statistics, each over all samples
        checkpoint()
        np.multiply(weights, v, out=row)
    out = np.zeros((1 + len(values), n_res, 1, width))
    out[0][:, 0, bins] = np.add.reduceat(weights, starts, axis=1)
    out[1:, :, 0, bins] = np.add.reduceat(data, starts, axis=2)
    return _stacked(out[..., : width - 1], second_moments, _totals(n_res, 0, weights))


@dataclass(frozen=True)
class GroupRuns:
    """Pairs of G groups in (group, bin) order: their samples, confidences, outcomes, runs, cells."""

    sample: IntArray
    conf: FloatArray
    outcome: FloatArray
    starts: IntArray
    cells: IntArray


def group_runs(conf: FloatArray, outcome: FloatArray, index: IntArray, width: int) -> GroupRuns:
    """Sort the G×N pairs once by cell ``g·width + bin`` (stable) for :func:`bin_sums`."""
    n_groups, n = index.shape
    keys = (np.arange(n_groups)[:, None] * width + index).ravel()
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.concatenate([[0], np.flatnonzero(ordered[1:] != ordered[:-1]) + 1])
    c = conf.astype(np.float64).ravel()[order]
    o = outcome.astype(np.float64).ravel()[order]
    return GroupRuns(order % n, c, o, starts, ordered[starts])


def _grouped_sums(
    c: FloatArray, o: FloatArray, weights: FloatArray, runs: GroupRuns, width: int, second_moments: bool
) -> BinSums:
    """Bin sums of G groups from pairs in cell order: one gather of the weights, one reduceat."""
    n_res = weights.shape[0]
    n_groups = c.shape[0]
    cf, of = runs.conf, runs.outcome
    w = weights[:, runs.sample]
    values = [cf, of] + ([cf * cf, cf * of] if second_moments else [])
    data = np.empty((1 + len(values), n_res, w.shape[1]))
    data[0] = w
    for row, v in zip(data[1:], values, strict=True):  # 2 or 4 statistics, each over all pairs
        checkpoint()
        np.multiply(w, v, out=row)
    out = np.zeros((data.shape[0], n_res, n_groups * width))
    out[:, :, runs.cells] = np.add.reduceat(data, runs.starts, axis=2)
    out = out.reshape(data.shape[0], n_res, n_groups, width)[..., : width - 1]
    return _stacked(out, second_moments, _totals(n_res, 0, weights))


def _stacked(out: FloatArray, second_moments: bool, n: FloatArray) -> BinSums:
    """BinSums from stacked (count, conf, outcome[, conf², conf·outcome]) sums of shape (S, R, G, B)."""
    zero = np.zeros(out.shape[1:])
    return BinSums(
        count=out[0],
        conf=out[1],
        outcome=out[2],
        conf_sq=out[3] if second_moments else zero,
        conf_outcome=out[4] if second_moments else zero,
        n=n,
    )


@dataclass(frozen=True)
class BinMeans:
    """Means per bin (NaN in empty bins) and which bins count (``count >= min_bin_count``)."""

    confidence: FloatArray
    accuracy: FloatArray
    valid: np.ndarray
    weight: FloatArray


def bin_means(
    sums: BinSums, *, min_bin_count: int, weighting: Weighting, means_from: BinSums | None = None
) -> BinMeans:
    """Mean confidence and accuracy per bin, and each bin's weight in the error.

    With weights, counts are sums of weights: a bin counts when its weight is positive
    (and at least `min_bin_count` when that is above 1). Bins excluded by `min_bin_count` weigh 0 but still
    count in the normaliser, as in netcal's ``sample_threshold`` (issue #20): ``mass`` is
    ``n_b / N`` with N every sample, ``uniform`` is ``1 / #non-empty bins`` (netcal's ACE
    divides by ``count_nonzero`` of the histogram, thresholded bins included).
    `means_from`, when given, are sums over other bin memberships (netcal's float32
    edges) that the means are taken from; a bin empty there but not in `sums` has mean 0
    (netcal's ``nan_to_num``).
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        if means_from is None:
            confidence = sums.conf / sums.count
            accuracy = sums.outcome / sums.count
        else:
            held = (means_from.count > 0) | (sums.count == 0)  # NaN stays NaN only where both are empty
            confidence = np.where(held, means_from.conf / means_from.count, 0.0)
            accuracy = np.where(held, means_from.outcome / means_from.count, 0.0)
    # Weighted sums: a bin counts when its weight is positive (0.3 of weight is not empty), and
    # min_bin_count above 1 compares the weight (frequency weights: integer weights = repeated rows).
    valid = sums.count >= min_bin_count if min_bin_count > 1 else sums.count > 0
    if weighting == "mass":
        with np.errstate(invalid="ignore", divide="ignore"):
            weight = np.where(valid, sums.count / sums.n, 0.0)
    else:
        n_filled = (sums.count > 0).sum(axis=-1, keepdims=True)
        weight = np.where(valid, 1.0 / np.maximum(n_filled, 1), 0.0)
    return BinMeans(confidence, accuracy, valid, weight)


def _gap(means: BinMeans) -> FloatArray:
    return np.where(means.valid, means.confidence - means.accuracy, 0.0)


def binned_error(means: BinMeans, norm: Norm) -> FloatArray:
    """Calibration error per (resample, group): ``Σ w|gap|``, ``sqrt(Σ w gap²)`` or ``max |gap|``.

    Examples
    --------
    >>> sums = bin_sums(np.array([[0.2, 0.9]]), np.array([[0.0, 1.0]]), np.array([[0, 1]]), 2)
    >>> binned_error(bin_means(sums, min_bin_count=1, weighting="mass"), "l1")
    array([[0.15]])
    """
    gap = np.abs(_gap(means))
    if norm == "l1":
        return (means.weight * gap).sum(axis=-1)
    if norm == "l2":
        return np.sqrt((means.weight * gap * gap).sum(axis=-1))
    return gap.max(axis=-1, initial=0.0)


def debiased_square(means: BinMeans, sums: BinSums) -> FloatArray:
    """Kumar et al. (2019) per-bin bias-corrected squared error, summed: ``Σ w (gap² - ā(1-ā)/(n-1))``.

    Bins with fewer than two samples contribute 0 (their ``unbiased_square_ce``).
    May be negative; callers take ``sqrt(max(·, 0))``.
    """
    usable = means.valid & (sums.count >= 2)
    gap = np.where(usable, means.confidence - means.accuracy, 0.0)
    acc = np.where(usable, means.accuracy, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        correction = np.where(usable, acc * (1 - acc) / (sums.count - 1), 0.0)
    return (means.weight * np.where(usable, gap * gap - correction, 0.0)).sum(axis=-1)


def reduce_groups(values: FloatArray, norm: Norm, how: Literal["mean", "marginal"]) -> FloatArray:
    """Combine per-group errors (R, G) into one per resample.

    ``mean``: arithmetic mean over groups (class-wise ECE, Kull et al. 2019).
    ``marginal``: ``(mean_k e_k^p)^(1/p)`` for l1/l2 and ``max_k`` for max (Kumar et al. 2019).
    """
    if how == "mean":
        return values.mean(axis=-1)
    if norm == "max":
        return values.max(axis=-1)
    if norm == "l2":
        return np.sqrt((values * values).mean(axis=-1))
    return values.mean(axis=-1)
