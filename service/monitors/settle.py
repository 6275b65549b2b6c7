"""Small batches written raw and summarised many at a time.

A small write's statistics cost ~90 NumPy calls however few its rows; summarising a thousand
such batches together costs about what one does. So a batch that needs nothing but its
statistics and its reservoir rows (K-class float32 or float64 logits, at most
`small_batch.MAX_ROWS` rows, no ids, no timestamps, a monitor without a fitted temperature) is
written as one raw stats row (:func:`prepare_raw`): its logits and labels, in the same
transaction and with the same checks as any write, so its 2xx still means durable. Every read
counts a raw row as its statistics (:mod:`service.core.monitoring.raw_batch`). A `Settler` per
worker (on the event loop, or in a thread) then replaces a monitor's raw rows by their statistics,
one summary per (bucket, segment) (:func:`settle_rows`, run by `service.store.settling` in one
transaction), offers their labelled rows to the reservoir and adds them to the Prometheus counters.
"""

import asyncio
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence

import numpy as np

from service import clock
from service.core import Distribution, MonitorStats
from service.core._typing import FloatArray, IntArray
from service.core.monitoring.raw_batch import decode_joined, encode_raw
from service.core.monitoring.small_batch import MAX_ROWS
from service.store import (
    LockHeld,
    MonitorConfig,
    MonitorStore,
    ReservoirBatch,
    StatsRow,
    StoreUnavailable,
    WouldBlock,
)
from service.store.base import Settled
from service.store.settling import SETTLE_ROWS

from .batch_rows import reservoir_rows
from .ingest import IngestCounts, PreparedBatch

logger = logging.getLogger(__name__)

#: Largest |logit| stored raw, per dtype: a row's span (its loss) stays within the dtype's range,
#: and the float64 sum of a settle's losses far from overflow.
RAW_LOGIT_BOUND = {np.dtype(np.float64): 1e300, np.dtype(np.float32): float(np.finfo(np.float32).max) / 4}
#: Seconds a settler waits after a raw write before settling, so that one settle takes many.
SETTLE_DELAY_S = 0.25
#: Seconds between settles when no write of this worker woke it (another worker's or an old raw row).
SETTLE_IDLE_S = 2.0


def prepare_raw(
    config: MonitorConfig,
    dist: Distribution,
    labels: IntArray | None,
    segment: str,
    *,
    now: float | None = None,
) -> PreparedBatch | None:
    """The batch as one raw stats row at the server's clock, or None where it must be summarised now.

    `labels`: checked (``check_labels(..., ignore_index=-1)``), one per row, or None. None is
    returned for binary vectors, probabilities, and where :func:`raw_row` returns None.
    """
    logits = dist.logits
    if logits is None or dist.binary:
        return None
    raw = raw_row(config, logits, labels, segment, now=now)
    if raw is None:
        return None
    row, labelled = raw
    return PreparedBatch(config, logits.shape[0], labelled, 1, [row], [], (), (), raw=True)


def raw_row(
    config: MonitorConfig,
    logits: FloatArray,
    labels: IntArray | None,
    segment: str,
    *,
    now: float | None = None,
) -> tuple[StatsRow, int] | None:
    """N×K `logits`' raw stats row at the server's clock and their labelled rows; None: summarise now.

    `labels` as :func:`prepare_raw` takes them. None for other dtypes, more than `MAX_ROWS`
    rows, logits beyond `RAW_LOGIT_BOUND` (a row may span past the dtype's range), and monitors
    with a temperature (their tempered rows are summarised at the write).
    """
    if (
        logits.dtype not in RAW_LOGIT_BOUND
        or not 0 < logits.shape[0] <= MAX_ROWS
        or (config.temperature is not None and math.isfinite(config.temperature) and config.temperature > 0)
        # (ufunc reductions: ndarray.max's Python wrapper cost more than the 32 rows' scan)
        or not max(np.maximum.reduce(logits, axis=None), -np.minimum.reduce(logits, axis=None))
        <= RAW_LOGIT_BOUND[logits.dtype]
    ):
        return None
    n = logits.shape[0]
    at = clock.now() if now is None else now
    y: IntArray
    if labels is None:
        y, labelled = np.full(n, -1, np.intp), 0
    else:
        y, labelled = labels, n if np.minimum.reduce(labels) >= 0 else int(np.count_nonzero(labels >= 0))
    bucket = math.floor(at / config.bucket_s) * config.bucket_s
    return (bucket, segment, encode_raw(logits, y, at)), labelled


