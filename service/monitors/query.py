"""Queries over a monitor's stored statistics: windows, time series, reservoir fits.

A point of a series covers the buckets whose start lies in ``[point, point + step)``. Series and
a window's reliability bins add up each row's sums (:mod:`.sums_cache`: every blob decoded once per
worker, keyed by its bytes); drift merges a window's rows with :func:`service.core.merge_stats`
(it needs the class counts). Either way a window's metrics are those of its rows at once.
"""

import math
from collections import defaultdict
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.core import Distribution, InputError, MonitorStats, merge_stats
from service.core._typing import FloatArray, IntArray
from service.core.calibration import Reliability, wilson_interval
from service.core.cancel import Cancelled
from service.core.monitoring.series import (
    HIST_BLOCKS,
    SUM_COLUMNS,
    SeriesMetrics,
    group_sums,
    sums_metrics,
)
from service.store import LabelledRow, MonitorConfig, MonitorStore, StatsRow, StoreUnavailable

from .ingest import TEMPERED
from .late_labels import rows_distribution
from .sums_cache import DIGEST_BINNING, Sums, SumsCache, digest_rows


def _settle(store: MonitorStore, name: str) -> None:
    """Settle the monitor's raw rows before a read (:mod:`.settle`).

    One settle of a few hundred small writes costs a tenth of reading each as its own summary;
    a store that cannot write now leaves them raw (the read's answer is the same).
    """
    with suppress(StoreUnavailable, Cancelled):
        store.settle(name)


@dataclass(frozen=True)
class Point:
    """One step of a series: its start, the merged statistics, and those under the temperature."""

    start: int
    stats: MonitorStats | None
    tempered: MonitorStats | None


def _split(rows: Sequence[StatsRow], segment: str | None) -> tuple[list[StatsRow], list[StatsRow]]:
    """The plain rows and the temperature-scaled rows of `segment` (None: every segment)."""
    plain: list[StatsRow] = []
    scaled: list[StatsRow] = []
    for row in rows:
        name = row[1]
        if name.endswith(TEMPERED):
            if segment is None or name == segment + TEMPERED:
                scaled.append(row)
        elif segment is None or name == segment:
            plain.append(row)
    return plain, scaled


def _merged(rows: Sequence[StatsRow]) -> MonitorStats | None:
    return merge_stats([row[2] for row in rows]) if rows else None


def window(store: MonitorStore, config: MonitorConfig, start: int, end: int, segment: str | None) -> Point:
    """The statistics of every bucket starting in ``[start, end)``."""
    _settle(store, config.name)
    plain, scaled = _split(store.read_stats(config.name, start, end), segment)
    return Point(start, _merged(plain), _merged(scaled))


@dataclass(frozen=True)
class Series:
    """A time series: point starts, their metrics, and the mean confidence after the temperature."""

    starts: list[int]
    metrics: SeriesMetrics
    tempered_confidence: FloatArray  # NaN where no batch of the point was recorded under a temperature


def series(
    store: MonitorStore,
    config: MonitorConfig,
    start: int,
    end: int,
    step: int,
    segment: str | None,
    *,
    n_bins: int = 15,
    closed: Literal["right", "left"] = "right",
    base: float = math.e,
    cache: SumsCache | None = None,
) -> Series:
    """One point per `step` from `start` to `end` (the last may be shorter), all read at once.

    Each hour that lies inside one point is read as its rollup plus its rows not rolled up yet
    (:meth:`MonitorStore.read_hours`), the rest as stats rows. Each row becomes its row of sums
    (:class:`SumsCache`: decoded once, then looked up by its bytes), and the rows of each point are
    added up in one ``reduceat``.
    """
    digested = (n_bins, closed, None) == DIGEST_BINNING
    _settle(store, config.name)
    hours = store.read_hours(config.name, start, end, step, digests=digested)  # whole hours: rollups
    rows = store.read_stats(config.name, start, end) if hours is None else hours.rows
    plain, scaled = _split(rows, segment)
    digests = _split(hours.digests, segment) if hours is not None else ([], [])
    n_points = -(-(end - start) // step)
    cache = SumsCache(0) if cache is None else cache
    metrics = _points(cache, plain, start, step, n_points, n_bins, closed, base, digests[0])
    tempered = _points(cache, scaled, start, step, n_points, n_bins, closed, base, digests[1]).mean_confidence
    return Series([start + i * step for i in range(n_points)], metrics, tempered)


def _table(
    cache: SumsCache,
    rows: list[StatsRow],
    start: int,
    step: int,
    n_points: int,
    n_bins: int,
    closed: Literal["right", "left"],
) -> tuple[FloatArray, Sums]:
    """The :class:`GroupSums` table of the points: the sums of each point's rows, added in row order.

    Without a cache the rows are summed straight into their points (no table per blob).
    """
    blobs = [row[2] for row in rows]
    groups = (np.fromiter((row[0] for row in rows), np.int64, len(rows)) - start) // step
    if cache.max_bytes == 0:
        direct = group_sums(blobs, groups, n_points, n_bins=n_bins, closed=closed)
        return direct.table, Sums(direct.table, direct.n_classes, direct.binary, len(blobs))
    sums = cache.sums(blobs, n_bins=n_bins, closed=closed)
    table = np.zeros((n_points, len(SUM_COLUMNS) + len(HIST_BLOCKS) * n_bins))
    if rows:
        order = np.argsort(groups, kind="stable")  # rows come oldest first: already sorted
        groups = groups[order]
        firsts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])
        table[groups[firsts]] = np.add.reduceat(sums.rows[order], firsts, axis=0)
    return table, sums


