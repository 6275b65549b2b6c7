"""Ingestion: a validated batch → statistics per (bucket, segment), pending rows, reservoir rows.

:func:`ingest` is the one way rows enter a monitor (the observations and events routes): it
checks timestamps, ids and the segment, summarises the rows of each bucket with
:meth:`MonitorStats.summarise`, and hands everything to ``store.write_batch`` — one transaction,
committed before it returns, so a caller that answers 2xx afterwards answers for
durable data.

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
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from service.core import Distribution, InputError, MonitorStats, dtype_name
from service.core._typing import FloatArray, IntArray
from service.store import (
    Fold,
    IdempotencyKey,
    LabelledRow,
    MonitorConfig,
    MonitorStore,
    PendingRow,
    ReservoirBatch,
    StatsRow,
)

#: How far ahead of the server's clock a timestamp may lie, in seconds.
MAX_FUTURE_S = 300.0
#: Appended to a segment's name for its temperature-scaled prediction-side rows.
TEMPERED = "\x1ftemperature"
MAX_SEGMENT_CHARS = 64
MAX_ID_CHARS = 128


@dataclass(frozen=True)
class IngestCounts:
    """What one batch did: rows, labelled rows, rows left pending, ids already pending, buckets."""

    rows: int
    labelled: int
    pending: int
    duplicate_ids: int
    buckets: int
    #: ``(segment, statistics)`` of each bucket written (not the tempered rows): for the counters.
    stats: tuple[tuple[str, MonitorStats], ...] = ()


def check_segment(segment: object) -> str:
    """`segment` as a string: printable, at most 64 characters ("" is the default segment)."""
    if segment is None:
        return ""
    if not isinstance(segment, str):
        raise InputError("segment", f"must be a string; got {type(segment).__name__}")
    if len(segment) > MAX_SEGMENT_CHARS or not segment.isprintable():
        raise InputError("segment", f"must be printable and at most {MAX_SEGMENT_CHARS} characters")
    return segment


def bucket_starts(times: FloatArray, bucket_s: int) -> IntArray:
    """The start (integer epoch seconds) of each time's bucket."""
    return np.floor(np.asarray(times, np.float64) / bucket_s).astype(np.int64) * bucket_s


def _check_times(times: object, n: int, config: MonitorConfig, now: float) -> FloatArray:
    if times is None:
        return np.full(n, now)
    t = np.asarray(times)
    if t.ndim != 1 or t.shape[0] != n:
        raise InputError("timestamps", f"must hold one epoch time per row ({n}); got shape {t.shape}")
    if t.dtype.kind not in "fiu":
        raise InputError("timestamps", f"must hold numbers (epoch seconds); got {t.dtype}")
    t = t.astype(np.float64)
    low, high = now - config.retention_s, now + MAX_FUTURE_S
    bad = ~np.isfinite(t) | (t < low) | (t > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            "timestamps",
            f"must lie within the retention ({config.retention_s} s back) and at most "
            f"{MAX_FUTURE_S:g} s ahead of the server clock, [{low:.3f}, {high:.3f}]; got {t[i]}",
            index=(i,),
        )
    return t


def _check_ids(ids: Sequence[object] | None, n: int) -> list[str | None] | None:
    if ids is None:
        return None
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, list | tuple) or len(ids) != n:
        got = len(ids) if isinstance(ids, list | tuple) else type(ids).__name__
        raise InputError("ids", f"must hold one id (string or null) per row ({n}); got {got}")
    for i, value in enumerate(ids):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS):
            raise InputError("ids", f"must be null or a string of 1 to {MAX_ID_CHARS} characters", index=(i,))
    return list(ids)


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


def _raw_rows(dist: Distribution, rows: IntArray) -> tuple[str, str, list[bytes]]:
    """Kind, dtype and the little-endian bytes of each of `rows` (its logits or probabilities)."""
    kind = "logits" if dist.logits is not None else "probs"
    source = dist.logits if dist.logits is not None else dist.sent_probs
    assert source is not None
    picked = np.ascontiguousarray(source[rows], dtype=source.dtype.newbyteorder("<"))
    data = picked.tobytes()
    step = picked.itemsize * (1 if picked.ndim == 1 else picked.shape[1])
    return kind, dtype_name(source.dtype), [data[i * step : (i + 1) * step] for i in range(rows.size)]


@dataclass(frozen=True)
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
    now = time.time() if now is None else now
    n = dist.n_samples
    t = _check_times(times, n, config, now)
    row_ids = _check_ids(ids, n)
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
    labelled = np.zeros(n, bool) if labels is None else labels >= 0
    pending = _pending_rows(dist, t, row_ids, labelled, segment)
    reservoir = _reservoir_rows(dist, t, labels, labelled, segment, config.reservoir_size)
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


