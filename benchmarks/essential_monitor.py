"""The essential work of a monitor's small write, for ``benchmarks.essential_app``.

What any service that keeps a monitor durably must do for ``{"logits": N×K, "labels": N}``: parse
it (orjson), make the arrays, check them with Xent's checks (finite logits, labels in range, one
per row), store the batch durably and answer — and summarise it later. It stores the batch as
Xent does (:func:`~service.monitors.settle.raw_row`, then the store's ``append_raw_soon``: one
raw row, committed with the other writes of the loop's turn, after waiting on the loop while a
thread holds the store's lock; in a thread when the store cannot write on the loop, a WAL
checkpoint's turn) in Xent's own store, opened and
settled by Xent's `StoreHolder` (its `Settler` summarises the raw rows a moment later, as Xent's
does). Nothing else: no config cache (the monitor's config is read once, when the store opens), no
idempotency keys, no Prometheus counters, no segments but the default one.

The monitor is ``bench`` with K = 10, as ``benchmarks.http.create_monitor`` makes it on Xent,
created in ``XENT_DATA_DIR`` by its ``PUT`` or the first write (with its default segment, by one
row of its own).
"""

import asyncio
from typing import Any

import numpy as np
import orjson

from service import core
from service.monitors.holder import StoreHolder
from service.monitors.ingest import prepare_batch, write_prepared
from service.monitors.settle import raw_row
from service.settings import Settings
from service.store import LockHeld, MonitorConfig, WouldBlock

#: The monitor's name and classes (``benchmarks.http.create_monitor``'s).
NAME, N_CLASSES = "bench", 10


class EssentialMonitor:
    """The monitor ``bench`` in Xent's store, opened by :meth:`open` (or the first :meth:`write`)."""

    def __init__(self) -> None:
        self.holder: StoreHolder | None = None
        self.config: MonitorConfig | None = None

    def open(self) -> None:
        """Open the store in ``XENT_DATA_DIR`` and make the monitor and its default segment (once)."""
        if self.holder is not None:
            return
        self.holder = StoreHolder(Settings())
        store = self.holder.get()
        self.config, _ = store.put_monitor(MonitorConfig(NAME, N_CLASSES, False, None))
        if "" not in store.segments(NAME):  # a raw row is appended to a segment the monitor has
            empty = core.Distribution.from_logits(np.zeros((1, N_CLASSES)))
            write_prepared(store, prepare_batch(self.config, empty, None, None, None, ""))

    def settle_all(self) -> None:
        """Summarise every raw row now (``benchmarks.in_process`` counts the settling)."""
        if self.holder is not None:
            self.holder.settle_now()

    def close(self) -> None:
        """Stop the settler and close the store."""
        if self.holder is not None:
            self.holder.close()
        self.holder = self.config = None

    async def write(self, name: str, fields: dict[str, Any]) -> bytes:
        """Store a plain body's batch durably; its answer (Xent's, field for field)."""
        if name != NAME:
            raise core.InputError("monitor", f"must be {NAME!r}")
        self.open()
        holder, config = self.holder, self.config
        assert holder is not None and holder.current is not None and config is not None
        logits = core.check_logits(np.array(fields["logits"], dtype=np.float64))
        labels = core.check_labels(np.array(fields["labels"]), config.n_classes, ignore_index=-1)
        core.check_same_length("labels", labels.shape[0], logits.shape[0], other="logits")
        if logits.ndim != 2 or logits.shape[1] != config.n_classes:
            raise core.InputError("logits", f"must be N×{config.n_classes}")
        raw = raw_row(config, logits, labels, "")
        if raw is None:
            raise core.InputError("logits", "must be a small batch (stored raw)")
        row, labelled = raw
        store = holder.current
        written = False
        for attempt in range(2):
            try:
                await store.append_raw_soon(NAME, row, expect=config)
                written = True
                break
            except LockHeld as held:  # a thread of this process writes (the settler): wait on the loop
                if attempt == 0:  # (sending it to a thread would hold the lock in turn: LockHeld)
                    await held.freed(held.timeout_s)
            except WouldBlock:  # a WAL checkpoint's turn
                break
        if not written:  # the store cannot write on the loop now: in a thread, as Xent does
            await asyncio.to_thread(store.write_batch, NAME, [row], expect=config)
        holder.wake_settler()
        answer = {
            "monitor": NAME,
            "n": logits.shape[0],
            "n_labelled": labelled,
            "n_pending": 0,
            "n_duplicate_ids": 0,
            "buckets": 1,
            "segment": "",
        }
        return orjson.dumps(answer)