def _points(
    cache: SumsCache,
    rows: list[StatsRow],
    start: int,
    step: int,
    n_points: int,
    n_bins: int,
    closed: Literal["right", "left"],
    base: float,
    digests: list[StatsRow] = [],  # noqa: B006 (never changed)
) -> SeriesMetrics:
    """The metrics of each point (`digests`: rollups' stored sums, added to their points)."""
    table, sums = _table(cache, rows, start, step, n_points, n_bins, closed)
    n_classes, binary = _add_digests(table, sums, digests, start, step, n_bins)
    return sums_metrics(table, n_bins, n_classes=n_classes, binary=binary, base=base)


def _add_digests(
    table: FloatArray, sums: Sums, digests: list[StatsRow], start: int, step: int, n_bins: int
) -> tuple[int | None, bool]:
    """Add rollups' stored sums to their points' rows of `table`; K and binary of all the rows."""
    n_classes, binary = sums.n_classes, sums.binary
    if digests:
        held = digest_rows([row[2] for row in digests], n_bins)
        kinds = np.unique(held[:, -1])
        if n_classes is not None:
            kinds = np.union1d(kinds, [2.0 * n_classes + binary])
        if kinds.size > 1:  # as merge_stats: statistics of one sum must share K and binary
            shown = sorted((int(k) // 2, bool(k % 2)) for k in kinds)
            raise InputError("stats", f"must all share K and binary to merge; got {shown}")
        n_classes, binary = int(kinds[0]) // 2, bool(kinds[0] % 2)
        groups = (np.fromiter((row[0] for row in digests), np.int64, len(digests)) - start) // step
        np.add.at(table, groups, held[:, :-1])
    return n_classes, binary


@dataclass(frozen=True)
class WindowSummary:
    """A window's metrics (one point) and reliability bins, from the sums of its rows."""

    metrics: SeriesMetrics
    reliability: Reliability


def window_summary(
    store: MonitorStore,
    config: MonitorConfig,
    start: int,
    end: int,
    segment: str | None,
    *,
    n_bins: int = 15,
    closed: Literal["right", "left"] = "right",
    cache: SumsCache | None = None,
) -> WindowSummary:
    """Metrics and reliability bins of every bucket starting in ``[start, end)`` (read like a series).

    The bins are :meth:`MonitorStats.reliability`'s: ``count`` is ``Σ w``, means and 95 % Wilson
    intervals per equal-width bin (NaN where empty), of the monitor's default target.
    """
    digested = (n_bins, closed, None) == DIGEST_BINNING
    _settle(store, config.name)
    hours = store.read_hours(config.name, start, end, end - start, digests=digested)  # (as a series)
    plain, _ = _split(store.read_stats(config.name, start, end) if hours is None else hours.rows, segment)
    digests, _ = _split(hours.digests, segment) if hours is not None else ([], [])
    cache = SumsCache(0) if cache is None else cache
    table, sums = _table(cache, plain, start, end - start, 1, n_bins, closed)
    n_classes, binary = _add_digests(table, sums, digests, start, end - start, n_bins)
    metrics = sums_metrics(table, n_bins, n_classes=n_classes, binary=binary)
    _, weight, conf, hits = table[0, len(SUM_COLUMNS) :].reshape(len(HIST_BLOCKS), n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence, accuracy = conf / weight, hits / weight
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    low, high = wilson_interval(hits, weight, 0.95)
    return WindowSummary(
        metrics, Reliability(None, edges[:-1], edges[1:], weight, confidence, accuracy, low, high, weight)
    )


@dataclass(frozen=True)
class Totals:
    """Everything a monitor holds (every segment, not the temperature-scaled rows), as one point."""

    metrics: SeriesMetrics
    first_bucket: int | None
    last_bucket: int | None


def totals(store: MonitorStore, config: MonitorConfig, *, cache: SumsCache | None = None) -> Totals:
    """The monitor's totals: its rows' cached sums added up (as a series point)."""
    _settle(store, config.name)
    plain, _ = _split(store.read_stats(config.name, -(2**62), 2**62), None)
    starts = [row[0] for row in plain]
    first, last = (min(starts), max(starts)) if starts else (0, 0)
    cache = SumsCache(0) if cache is None else cache
    table, sums = _table(cache, plain, first, last - first + 1, 1, 15, "right")
    metrics = sums_metrics(table, 15, n_classes=sums.n_classes, binary=sums.binary)
    return Totals(metrics, first if starts else None, last if starts else None)


def reservoir_logits(rows: Sequence[LabelledRow], config: MonitorConfig) -> tuple[FloatArray, IntArray]:
    """Logits (probabilities: ``log max(p, eps)``; binary: the positive-class log-odds) and labels.

    ``softmax(z / T)`` of these is the temperature-scaled prediction of each row, as
    :func:`service.core.fit_temperature` expects.
    """
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[(row.kind, row.dtype)].append(i)
    width = () if config.binary else (config.n_classes,)
    z = np.empty((len(rows), *width))
    for members in groups.values():
        z[members] = _logits(rows_distribution([rows[i] for i in members], config))
    return z, np.array([row.label for row in rows], np.int64)


def _logits(dist: Distribution) -> FloatArray:
    if dist.logits is not None:
        return dist.logits.astype(np.float64)
    log_p = dist.log_probs.astype(np.float64)
    return log_p[:, 1] - log_p[:, 0] if dist.binary else log_p
