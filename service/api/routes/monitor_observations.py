"""``POST /v1/monitors/{name}/observations``, behind its route in :mod:`.monitors`: read, prepare, write.

A request's batch is prepared once (checks, statistics, reservoir rows; a small batch only
checked, to be stored raw and summarised later: ``service.monitors.settle``) with the process's
cached config and written with that config as the store's ``expect``; it is prepared again only
when the store finds the config changed. A small body (``INLINE_BYTES``) is written on the event
loop when the store allows it (:func:`~.monitor_writes.inline_store`). If a thread of this
process holds the write lock (`LockHeld`), the request waits on the loop until it is free and
tries again there: a write sent to a thread whenever the lock was busy held it in turn, so under
steady load most small writes took the thread's way, at about twice the CPU. Only a write the
store sends to a thread itself (another process holds SQLite's lock, or it is the write that
checkpoints the WAL) goes to the pool, with the batch already prepared.
"""

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from service import core
from service.api.formats.answers import Document
from service.api.formats.arrays import ArrayReader
from service.api.formats.inputs import Body, Prediction, read_prediction
from service.api.formats.json_keys import check_unique_keys
from service.api.formats.payload import parse_json_object
from service.api.schemas.common import ProbabilityOptions
from service.core.cancel import current_deadline
from service.monitors import IngestCounts, prepare_batch, write_prepared, write_prepared_soon
from service.monitors.batch_checks import check_segment
from service.monitors.configs import ConfigCache
from service.monitors.counters import MonitorCounters
from service.monitors.ingest import PreparedBatch
from service.monitors.settle import append_raw_soon, prepare_raw
from service.store import (
    ConfigChanged,
    LockHeld,
    MonitorConfig,
    MonitorNotFound,
    MonitorStore,
    StoreUnavailable,
    WouldBlock,
    same_config,
)

from . import json_response
from .monitor_plain_write import PLAIN_FIELDS, plain_arrays, plain_write
from .monitor_writes import MonitorWrite, in_pool, inline_store, read_write

ARRAY_FIELDS = ("logits", "probs", "labels", "ids", "timestamps")
#: Longest single wait on the loop for the write lock before trying again (a missed wake-up costs no more).
LOCK_WAIT_S = 0.05


class ObservationOptions(BaseModel):
    """The small fields of an observations body."""

    model_config = ConfigDict(extra="forbid")

    segment: Annotated[str, Field(max_length=64)] | None = None
    tolerance: Annotated[float, Field(gt=0, le=1)] | None = None
    normalize: bool = False


#: The options of a plain body (none sent), as the general reader validates them.
PLAIN_OPTIONS = ObservationOptions()


async def observations(request: Request, name: str, idempotency_key: str | None) -> Response:
    """Read the body and check the key; write the batch on the event loop if it may, else in the pool."""
    if idempotency_key is None:
        answer = await plain_write(request, name)  # a plain small write, in one pass
        if answer is not None:
            return answer
    write = await read_write(request, idempotency_key, "observations")
    recording = Recording(write, name)
    if inline_store(write) is not None:  # a small body, on the event loop (monitor_writes)
        waited_since: float | None = None
        while True:
            try:
                return await recording.record_soon()
            except LockHeld as held:  # a thread of this process writes: wait for it here
                waited_since = time.monotonic() if waited_since is None else waited_since
                if not await _freed(held, waited_since):
                    break
            except WouldBlock:  # another process writes, or this write checkpoints: in a thread
                break
    return await in_pool(request, lambda: recording.record(wait=True))


async def _freed(held: LockHeld, since: float) -> bool:
    """Wait on the loop until `held`'s lock is free (at most ``LOCK_WAIT_S``).

    False, without waiting, past the request's deadline (the pool's write then answers
    Cancelled, as any late write) or once the write has waited the store's busy timeout here (it
    waits in the pool then, and gets the store's 503 if the lock is still held past it there).
    """
    deadline = current_deadline()
    now = time.monotonic()
    if (deadline is not None and now >= deadline) or now - since >= held.timeout_s:
        return False
    await held.freed(LOCK_WAIT_S if deadline is None else min(LOCK_WAIT_S, deadline - now))
    return True


@dataclass
class _Prepared:
    """A batch prepared under `config`, with what its answer says."""

    config: MonitorConfig
    batch: PreparedBatch
    segment: str

    def result(self, counts: IngestCounts) -> Document:
        """The answer (an ObservationsResult, printed by orjson)."""
        return {
            "monitor": self.config.name,
            "n": counts.rows,
            "n_labelled": counts.labelled,
            "n_pending": counts.pending,
            "n_duplicate_ids": counts.duplicate_ids,
            "buckets": counts.buckets,
            "segment": self.segment,
        }