def _pending_rows(
    dist: Distribution, t: FloatArray, ids: list[str | None] | None, labelled: np.ndarray, segment: str
) -> list[PendingRow]:
    if ids is None:
        return []
    has_id = np.fromiter((i is not None for i in ids), bool, len(ids))
    rows = np.flatnonzero(has_id & ~labelled)
    if rows.size == 0:
        return []
    kind, dtype, raw = _raw_rows(dist, rows)
    return [
        PendingRow(ids[i], float(t[i]), segment, kind, dtype, data)  # type: ignore[arg-type]
        for i, data in zip(rows.tolist(), raw, strict=True)
    ]


_KEYS = threading.local()


def sample_keys(n: int) -> npt.NDArray[np.int64]:
    """`n` bottom-k sample keys, iid uniform over every int64.

    From a PCG64 generator of the calling thread, seeded from the OS once per thread and process
    (a forked child seeds its own): ~20 µs for 10,000 keys, where ``os.urandom`` took ~190.
    """
    held = getattr(_KEYS, "generator", None)
    if held is None or held[0] != os.getpid():
        held = (os.getpid(), np.random.PCG64(int.from_bytes(os.urandom(16), "little")))
        _KEYS.generator = held
    return held[1].random_raw(n).view(np.int64)


def _reservoir_rows(
    dist: Distribution, t: FloatArray, labels: IntArray | None, labelled: np.ndarray, segment: str, size: int
) -> ReservoirBatch | tuple[()]:
    """The batch's labelled rows that may enter a bottom-`size` reservoir, with their sample keys.

    Keys are iid uniform 64-bit integers; a row that is not among the `size` smallest keys of its
    own batch cannot be among the `size` smallest of all rows, so only those are sent. Their
    logits or probabilities are sent as the batch's whole array and the rows' indices into it:
    the store copies only the rows it keeps.
    """
    if labels is None or size <= 0:
        return ()
    rows = labelled.nonzero()[0]
    if rows.size == 0:
        return ()
    keys = sample_keys(rows.size)
    if rows.size > size:
        keep = np.sort(np.argpartition(keys, size - 1)[:size])
        rows, keys = rows[keep], keys[keep]
    kind = "logits" if dist.logits is not None else "probs"
    source = dist.logits if dist.logits is not None else dist.sent_probs
    assert source is not None
    whole = np.ascontiguousarray(source, dtype=source.dtype.newbyteorder("<"))  # (no copy when it is)
    payload = whole.reshape(whole.shape[0], -1).view(np.uint8)
    every = rows.size == t.shape[0]  # (the usual batch: every row labelled, nothing to gather)
    return ReservoirBatch(
        segment,
        kind,
        dtype_name(source.dtype),
        (t if every else t[rows]).astype(np.float64, copy=False),
        (labels if every else labels[rows]).astype(np.int64, copy=False),
        keys,
        payload,
        None if every else rows,
    )


def rows_distribution(rows: Sequence[PendingRow | LabelledRow], config: MonitorConfig) -> Distribution:
    """The predictions of stored rows that share one kind and dtype, as a Distribution."""
    dtype = np.dtype(rows[0].dtype).newbyteorder("<")
    data = np.frombuffer(b"".join(row.row for row in rows), dtype).astype(dtype.newbyteorder("="))
    values = data if config.binary else data.reshape(len(rows), config.n_classes)
    if rows[0].kind == "logits":
        return Distribution.from_logits(values, validate=False)
    return Distribution.from_probs(values, validate=False)


def fold_labels(config: MonitorConfig, sink: list[tuple[str, MonitorStats]] | None = None) -> Fold:
    """The ``fold`` for ``store.join_labels``: labelled-side statistics in each prediction's bucket.

    `sink` receives the ``(segment, statistics)`` of the last call (for the counters).
    """

    def fold(rows: list[PendingRow], labels: list[int]) -> list[StatsRow]:
        if sink is not None:
            sink.clear()
        groups: dict[tuple[int, str, str, str], list[int]] = {}
        starts = bucket_starts(np.array([row.time for row in rows]), config.bucket_s).tolist()
        for i, row in enumerate(rows):
            groups.setdefault((starts[i], row.segment, row.kind, row.dtype), []).append(i)
        y = np.asarray(labels, np.int64)
        out: list[StatsRow] = []
        for (start, segment, _, _), members in groups.items():
            dist = rows_distribution([rows[i] for i in members], config)
            stats = MonitorStats.summarise(dist, y[members], part="labels")
            if sink is not None:
                sink.append((segment, stats))
            out.append((start, segment, stats.to_bytes()))
        return out

    return fold