async def append_raw_soon(store: MonitorStore, batch: PreparedBatch) -> IngestCounts:
    """Write a raw batch (:func:`prepare_raw`) to a segment its monitor has, batched with its loop turn's.

    ``store.append_raw_soon``: `ConfigChanged` or `MonitorNotFound` if the monitor is not the
    one `batch` was prepared for (nothing written), `WouldBlock` / `LockHeld` as any write on the loop.
    """
    (row,) = batch.stats
    await store.append_raw_soon(batch.config.name, row, expect=batch.config)
    return IngestCounts(batch.rows, batch.labelled, 0, 0, batch.buckets)


def settle_rows(config: MonitorConfig, rows: Sequence[StatsRow]) -> Settled:
    """The statistics of raw rows, one per (bucket, segment, layout), and their reservoir rows."""
    groups: dict[tuple[int, str], list[bytes]] = defaultdict(list)
    for bucket, segment, blob in rows:
        groups[(bucket, segment)].append(blob)
    stats: list[StatsRow] = []
    reservoir: list[ReservoirBatch] = []
    summaries: list[tuple[str, MonitorStats]] = []
    for (bucket, segment), blobs in groups.items():
        for _, batch in decode_joined(blobs):
            dist = Distribution.from_logits(batch.logits, validate=False)
            summary = MonitorStats.summarise(dist, batch.labels, validate=False)
            stats.append((bucket, segment, summary.to_bytes()))
            summaries.append((segment, summary))
            labelled = batch.labels >= 0
            offered = reservoir_rows(
                dist, batch.row_times(), batch.labels, labelled, segment, config.reservoir_size
            )
            if isinstance(offered, ReservoirBatch):
                reservoir.append(offered)
    return Settled(stats, reservoir, summaries)


class Settler:
    """Settles the store's raw rows soon after a raw write: on the writer's event loop, else in a thread.

    :meth:`wake` (after a raw write commits) settles `SETTLE_DELAY_S` later every raw row written
    meanwhile. With `settle_soon` (SQLite, whose small writes commit on the event loop) that runs
    on the loop that woke it, its transaction one more of the loop's turn (no lock taken from the
    loop's writes by a thread); where it cannot (`WouldBlock`, `LockHeld`), and with no loop or
    no `settle_soon` (PostgreSQL), the thread settles. The thread also looks every
    `SETTLE_IDLE_S` on its own (raw rows of a worker that stopped, or written before a restart).
    A failed settle is logged and retried at the next one; the rows stay raw, and are read as
    their statistics meanwhile.
    """

    def __init__(
        self,
        settle: Callable[[], int],
        settle_soon: Callable[[], Awaitable[int]] | None = None,
        *,
        delay_s: float = SETTLE_DELAY_S,
        idle_s: float = SETTLE_IDLE_S,
    ) -> None:
        self._settle = settle
        self._settle_soon = settle_soon
        self.delay_s = delay_s
        self.idle_s = idle_s
        self.settled = 0
        self._woken = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="xent-settler", daemon=True)
        self._timers: dict[asyncio.AbstractEventLoop, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> "Settler":
        """Start the thread; return self."""
        self._thread.start()
        return self

    def wake(self) -> None:
        """A raw row was committed: settle soon (on the calling event loop, if there is one)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or self._settle_soon is None:
            self._woken.set()
        elif loop not in self._timers:
            self._timers[loop] = loop.call_later(self.delay_s, self._on_loop, loop)

    def stop(self, timeout: float | None = None) -> None:
        """Stop the thread after the settle in progress, if any."""
        self._stop.set()
        self._woken.set()
        for timer in list(self._timers.values()):
            timer.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timers.pop(loop, None)
        if not self._stop.is_set():
            task = loop.create_task(self._settle_on_loop())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _settle_on_loop(self) -> None:
        assert self._settle_soon is not None
        try:
            settled = await self._settle_soon()
        except (WouldBlock, LockHeld):  # the loop may not write now: the thread settles
            self._woken.set()
            return
        except Exception:
            logger.exception("settling raw stats rows failed")
            return
        self.settled += settled
        if settled >= SETTLE_ROWS:
            self._woken.set()  # more left: the thread goes on

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._woken.wait(self.idle_s) and self._stop.wait(self.delay_s):
                break
            self._woken.clear()
            try:  # again at once only while a settle takes as many rows as it may
                while (settled := self._settle()) > 0:
                    self.settled += settled
                    if settled < SETTLE_ROWS or self._stop.is_set():
                        break
            except StoreUnavailable as error:
                logger.warning("settling raw stats rows skipped: %s", error)
            except Exception:  # keep settling later; the traceback goes to the log
                logger.exception("settling raw stats rows failed")