class Recording:
    """One observations request: its batch prepared once per config, written by :meth:`record`."""

    def __init__(self, write: MonitorWrite, name: str) -> None:
        self.write = write
        self.name = name
        self.prepared: _Prepared | None = None

    def record(self, *, wait: bool) -> Response:
        """Write the batch (prepared on the first call) with the process's cached config.

        The batch is prepared again, once, with the stored config when the write finds the
        cached one stale (`ConfigChanged`), or when the cached one made an input error and the
        stored one differs: a stale cache never writes, nor refuses, what the stored config
        would not. ``wait=False``: `WouldBlock` (nothing written) unless the write can start
        now; the prepared batch is kept for the next call.
        """
        store, configs = self._context()
        retried = False
        while True:
            prepared = self._prepared(store, configs)
            key = self.write.key(prepared.result)
            try:
                counts = write_prepared(store, prepared.batch, key=key, expect=True, wait=wait)
            except (ConfigChanged, MonitorNotFound) as error:
                self._changed(store, configs, error, retried)
                retried = True
            else:
                return self._answer(prepared, counts)

    async def record_soon(self) -> Response:
        """:meth:`record` on the event loop, committed with the other small writes of its turn.

        `WouldBlock` or `LockHeld` (nothing written) as ``record(wait=False)``.
        """
        store, configs = self._context()
        retried = False
        while True:
            prepared = self._prepared(store, configs)
            key = self.write.key(prepared.result)
            batch = prepared.batch
            try:
                if key is None and batch.raw and configs.knows_segment(store, batch.config, prepared.segment):
                    counts = await append_raw_soon(store, batch)  # with the other raw rows of this turn
                else:
                    counts = await write_prepared_soon(store, batch, key=key, expect=True)
                    if batch.raw:
                        configs.know_segment(store, batch.config, prepared.segment)
            except (ConfigChanged, MonitorNotFound) as error:
                self._changed(store, configs, error, retried)
                retried = True
            else:
                return self._answer(prepared, counts)

    def _context(self) -> tuple[MonitorStore, ConfigCache]:
        """The store and the process's config cache."""
        return self.write.store(), self.write.app.monitor_configs

    def _prepared(self, store: MonitorStore, configs: ConfigCache) -> _Prepared:
        """The batch, prepared on the first call with the cached config."""
        if self.prepared is None:
            self.prepared = self._prepare_cached(store, configs)
        return self.prepared

    def _changed(
        self, store: MonitorStore, configs: ConfigCache, error: ConfigChanged | MonitorNotFound, retried: bool
    ) -> None:
        """The write found the monitor gone or changed: cache that; prepare again once, else raise."""
        if isinstance(error, MonitorNotFound):
            configs.update(store, self.name, None)
            raise error
        configs.update(store, self.name, error.config)
        if retried:
            raise StoreUnavailable(f"monitor {self.name!r} changed twice during this write; retry") from None
        if error.config is None:
            raise MonitorNotFound(self.name) from None
        self.prepared = self._prepare(error.config)

    def _prepare_cached(self, store: MonitorStore, configs: ConfigCache) -> _Prepared:
        """The batch under the cached config; an input error is checked against the stored config."""
        observed = _read(self.write)  # the body first, then the name
        config, cached = configs.get(store, self.name)
        try:
            return _prepare(observed, config)
        except core.InputError:
            if not cached:
                raise
            fresh = store.get_monitor(self.name)
            configs.update(store, self.name, fresh)
            if fresh is None:
                raise MonitorNotFound(self.name) from None
            if same_config(fresh, config):
                raise
        return self._prepare(fresh)

    def _prepare(self, config: MonitorConfig) -> _Prepared:
        """The batch under `config`, the body parsed again (a first try may have made class names indices)."""
        return _prepare(_read(self.write), config)

    def _answer(self, prepared: _Prepared, counts: IngestCounts) -> Response:
        """Count the written statistics and answer."""
        if prepared.batch.raw:  # counted once settled
            self.write.app.monitors.wake_settler()
        else:
            counters: MonitorCounters = self.write.app.monitor_counters
            counters.add(self.name, counts.stats)
        return json_response(prepared.result(counts))


