"""Ingestion: a validated batch → statistics per (bucket, segment), pending rows, reservoir rows.

:func:`ingest` is the way rows enter a monitor (the observations and events routes): it
checks timestamps, ids and the segment, summarises the rows of each bucket with
:meth:`MonitorStats.summarise`, and hands everything to ``store.write_batch`` — one transaction,
committed before it returns, so a caller that answers 2xx afterwards answers for
durable data. A small batch that needs nothing but its statistics is written as it came
instead and summarised later with others (:mod:`.settle`).

Rows are bucketed by ``floor(time / bucket_s) * bucket_s``. A row with a label (≥ 0) counts on
both sides of its bucket's statistics and joins the reservoir; a row without one (−1, or no
labels sent) counts on the prediction side only, and if it has an id it waits in the pending
store, its logits or probabilities kept as raw little-endian bytes, until
:func:`fold_labels` folds its label into the same bucket.

When the monitor has a fitted temperature, each bucket also gets a prediction-side row of the
batch under that temperature, in the segment ``segment + TEMPERED``: its mean confidence is the
expected accuracy after temperature scaling, as fitted when the batch arrived.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service import clock
from service.core import Distribution, MonitorStats
from service.core._typing import IntArray
from service.store import (
    IdempotencyKey,
    MonitorConfig,
    MonitorStore,
    PendingRow,
    ReservoirBatch,
    StatsRow,
)

from .batch_checks import bucket_starts, check_ids, check_segment, check_times
from .batch_rows import pending_rows, reservoir_rows
from .finite_rows import check_finite_losses

__all__ = [
    "TEMPERED",
    "IngestCounts",
    "PreparedBatch",
    "ingest",
    "prepare_batch",
    "tempered",
    "write_prepared",
    "write_prepared_soon",
]

#: Appended to a segment's name for its temperature-scaled prediction-side rows.
TEMPERED = "\x1ftemperature"


@dataclass(slots=True)
class IngestCounts:
    """What one batch did: rows, labelled rows, rows left pending, ids already pending, buckets.

    Not frozen (nor :class:`PreparedBatch`): one is made per write, and a frozen dataclass's
    ``__init__`` takes three times the steps.
    """

    rows: int
    labelled: int
    pending: int
    duplicate_ids: int
    buckets: int
    #: ``(segment, statistics)`` of each bucket written (not the tempered rows): for the counters.
    stats: tuple[tuple[str, MonitorStats], ...] = ()


def _subset(dist: Distribution, rows: IntArray | None) -> Distribution:
    if rows is None:
        return dist
    if dist.logits is not None:
        return Distribution.from_logits(dist.logits[rows], validate=False)
    assert dist.sent_probs is not None
    return Distribution.from_probs(dist.sent_probs[rows], eps=dist.eps, validate=False)


def tempered(dist: Distribution, temperature: float) -> Distribution:
    """The batch after temperature scaling: ``softmax(z / T)`` (probabilities: ``z = log max(p, eps)``)."""
    if dist.logits is not None:
        return Distribution.from_logits(dist.logits / temperature, validate=False)
    log_p = dist.log_probs
    z = log_p[:, 1] - log_p[:, 0] if dist.binary else log_p
    return Distribution.from_logits(z / temperature, validate=False)


@dataclass(slots=True)
class PreparedBatch:
    """A batch made ready for one store transaction under `config` (:func:`prepare_batch`)."""

    config: MonitorConfig
    rows: int
    labelled: int
    buckets: int
    stats: list[StatsRow]
    pending: list[PendingRow]
    reservoir: ReservoirBatch | tuple[()]
    summaries: tuple[tuple[str, MonitorStats], ...]
    #: Written as a raw stats row, summarised later (:mod:`.settle`).
    raw: bool = False


def ingest(
    store: MonitorStore,
    config: MonitorConfig,
    dist: Distribution,
    labels: IntArray | None,
    ids: Sequence[object] | None,
    times: object,
    segment: str,
    *,
    now: float | None = None,
    key: IdempotencyKey | None = None,
) -> IngestCounts:
    """Record a batch in one store transaction and return what it did.

    Parameters
    ----------
    store, config
        The store and the monitor's configuration (K and binary already checked against `dist`).
    dist : Distribution
        The batch's validated predictions.
    labels : int array or None
        Class indices, −1 where the label is not known yet, one per row: validated
        (``check_labels(..., ignore_index=-1)``), as the routes do while parsing.
    ids : sequence of str or None, or None
        Row ids for late labels (a null id: none for that row).
    times : float array or None
        Epoch seconds of each prediction; None: the server clock (`now`).
    segment : str
        Checked by :func:`check_segment`.
    key : IdempotencyKey, optional
        Stored with the batch; its ``answer`` gets the batch's `IngestCounts`. A key used before
        raises the store's `Replayed` or `KeyReused` and nothing is written.
    """
    return write_prepared(store, prepare_batch(config, dist, labels, ids, times, segment, now=now), key=key)


def prepare_batch(
    config: MonitorConfig,
    dist: Distribution,
    labels: IntArray | None,
    ids: Sequence[object] | None,
    times: object,
    segment: str,
    *,
    now: float | None = None,
) -> PreparedBatch:
    """The checks and the statistics of :func:`ingest`, without the store (its parameters)."""
    now = clock.now() if now is None else now
    n = dist.n_samples
    t = check_times(times, n, config, now)
    row_ids = check_ids(ids, n)
    segment = check_segment(segment)
    if times is None:  # every row now: one bucket, floor(now / bucket_s) · bucket_s as bucket_starts
        unique, order, bounds = [math.floor(now / config.bucket_s) * config.bucket_s], None, None
    elif (buckets := bucket_starts(t, config.bucket_s))[0] == buckets[-1] and (buckets == buckets[0]).all():
        unique, order, bounds = buckets[:1].tolist(), None, None  # the usual batch: one bucket
    else:
        starts, inverse = np.unique(buckets, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(starts.size + 1))
        unique = starts.tolist()
    scaled = None
    if config.temperature is not None and math.isfinite(config.temperature) and config.temperature > 0:
        scaled = tempered(dist, config.temperature)
    stats: list[StatsRow] = []
    summaries: list[tuple[str, MonitorStats]] = []
    for b, start in enumerate(unique):  # one summary per bucket, never per row
        rows = None if order is None or bounds is None else order[bounds[b] : bounds[b + 1]]
        y = None if labels is None else (labels if rows is None else labels[rows])
        summary = MonitorStats.summarise(_subset(dist, rows), y, validate=False)  # (labels: checked)
        summaries.append((segment, summary))
        stats.append((start, segment, summary.to_bytes()))
        if scaled is not None:
            scaled_summary = MonitorStats.summarise(_subset(scaled, rows), None, part="predictions")
            stats.append((start, segment + TEMPERED, scaled_summary.to_bytes()))
    check_finite_losses(dist, labels, (summary for _, summary in summaries))
    labelled = np.zeros(n, bool) if labels is None else labels >= 0
    pending = pending_rows(dist, t, row_ids, labelled, segment)
    reservoir = reservoir_rows(dist, t, labels, labelled, segment, config.reservoir_size)
    n_labelled = int(np.count_nonzero(labelled))
    return PreparedBatch(config, n, n_labelled, len(unique), stats, pending, reservoir, tuple(summaries))


def write_prepared(
    store: MonitorStore,
    batch: PreparedBatch,
    *,
    key: IdempotencyKey | None = None,
    expect: bool = False,
    wait: bool = True,
) -> IngestCounts:
    """Write a prepared batch in one store transaction (committed on return); what it did.

    `expect`: the store checks, inside the transaction, that the monitor's config is still the
    one the batch was prepared with (else `ConfigChanged`, nothing written). `wait`: False to
    get `WouldBlock` rather than wait for the store's write lock (``store.write_batch``).
    """
    written = _Written(batch, key)
    duplicates = store.write_batch(
        batch.config.name,
        batch.stats,
        batch.pending,
        batch.reservoir,
        key=written.key,
        expect=batch.config if expect else None,
        wait=wait,
    )
    return written.counts(duplicates)


async def write_prepared_soon(
    store: MonitorStore, batch: PreparedBatch, *, key: IdempotencyKey | None = None, expect: bool = False
) -> IngestCounts:
    """:func:`write_prepared` from an event loop: committed with the other writes of its turn.

    `WouldBlock` (nothing written) where ``write_prepared(wait=False)`` would raise it
    (``store.write_batch_soon``).
    """
    written = _Written(batch, key)
    duplicates = await store.write_batch_soon(
        batch.config.name,
        batch.stats,
        batch.pending,
        batch.reservoir,
        key=written.key,
        expect=batch.config if expect else None,
    )
    return written.counts(duplicates)


class _Written:
    """A prepared batch's key as the store keeps it (its answer made from the batch's counts)."""

    def __init__(self, batch: PreparedBatch, key: IdempotencyKey | None) -> None:
        self.batch = batch
        self.key = None
        if key is not None:
            self.key = IdempotencyKey(key.key, key.fingerprint, lambda d: key.answer(self.counts(d)))

    def counts(self, duplicates: int) -> IngestCounts:
        """What the batch did, `duplicates` of its pending ids being pending already."""
        batch = self.batch
        pending = len(batch.pending) - duplicates
        return IngestCounts(batch.rows, batch.labelled, pending, duplicates, batch.buckets, batch.summaries)
