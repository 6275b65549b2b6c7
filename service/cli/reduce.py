"""Partitions of a dataset summarised into :class:`~service.core.MonitorStats`, and their reduction.

A :class:`Summary` holds the statistics of some rows: all of them, and per group (a UTC day or
a segment) with ``--by``. Summaries merge exactly (counts as integers, float sums in float64),
so any grouping of partitions and any merge order give the same counts and sums equal to
rounding. :func:`summarise_packed` / :func:`merge_packed` work on the bytes form
(:meth:`MonitorStats.to_bytes`), which is what Dask ships between workers.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from service.core import (
    Distribution,
    InputError,
    MonitorStats,
    check_logits,
    check_probabilities,
    merge_stats,
)
from service.core.distribution import EpsPolicy

from .datasets import Batch, Columns, Partition, check_values, read

By = Literal["day", "segment"]
#: The bytes form of a :class:`Summary`: rows, total statistics (None: no rows), per-group statistics.
Packed = tuple[int, bytes | None, dict[Any, bytes]]


@dataclass(frozen=True)
class Job:
    """What every partition is read and summarised with (picklable: Dask ships it to workers)."""

    columns: Columns
    n_classes: int
    binary: bool
    eps: EpsPolicy = "auto"
    batch_size: int = 65_536
    by: By | None = None


@dataclass(frozen=True)
class Summary:
    """Statistics of some rows: all of them (`total`) and per group."""

    rows: int = 0
    total: MonitorStats | None = None
    groups: dict[Any, MonitorStats] = field(default_factory=dict)

    def pack(self) -> Packed:
        """The bytes form."""
        total = None if self.total is None else self.total.to_bytes()
        return self.rows, total, {key: stats.to_bytes() for key, stats in self.groups.items()}

    @classmethod
    def unpack(cls, packed: Packed) -> "Summary":
        """From :meth:`pack` output."""
        rows, total, groups = packed
        stats = None if total is None else MonitorStats.from_bytes(total)
        return cls(rows, stats, {key: MonitorStats.from_bytes(blob) for key, blob in groups.items()})


def merge(summaries: Iterable[Summary]) -> Summary:
    """One summary of every row of `summaries` (one vectorised merge per key)."""
    items = list(summaries)
    totals = [s.total for s in items if s.total is not None]
    keyed: dict[Any, list[MonitorStats]] = {}
    for summary in items:
        for key, stats in summary.groups.items():
            keyed.setdefault(key, []).append(stats)
    return Summary(
        sum(s.rows for s in items),
        merge_stats(totals) if totals else None,
        {key: merge_stats(stats) for key, stats in keyed.items()},
    )


def merge_packed(*packed: Packed) -> Packed:
    """:func:`merge` on the bytes form (a node of the reduction tree)."""
    rows = sum(p[0] for p in packed)
    totals = [p[1] for p in packed if p[1] is not None]
    keyed: dict[Any, list[bytes]] = {}
    for _, _, groups in packed:
        for key, blob in groups.items():
            keyed.setdefault(key, []).append(blob)
    total = merge_stats(totals).to_bytes() if totals else None
    return rows, total, {key: merge_stats(blobs).to_bytes() for key, blobs in keyed.items()}


def summarise_packed(part: Partition, job: Job) -> Packed:
    """:func:`summarise_partition` in bytes form (a leaf of the reduction tree, run on a worker)."""
    return summarise_partition(part, job).pack()


def summarise_partition(
    part: Partition, job: Job, *, on_rows: Callable[[int], None] | None = None
) -> Summary:
    """Statistics of one partition, read in batches of ``job.batch_size`` rows."""
    running = Summary()
    for batch in read(part, job.columns, n_classes=job.n_classes, batch_size=job.batch_size):
        running = merge([running, _summarise_batch(batch, part, job)])
        if on_rows is not None:
            on_rows(len(batch.labels))
    return running


def reduce_local(
    parts: Iterable[Partition], job: Job, *, on_rows: Callable[[int], None] | None = None
) -> Summary:
    """Every partition summarised and merged in this process, one batch in memory at a time."""
    running = Summary()
    for part in parts:
        running = merge([running, summarise_partition(part, job, on_rows=on_rows)])
    return running


def _summarise_batch(batch: Batch, part: Partition, job: Job) -> Summary:
    return _summarise_rows(batch, part, job)


def _summarise_rows(batch: Batch, part: Partition, job: Job) -> Summary:
    dist = _distribution(batch, part, job)
    weights = batch.weights
    if batch.groups is None:
        return Summary(len(batch.labels), MonitorStats.summarise(dist, batch.labels, sample_weight=weights))
    codes, keys = batch.groups
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes, minlength=len(keys)))
    groups = {}
    for g in np.flatnonzero(np.diff(ends, prepend=0)):  # one summary per group present in the batch
        rows = order[ends[g - 1] if g else 0 : ends[g]]
        sub = _rows(dist, rows, job)
        groups[keys[g]] = MonitorStats.summarise(
            sub, batch.labels[rows], sample_weight=None if weights is None else weights[rows]
        )
    return Summary(len(batch.labels), merge_stats(groups.values()), groups)


def _distribution(batch: Batch, part: Partition, job: Job) -> Distribution:
    """The batch's validated predictions (errors restated with the file, row group and column)."""
    columns = job.columns
    try:
        if columns.kind == "logits":
            return Distribution.from_logits(check_logits(batch.values), validate=False)
        probs = check_probabilities(batch.values)  # the routes' default tolerance for the dtype
        return Distribution.from_probs(probs, eps=job.eps, validate=False)
    except InputError as exc:
        column = columns.prediction
        if columns.classes and len(exc.index) > 1:
            column = columns.classes[exc.index[1]]
        raise check_values(exc, part, column or columns.kind, batch.offset) from None


def _rows(dist: Distribution, rows: np.ndarray, job: Job) -> Distribution:
    if dist.logits is not None:
        return Distribution.from_logits(dist.logits[rows], validate=False)
    assert dist.sent_probs is not None
    return Distribution.from_probs(dist.sent_probs[rows], eps=job.eps, validate=False)