def _read(write: MonitorWrite) -> tuple[Body, ObservationOptions, Prediction]:
    """The body, its options and its predictions: what needs no monitor.

    A plain body (``{"logits": N×K floats, "labels": N numbers}`` and nothing else, as
    :func:`_plain` finds it) skips the general reader; its arrays, options and predictions are
    the values the general reader gives it, by the same checks.
    """
    fields = None
    if write.raw.kind == "json":
        assert isinstance(write.raw.data, bytearray)  # JSON is always read into a bytearray
        # a plain body's keys are unique (numbers_only: two quotes a key); any other's are checked
        fields = parse_json_object(write.raw.data, unique_keys=False)
        if fields.keys() == PLAIN_FIELDS:
            plain = _plain(write, write.raw.data, fields)
            if plain is not None:
                return plain
        check_unique_keys(write.raw.data, fields)
    body = write.body(fields)
    options = body.options(ObservationOptions, ARRAY_FIELDS)
    probability = _probability_options(options.tolerance, options.normalize)
    return body, options, read_prediction(body, "probs", "logits", probability)


def _prepare(observed: tuple[Body, ObservationOptions, Prediction], config: MonitorConfig) -> _Prepared:
    """Check the batch against `config` and prepare it (statistics, pending and reservoir rows)."""
    body, options, prediction = observed
    name = config.name
    _names_to_indices(body, config)
    dist = prediction.dist
    if dist.binary != config.binary or dist.n_classes != config.n_classes:
        want = "a length-N vector of positive-class values" if config.binary else f"N×{config.n_classes}"
        got = "a length-N vector" if dist.binary else f"N×{dist.n_classes}"
        raise core.InputError(prediction.field, f"must be {want} for monitor {name!r}; got {got}")
    labels = None
    if body.fields.get("labels") is not None:
        labels = core.check_labels(body.array("labels"), config.n_classes, ignore_index=-1)
        core.check_same_length("labels", labels.shape[0], dist.n_samples, other=prediction.field)
    times = body.array("timestamps") if body.fields.get("timestamps") is not None else None
    segment = options.segment or ""
    ids = body.fields.get("ids")
    batch = None
    if times is None and ids is None:  # a small batch is written raw and summarised later (settle)
        batch = prepare_raw(config, dist, labels, check_segment(segment))
    if batch is None:
        batch = prepare_batch(config, dist, labels, ids, times, segment)
    return _Prepared(config, batch, segment)


def _plain(
    write: MonitorWrite, data: bytearray, fields: dict[str, Any]
) -> tuple[Body, ObservationOptions, Prediction] | None:
    """A plain body's (:func:`_read`) arrays, options and predictions; None if it is not one.

    As the general reader gives them (:func:`.monitor_plain_write.plain_arrays`); the labels are
    checked where the general path's are (:func:`_prepare`).
    """
    max_elements = write.app.settings.max_elements
    arrays = plain_arrays(data, fields, max_elements)
    if arrays is None:
        return None
    logits, labels = arrays
    body = Body({"logits": logits, "labels": labels}, ArrayReader(max_elements, may_hold_booleans=False))
    body.rows = max(logits.shape[0], labels.shape[0] if labels.ndim else 0)
    # request.state.body, as the general reader sets it: its rows, for the metrics and the access log
    write.request.scope.setdefault("state", {})["body"] = body
    dist = core.Distribution.from_logits(logits, validate=False)
    tolerance = core.default_tolerance(logits.dtype)
    return body, PLAIN_OPTIONS, Prediction(dist, "logits", core.dtype_name(logits.dtype), tolerance, 0)


@lru_cache(maxsize=64)
def _probability_options(tolerance: float | None, normalize: bool) -> ProbabilityOptions:
    """The probability options of an observations body (read only: shared by requests)."""
    return ProbabilityOptions(tolerance=tolerance, normalize=normalize)


def _names_to_indices(body: Body, config: MonitorConfig) -> None:
    """JSON labels given as class names (null: not known yet) become indices (-1)."""
    value = body.fields.get("labels")
    if not isinstance(value, list) or str not in map(type, value):  # (JSON strings are exactly str)
        return
    body.fields["labels"] = np.array(class_indices(value, config, allow_null=True), np.int64)


def class_indices(values: list[Any], config: MonitorConfig, *, allow_null: bool = False) -> list[int]:
    """Class indices of names (or indices), per the monitor's class_names."""
    index = {n: i for i, n in enumerate(config.class_names or ())}
    out = []
    for i, value in enumerate(values):
        if value is None and allow_null:
            out.append(-1)
        elif isinstance(value, str):
            if value not in index:
                known = "the monitor has no class_names" if not index else f"one of {sorted(index)}"
                raise core.InputError("labels", f"must be a class name ({known}); got {value!r}", index=(i,))
            out.append(index[value])
        elif isinstance(value, int) and not isinstance(value, bool):
            out.append(value)
        else:
            raise core.InputError("labels", f"must be a class index or name; got {value!r}", index=(i,))
    return out
