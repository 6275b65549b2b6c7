"""Adaptive calibration error of Nixon et al. (2019): class-wise, equal-count ranges."""

from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray, IntArray


def ace_nixon(labels: IntArray, probs: FloatArray, n_ranges: int) -> float:
    """Adaptive calibration error (Nixon et al. 2019): class-wise, equal-count ranges.

    Each class's probabilities are sorted and split into `n_ranges` consecutive
    ranges of sizes as ``np.array_split`` makes them (the first ``N mod R`` one larger);
    ACE is the unweighted mean of ``|accuracy - confidence|`` over classes and non-empty
    ranges. Tied probabilities may be split between ranges, in the order NumPy's
    default (introsort/SIMD) argsort leaves them.

    Examples
    --------
    >>> round(ace_nixon(np.array([0, 1]), np.array([[0.8, 0.2], [0.4, 0.6]]), 1), 12)
    0.1
    """
    n, k = probs.shape
    cols = np.ascontiguousarray(probs.T)
    order = np.argsort(cols, axis=1)
    sorted_p = np.sort(cols, axis=1).astype(np.float64)  # equal values where argsort ties
    sorted_o = (labels[order] == np.arange(k)[:, None]).astype(np.float64)
    q, r = divmod(n, n_ranges)
    pos = np.arange(n)
    cut = r * (q + 1)
    chunk = np.where(pos < cut, pos // (q + 1), r + (pos - cut) // max(q, 1))
    keys = (np.arange(k)[:, None] * n_ranges + chunk[None, :]).ravel()
    size = k * n_ranges
    count = np.bincount(keys, minlength=size)
    conf = np.bincount(keys, weights=sorted_p.ravel(), minlength=size)
    acc = np.bincount(keys, weights=sorted_o.ravel(), minlength=size)
    used = count > 0
    return float(np.mean(np.abs(acc[used] - conf[used]) / count[used]))


@dataclass(frozen=True)
class ClassOrder:
    """Every class's probabilities in ascending order, with outcomes and sample indices (K×N)."""

    conf: FloatArray
    outcome: FloatArray
    order: IntArray


def class_order(labels: IntArray, probs: FloatArray) -> ClassOrder:
    """Sort each class column once (stable) for :func:`ace_nixon_weighted`."""
    k = probs.shape[1]
    cols = np.ascontiguousarray(probs.T)
    order = np.argsort(cols, axis=1, kind="stable")
    conf = np.take_along_axis(cols, order, axis=1).astype(np.float64)
    outcome = (labels[order] == np.arange(k)[:, None]).astype(np.float64)
    return ClassOrder(conf, outcome, order)


def ace_nixon_weighted(sorted_: ClassOrder, n_ranges: int, weights: FloatArray) -> FloatArray:
    """:func:`ace_nixon` of R resamples given as multiplicities (R×N), one value per resample.

    A resample lists sample i ``w_i`` times; in each class's sorted order, the first
    ``s`` entries sum to ``F_{j-1} + (s - C_{j-1}) p_j`` where ``C`` and ``F`` are
    cumulative sums of w and w·p and j holds entry s. Range boundaries are those of
    ``np.array_split`` on N entries, so sums over ranges are differences at fixed
    positions: no sort and no loop per resample or class. Tied probabilities of
    distinct samples are kept in sample order (stable), copies of a sample together.
    """
    n_res, n = weights.shape
    k = sorted_.conf.shape[0]
    q, r = divmod(n, n_ranges)
    sizes = np.array([q + 1] * r + [q] * (n_ranges - r), dtype=np.float64)
    bounds = np.concatenate([[0.0], np.cumsum(sizes)])  # positions 0..N
    w = weights[:, sorted_.order]  # R×K×N, each class's sorted order
    cum_w = np.cumsum(w, axis=-1)
    rows = n_res * k
    offset = (np.arange(rows, dtype=np.float64) * (n + 1))[:, None]
    flat = (cum_w.reshape(rows, n) + offset).ravel()
    at = np.searchsorted(flat, (bounds[None, :] + offset).ravel(), side="left")
    at = np.minimum(at, flat.size - 1)  # position 0 of an all-zero prefix still lands in its row
    w_at = w.reshape(-1)[at]
    before = flat[at] - w_at - np.repeat(offset[:, 0], bounds.size)  # C_{j-1}
    pos = np.tile(bounds, rows)

    def prefix(values: FloatArray) -> FloatArray:
        v = np.broadcast_to(values, w.shape)
        cum = np.cumsum(w * v, axis=-1).reshape(-1)
        v_at = v.reshape(-1)[at]
        return (cum[at] - w_at * v_at + (pos - before) * v_at).reshape(n_res, k, bounds.size)

    conf = np.diff(prefix(sorted_.conf), axis=-1)
    acc = np.diff(prefix(sorted_.outcome), axis=-1)
    used = sizes > 0
    gap = np.abs(acc[..., used] - conf[..., used]) / sizes[used]
    return np.asarray(gap.mean(axis=(-2, -1)), dtype=np.float64)
