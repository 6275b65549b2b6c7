"""Metrics of many groups of serialised :class:`~service.core.MonitorStats` at once (time series).

A monitor's time-series query merges the statistics rows of each step into one point. Decoding
each point with :func:`~service.core.merge_stats` costs a fixed ~1-2 ms whatever its size (every
per-class and per-cell sum is rebuilt), so 720 hourly points took over a second.
:func:`series_metrics` reads every blob once, adds header sums per group with one ``bincount``
each, and the top-label (or positive-class) histogram records per (group, coarse bin) with one
``bincount`` per sum: a fixed number of NumPy calls for any number of points.

The metrics are those of :class:`~service.core.MonitorStats` (same formulas, same conventions):
the point of a group equals ``merge_stats(blobs of the group)``'s metrics up to float64 summation
order.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, IntArray
from ..calibration.brier import brier_factor
from ..errors import InputError
from .codec import (
    HEADER,
    WEIGHTED,
    _check_headers,
    _gather,
    _window,
    cell_record,
    class_bytes,
)
from .fine_histogram import N_CELLS, check_bins, coarse_index

_SUMS = ("weight_predictions", "confidence_sum", "weight_labelled", "nll_sum", "brier_sum", "correct_weight")


@dataclass(frozen=True)
class SeriesMetrics:
    """Per-group metrics; NaN where a group has nothing to measure.

    Attributes
    ----------
    n, n_labelled : ndarray of int64
        Predictions and labelled rows per group.
    cross_entropy, accuracy, brier, ece, mce, rmsce, mean_confidence : ndarray of float64
        As :meth:`MonitorStats.cross_entropy` (in the requested base), ``accuracy``, ``brier``
        (``scale="auto"``), ``calibration_errors`` and ``mean_confidence``.
    """

    n: IntArray
    n_labelled: IntArray
    cross_entropy: FloatArray
    accuracy: FloatArray
    brier: FloatArray
    ece: FloatArray
    mce: FloatArray
    rmsce: FloatArray
    mean_confidence: FloatArray


def series_metrics(
    blobs: Sequence[bytes],
    groups: ArrayLike,
    n_groups: int,
    *,
    n_bins: int = 15,
    closed: Literal["right", "left"] = "right",
    target: Literal["top_label", "positive_class"] | None = None,
    base: float = math.e,
) -> SeriesMetrics:
    """Metrics of each group of `blobs` (``groups[i]`` in ``[0, n_groups)`` is blob i's group).

    `target` defaults to positive-class for binary statistics, as :meth:`MonitorStats.calibration_errors`.

    Examples
    --------
    >>> from service.core import Distribution, MonitorStats
    >>> a = MonitorStats.summarise(Distribution.from_probs(np.array([0.9, 0.2])), [1, 1]).to_bytes()
    >>> b = MonitorStats.summarise(Distribution.from_probs(np.array([0.6])), [0]).to_bytes()
    >>> m = series_metrics([a, b, a], [0, 1, 0], 3)
    >>> m.n.tolist(), m.accuracy.tolist()[:2]
    ([4, 1, 0], [0.5, 0.0])
    """
    n_bins = check_bins(n_bins)
    g = np.asarray(groups, np.int64)
    if g.shape != (len(blobs),) or (g.size and (g.min() < 0 or g.max() >= n_groups)):
        raise InputError("groups", f"must hold one group in [0, {n_groups}) per blob")
    if not blobs:
        return _metrics({}, {}, n_groups, None, base)
    lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
    if (lengths < HEADER.itemsize).any():
        raise InputError("stats", f"must be at least {HEADER.itemsize} bytes (a MonitorStats header)")
    data = b"".join(blobs)
    starts = np.cumsum(lengths) - lengths
    head = _window(data, np.dtype(f"V{HEADER.itemsize}"))[starts].view(HEADER)
    n_classes, binary = _check_headers(head, lengths)
    side = target or ("positive_class" if binary else "top_label")
    if side not in ("top_label", "positive_class") or (side == "positive_class" and n_classes != 2):
        raise InputError("target", f'must be "top_label" or "positive_class" (K = 2 only); got {side!r}')
    sums = {name: np.bincount(g, weights=head[name], minlength=n_groups) for name in _SUMS}
    for name in ("n_predictions", "n_labelled"):
        sums[name] = np.bincount(g, weights=head[name].astype(np.float64), minlength=n_groups)
    cells = _histogram_records(data, head, starts, g, n_classes, side == "positive_class")
    bin_of_cell = coarse_index(np.arange(N_CELLS), n_bins, closed)  # a lookup table, gathered once per record
    index = cells["group"] * n_bins + bin_of_cell[cells["cell"]]
    size = n_groups * n_bins

    def add(values: np.ndarray) -> FloatArray:
        sums = np.bincount(index, weights=values, minlength=size).astype(np.float64, copy=False)
        return sums.reshape(n_groups, n_bins)

    hist = {name: add(cells[name]) for name in ("count", "conf", "hits")}
    hist["weight"] = add(cells["weight"]) if "weight" in cells else hist["count"]
    factor = brier_factor("auto", n_classes, binary=binary)
    return _metrics(hist, sums, n_groups, factor, base)


def _histogram_records(
    data: bytes, head: np.ndarray, starts: IntArray, groups: IntArray, n_classes: int, positive: bool
) -> dict[str, np.ndarray]:
    """The cell records of one histogram section of every blob, with each record's group."""
    weighted = (head["flags"] & WEIGHTED) != 0
    kind = head["width"].astype(np.int64) * 2 + weighted
    out: dict[str, list[np.ndarray]] = {
        "group": [],
        "cell": [],
        "count": [],
        "weight": [],
        "conf": [],
        "hits": [],
    }
    for group in np.unique(kind):  # ≤ 8 kinds of blob, never one call per blob
        width, is_weighted = int(group) // 2, bool(group % 2)
        mine = np.flatnonzero(kind == group)
        h = head[mine]
        record = cell_record(width, is_weighted)
        skip = class_bytes(h, n_classes)  # sparse or dense class sections
        if positive:
            skip = skip + h["n_top"].astype(np.int64) * record.itemsize
        n = h["n_positive" if positive else "n_top"].astype(np.int64)
        records = _gather(data, starts[mine] + HEADER.itemsize + skip, n, record)
        out["group"].append(np.repeat(groups[mine], n))
        out["cell"].append(records["cell"])
        count = records["count"].astype(np.float64)
        out["count"].append(count)
        out["weight"].append(records["weight"] if is_weighted else count)
        out["conf"].append(records["conf"])
        out["hits"].append(records["hits"].astype(np.float64))
    if not weighted.any():
        del out["weight"]  # the row counts are the weights
    return {name: parts[0] if len(parts) == 1 else np.concatenate(parts) for name, parts in out.items()}


def _metrics(
    hist: dict[str, np.ndarray],
    sums: dict[str, np.ndarray],
    n_groups: int,
    factor: float | None,
    base: float,
) -> SeriesMetrics:
    if not sums or factor is None:
        empty = np.full(n_groups, np.nan)
        zero = np.zeros(n_groups, np.int64)
        return SeriesMetrics(zero, zero, empty, empty, empty, empty, empty, empty, empty)
    labelled = sums["weight_labelled"]
    has = labelled > 0
    safe = np.where(has, labelled, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, accuracy = hist["conf"] / hist["weight"], hist["hits"] / hist["weight"]
    valid = (hist["count"] > 0) & (hist["weight"] > 0)
    mass = np.where(valid, hist["weight"] / safe[:, None], 0.0)
    gap = np.abs(np.where(valid, confidence - accuracy, 0.0))
    nan = np.nan

    def per_labelled(values: FloatArray) -> FloatArray:
        return np.where(has, values / safe, nan)

    ce = per_labelled(sums["nll_sum"])
    predictions = sums["weight_predictions"]
    return SeriesMetrics(
        n=sums["n_predictions"].astype(np.int64),
        n_labelled=sums["n_labelled"].astype(np.int64),
        cross_entropy=ce if base == math.e else ce / math.log(base),
        accuracy=per_labelled(sums["correct_weight"]),
        brier=factor * per_labelled(sums["brier_sum"]),
        ece=np.where(has, (mass * gap).sum(axis=1), nan),
        mce=np.where(has, gap.max(axis=1, initial=0.0), nan),
        rmsce=np.where(has, np.sqrt((mass * gap * gap).sum(axis=1)), nan),
        mean_confidence=np.where(
            predictions > 0, sums["confidence_sum"] / np.where(predictions > 0, predictions, 1.0), nan
        ),
    )


__all__ = ["SeriesMetrics", "series_metrics"]
