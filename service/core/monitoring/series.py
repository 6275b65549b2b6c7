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
    VERSION,
    WEIGHTED,
    _check_headers,
    _gather,
    _window,
    cell_record,
    class_bytes,
)
from .fine_histogram import N_CELLS, check_bins, coarse_index
from .raw_batch import expand

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
    sums = group_sums(blobs, groups, n_groups, n_bins=n_bins, closed=closed, target=target)
    return sums_metrics(sums.table, n_bins, n_classes=sums.n_classes, binary=sums.binary, base=base)


#: Columns of a :class:`GroupSums` table before its four histogram blocks (n_bins columns each).
SUM_COLUMNS = ("n_predictions", "n_labelled", *_SUMS)
#: The histogram blocks, in order: rows, ``Σ w``, ``Σ w·confidence``, ``Σ w·outcome`` per coarse bin.
HIST_BLOCKS = ("count", "weight", "conf", "hits")


@dataclass(frozen=True)
class GroupSums:
    """Additive sums of each group's statistics under one binning: the metrics' raw material.

    Attributes
    ----------
    table : ndarray of float64, shape (n_groups, len(SUM_COLUMNS) + 4 * n_bins)
        Per group: the header sums of `SUM_COLUMNS`, then the coarse histogram's `HIST_BLOCKS`
        (``weight`` equals ``count`` for unweighted rows). Rows of two tables add: the sum of
        the rows of several groups is the row of their union (float sums up to rounding).
    n_classes, binary : int or None, bool
        K and binary of the blobs (None: no blob).
    """

    table: FloatArray
    n_classes: int | None
    binary: bool


def group_sums(
    blobs: Sequence[bytes],
    groups: ArrayLike,
    n_groups: int,
    *,
    n_bins: int = 15,
    closed: Literal["right", "left"] = "right",
    target: Literal["top_label", "positive_class"] | None = None,
) -> GroupSums:
    """The additive sums of each group of `blobs` under B = `n_bins` bins (see :class:`GroupSums`).

    Every blob is read once: header sums with one ``bincount`` per column, histogram records per
    (group, coarse bin) with one ``bincount`` per sum. With ``groups = arange(len(blobs))`` the
    table holds one row per blob, which callers may keep and add up later (a cache keyed by the
    blob's bytes).

    Examples
    --------
    >>> from service.core import Distribution, MonitorStats
    >>> a = MonitorStats.summarise(Distribution.from_probs(np.array([0.9, 0.2])), [1, 1]).to_bytes()
    >>> s = group_sums([a, a], [0, 1], 2, n_bins=2)
    >>> s.table.shape, s.table[:, 0].tolist()  # two positive-class bins: p = 0.2 and p = 0.9
    ((2, 16), [2.0, 2.0])
    >>> s.table[0, len(SUM_COLUMNS) :].reshape(4, 2).tolist()  # count, weight, conf, hits
    [[1.0, 1.0], [1.0, 1.0], [0.2, 0.9], [1.0, 1.0]]
    """
    n_bins = check_bins(n_bins)
    g = np.asarray(groups, np.int64)
    if g.shape != (len(blobs),) or (g.size and (g.min() < 0 or g.max() >= n_groups)):
        raise InputError("groups", f"must hold one group in [0, {n_groups}) per blob")
    width = len(SUM_COLUMNS)
    table = np.zeros((n_groups, width + len(HIST_BLOCKS) * n_bins))
    if not blobs:
        return GroupSums(table, None, False)
    lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
    if (lengths < HEADER.itemsize).any():
        if (expanded := expand(blobs)) is not None:  # raw batches among them (raw_batch)
            return group_sums(expanded, g, n_groups, n_bins=n_bins, closed=closed, target=target)
        raise InputError("stats", f"must be at least {HEADER.itemsize} bytes (a MonitorStats header)")
    data = b"".join(blobs)
    starts = np.cumsum(lengths) - lengths
    head = _window(data, np.dtype(f"V{HEADER.itemsize}"))[starts].view(HEADER)
    if (head["version"] != VERSION).any() and (expanded := expand(blobs)) is not None:
        return group_sums(expanded, g, n_groups, n_bins=n_bins, closed=closed, target=target)
    n_classes, binary = _check_headers(head, lengths)
    side = target or ("positive_class" if binary else "top_label")
    if side not in ("top_label", "positive_class") or (side == "positive_class" and n_classes != 2):
        raise InputError("target", f'must be "top_label" or "positive_class" (K = 2 only); got {side!r}')
    for column, name in enumerate(SUM_COLUMNS):
        values = head[name] if name in _SUMS else head[name].astype(np.float64)
        table[:, column] = np.bincount(g, weights=values, minlength=n_groups)
    cells = _histogram_records(data, head, starts, g, n_classes, side == "positive_class")
    bin_of_cell = coarse_index(np.arange(N_CELLS), n_bins, closed)  # a lookup table, gathered once per record
    index = cells["group"] * n_bins + bin_of_cell[cells["cell"]]
    size = n_groups * n_bins
    hist = table[:, width:].reshape(n_groups, len(HIST_BLOCKS), n_bins)
    for block, name in enumerate(HIST_BLOCKS):
        values = cells.get(name, cells["count"])  # no weight: the row counts are the weights
        hist[:, block, :] = np.bincount(index, weights=values, minlength=size).reshape(n_groups, n_bins)
    return GroupSums(table, n_classes, binary)


def sums_metrics(
    table: FloatArray, n_bins: int, *, n_classes: int | None, binary: bool, base: float = math.e
) -> SeriesMetrics:
    """Metrics of each row of a :class:`GroupSums` table (rows may be sums of other tables' rows).

    Examples
    --------
    >>> from service.core import Distribution, MonitorStats
    >>> a = MonitorStats.summarise(Distribution.from_probs(np.array([0.9, 0.2])), [1, 1]).to_bytes()
    >>> s = group_sums([a, a], [0, 1], 2)
    >>> sums_metrics(s.table.sum(axis=0, keepdims=True), 15, n_classes=2, binary=True).n.tolist()
    [4]
    """
    n_groups = table.shape[0]
    width = len(SUM_COLUMNS)
    if table.shape != (n_groups, width + len(HIST_BLOCKS) * n_bins):
        raise InputError("table", f"must have {width} + 4 × {n_bins} columns; got shape {table.shape}")
    if n_classes is None:
        return _metrics({}, {}, n_groups, None, base)
    sums = {name: table[:, column] for column, name in enumerate(SUM_COLUMNS)}
    blocks = table[:, width:].reshape(n_groups, len(HIST_BLOCKS), n_bins)
    hist = {name: blocks[:, block, :] for block, name in enumerate(HIST_BLOCKS)}
    return _metrics(hist, sums, n_groups, brier_factor("auto", n_classes, binary=binary), base)


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


__all__ = [
    "HIST_BLOCKS",
    "SUM_COLUMNS",
    "GroupSums",
    "SeriesMetrics",
    "group_sums",
    "series_metrics",
    "sums_metrics",
]
