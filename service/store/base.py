"""The monitor store's interface: row types, limits, errors and the `MonitorStore` protocol.

The store persists opaque bytes (a serialised ``service.core.MonitorStats`` in the app) and knows no
metric. Stats are append-only rows ``(bucket_start, segment, blob)``; readers merge them, and the
background compaction merges many rows of one bucket into one with the ``merge`` callable the
caller passes in.
"""

import asyncio
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import numpy.typing as npt

#: A stats row: ``(bucket_start, segment, blob)``, bucket_start in integer epoch seconds.
StatsRow = tuple[int, str, bytes]
#: A language-model bucket row: ``(bucket_start, segment, sums)``, sums in `PerplexitySeries.COLUMNS` order.
LmSumsRow = tuple[int, str, tuple[Any, ...]]
#: Merges serialised statistics into one (associative and commutative).
Merge = Callable[[Sequence[bytes]], bytes]
#: The app's digest of a rollup's blob, stored beside it and read instead of it (or None).
Digest = Callable[[bytes], bytes]


@dataclass(frozen=True)
class Settled:
    """What the app made of a monitor's raw stats rows (`SettleRows`): rows to store in their place.

    ``stats``: their statistics (not raw), ``reservoir``: their labelled rows offered to the
    reservoir, ``summaries``: ``(segment, statistics)`` of each stats row, for the counters.
    """

    stats: Sequence[StatsRow]
    reservoir: Sequence["ReservoirBatch"]
    summaries: Sequence[tuple[str, Any]]


#: The app's summary of raw stats rows: the monitor's config and its rows → what replaces them.
SettleRows = Callable[["MonitorConfig", Sequence[StatsRow]], Settled]
#: Told, after the commit, what a settle stored for a monitor: ``(name, summaries)``.
OnSettled = Callable[[str, Sequence[tuple[str, Any]]], None]


@dataclass(frozen=True)
class HourRows:
    """A series' rows read through hourly rollups (`MonitorStore.read_hours`), oldest first.

    ``rows`` are stats rows and rollups' blobs (a rollup's ``bucket_start`` is its hour);
    ``digests`` the rollups read as their digests instead, when asked and every one has one.
    """

    rows: list[tuple[int, str, bytes]]
    digests: list[tuple[int, str, bytes]]


@dataclass(frozen=True)
class MonitorConfig:
    """A monitor's configuration; `created_at` and `updated_at` are set by the store."""

    name: str
    n_classes: int
    binary: bool
    class_names: tuple[str, ...] | None
    bucket_s: int = 60
    retention_s: int = 30 * 86400
    label_ttl_s: int = 7 * 86400
    reservoir_size: int = 10_000
    output: str | None = None
    output_kind: Literal["logits", "probs"] | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    temperature: float | None = None  # fitted on the reservoir (set_temperature); kept across updates


#: Fields of `MonitorConfig` that cannot change once a monitor holds data.
IMMUTABLE_FIELDS = ("n_classes", "binary", "bucket_s")


@dataclass(frozen=True)
class PendingRow:
    """A prediction waiting for its label: the row's logits or probabilities as raw bytes."""

    id: str
    time: float
    segment: str
    kind: Literal["logits", "probs"]
    dtype: str
    row: bytes


@dataclass(frozen=True)
class LabelledRow:
    """A reservoir entry (a labelled row kept for temperature refits)."""

    time: float
    segment: str
    kind: str
    dtype: str
    row: bytes
    label: int
    key: int | None = None  # its bottom-k sample key in [-2**63, 2**63); None: the store draws one


@dataclass(frozen=True, eq=False)
class ReservoirBatch:
    """Labelled rows of one batch offered to the reservoir, column by column (no object per row).

    ``payload`` holds row i's little-endian logits or probabilities as ``payload[i]`` (N × bytes
    per row, uint8), or as ``payload[rows[i]]`` when `rows` is given (the batch's whole array, read
    only for the rows kept); ``keys`` their bottom-k sample keys in [-2**63, 2**63) (drawn by the caller,
    iid uniform). The store keeps the rows whose key can enter the reservoir, as one database row
    (`service.store.reservoir`).
    """

    segment: str
    kind: str
    dtype: str
    times: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]
    keys: npt.NDArray[np.int64]
    payload: npt.NDArray[np.uint8]
    rows: npt.NDArray[np.intp] | None = None

    def __len__(self) -> int:
        return int(self.keys.shape[0])


@dataclass(frozen=True)
class JoinCounts:
    """What became of the ids of one `join_labels` call (each id counted once).

    ``joined``: its pending row was folded into its bucket; ``unknown``: no pending row (never sent,
    already joined, or expired long ago); ``duplicate``: a repeat of an id earlier in the same call;
    ``expired``: its pending row was older than the monitor's ``label_ttl_s`` (it is dropped).
    """

    joined: int = 0
    unknown: int = 0
    duplicate: int = 0
    expired: int = 0


@dataclass(frozen=True)
class StoreLimits:
    """Caps the store enforces; the values come from the app's settings."""

    max_monitors: int = 100
    max_segments: int = 256  # per monitor
    max_pending_rows: int = 100_000  # per monitor
    max_reservoir: int = 100_000  # largest reservoir_size a monitor may ask for
    idempotency_ttl_s: float = 86_400.0  # how long an idempotency key is remembered
    max_idempotency_keys: int = 100_000  # per monitor; compaction forgets the oldest past it


@dataclass(frozen=True)
class IdempotencyKey:
    """A write's idempotency key: stored with the write, in its transaction.

    ``fingerprint`` identifies the request (a digest of its route and body); ``answer`` turns the
    write method's result into the bytes a retry is answered with.
    """

    key: str
    fingerprint: bytes
    answer: Callable[[Any], bytes]


class StoreError(Exception):
    """Base of the errors the store raises on purpose."""


class Replayed(StoreError):
    """The idempotency key was written before with the same request: nothing was written again.

    ``answer`` holds the bytes stored with the first write.
    """

    def __init__(self, key: str, answer: bytes) -> None:
        super().__init__(f"idempotency key {key!r} was used before; replaying its answer")
        self.key = key
        self.answer = answer


class KeyReused(StoreError):
    """The idempotency key was written before with a different request (nothing was written)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} was used with a different request")
        self.key = key


class StoreUnavailable(StoreError):
    """The database cannot be written or read now (locked past the busy timeout, full, I/O error).

    Nothing of the failed call was written; the API answers 503 with Retry-After.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"monitor store unavailable: {reason}")
        self.reason = reason


class StoreLimit(StoreError):
    """A call would exceed a cap (`limit` names the setting); nothing was written.

    ``field`` names the input that asks for too much, ``reason`` says why, phrased to follow it.
    """

    def __init__(self, field: str, reason: str, *, limit: str) -> None:
        super().__init__(f"`{field}` {reason}")
        self.field = field
        self.reason = reason
        self.limit = limit


class MonitorNotFound(StoreError):
    """No monitor of that name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no monitor named {name!r}")
        self.name = name


class ConfigChanged(StoreError):
    """A write's `expect`ed config is not the stored one (changed since it was read): nothing was written.

    ``config`` is the stored config, read inside the write's transaction (None: the monitor is
    gone); a caller prepares the batch again with it and retries.
    """

    def __init__(self, name: str, config: MonitorConfig | None) -> None:
        super().__init__(f"monitor {name!r} changed since its config was read")
        self.name = name
        self.config = config


class WouldBlock(StoreError):
    """A write asked not to wait (``wait=False``) could not start at once: nothing was written."""


class LockHeld(WouldBlock):
    """`WouldBlock` because a thread of this process holds the write lock or has a write queued.

    ``notify(wake)`` calls `wake` (from whichever thread frees it, or at once if it is free
    already) once the lock is released with no write queued: a caller on an event loop waits
    for that and tries again without waiting, rather than sending its write to a thread of its
    own (which would hold the lock in turn, and send the next small writes to threads too).
    `wake` may be called more than once, and must be cheap and thread-safe. ``timeout_s`` is how
    long a write that waits is willing to wait for the lock (the store's busy timeout).
    """

    def __init__(
        self, reason: str, notify: Callable[[Callable[[], None]], None], timeout_s: float = 5.0
    ) -> None:
        super().__init__(reason)
        self.notify = notify
        self.timeout_s = timeout_s

    async def freed(self, timeout_s: float) -> None:
        """Wait on the running event loop until the lock is free, at most `timeout_s` seconds."""
        loop = asyncio.get_running_loop()
        freed = loop.create_future()

        def settle() -> None:
            if not freed.done():
                freed.set_result(None)

        def wake() -> None:  # from the thread that released the lock
            with suppress(RuntimeError):  # the loop closed meanwhile (shutdown): nobody waits any more
                loop.call_soon_threadsafe(settle)

        self.notify(wake)
        await asyncio.wait((freed,), timeout=timeout_s)


def same_config(a: MonitorConfig, b: MonitorConfig) -> bool:
    """Whether two configs are the same row (field by field; a NaN equals itself)."""
    return a == b or repr(a) == repr(b)


class MonitorConflict(StoreError):
    """`put_monitor` would change a field that cannot change (one of `IMMUTABLE_FIELDS`)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"`{field}` {reason}")
        self.field = field
        self.reason = reason


Fold = Callable[[list[PendingRow], list[int]], Sequence[StatsRow]]


class MonitorStore(Protocol):
    """Persistent state of monitors. Every write method commits before it returns."""

    #: Whether `write_batch` may be called with ``wait=False`` from an event loop (SQLite with
    #: ``synchronous=NORMAL``: a commit does not wait for an fsync or a network round trip).
    inline_writes: bool

    def put_monitor(self, config: MonitorConfig) -> tuple[MonitorConfig, bool]:
        """Create or update a monitor; return the stored config and whether it was created.

        Raises `MonitorConflict` for a change of an immutable field, `StoreLimit` past
        ``max_monitors`` or ``max_reservoir``.
        """
        ...

    def get_monitor(self, name: str) -> MonitorConfig | None:
        """The monitor's config, or None."""
        ...

    def set_temperature(self, name: str, temperature: float | None) -> MonitorConfig:
        """Store the monitor's fitted temperature (None: forget it); raises `MonitorNotFound`."""
        ...

    def list_monitors(self) -> list[MonitorConfig]:
        """Every monitor, by name."""
        ...

    def delete_monitor(self, name: str) -> bool:
        """Delete a monitor and all its data; False if there was none."""
        ...

    def write_batch(
        self,
        name: str,
        stats: Sequence[StatsRow],
        pending: Sequence[PendingRow] = (),
        labelled: Sequence[LabelledRow] | ReservoirBatch = (),
        *,
        key: IdempotencyKey | None = None,
        expect: MonitorConfig | None = None,
        wait: bool = True,
    ) -> int:
        """Append stats rows, pending rows and reservoir rows in one transaction.

        Returns the number of pending rows not stored because their id was already pending (or
        repeated in `pending`): the first row of an id wins. Raises `MonitorNotFound`, or
        `StoreLimit` past ``max_segments`` / ``max_pending_rows`` (then nothing is written).
        With `key`: `Replayed` or `KeyReused` if it was used before (nothing is written).
        With `expect` (the config the rows were made with): `ConfigChanged` unless the config
        read inside the transaction is the same (nothing is written). With ``wait=False``:
        `WouldBlock` unless the write can start at once, holding the write lock (SQLite with
        ``synchronous=NORMAL`` only: no fsync per commit), so an event loop may run it.
        """
        ...

    def settle(self, name: str | None = None) -> int:
        """Replace up to 512 raw stats rows (of `name`, or any) by their statistics; rows settled."""
        ...

    async def append_raw_soon(self, name: str, row: StatsRow, *, expect: MonitorConfig) -> None:
        """Append one raw stats row to a segment the monitor has, from an event loop.

        Committed with the other raw rows of the loop's turn (one work for all). Raises
        `ConfigChanged` or `MonitorNotFound` (nothing written), and `WouldBlock` / `LockHeld`
        where `write_batch_soon` would.
        """
        ...

    async def write_batch_soon(
        self,
        name: str,
        stats: Sequence[StatsRow],
        pending: Sequence[PendingRow] = (),
        labelled: Sequence[LabelledRow] | ReservoirBatch = (),
        *,
        key: IdempotencyKey | None = None,
        expect: MonitorConfig | None = None,
    ) -> int:
        """`write_batch` from an event loop, committed together with the writes of the same turn.

        Each write keeps its own outcome (an error of one rolls back that one only); an error
        of the shared transaction fails every write of it, with nothing written. `WouldBlock`
        (nothing written) where ``write_batch(wait=False)`` would raise it.
        """
        ...

    def join_labels(
        self,
        name: str,
        ids: Sequence[str],
        now: float,
        fold: Fold,
        labels: Sequence[int],
        *,
        key: IdempotencyKey | None = None,
    ) -> JoinCounts:
        """Fold late labels into the buckets of their predictions, in one transaction.

        Deletes the pending rows of `ids` (so only one caller ever joins a row), inserts the stats
        rows that ``fold(rows, labels)`` returns and the rows into the reservoir. `key` as in
        `write_batch`.
        """
        ...

    def add_lm_sums(self, name: str, rows: Sequence[LmSumsRow], *, key: IdempotencyKey | None = None) -> int:
        """Add language-model sums to their buckets in one transaction (`key` as in `write_batch`)."""
        ...

    def read_lm_sums(self, name: str, start: int, end: int) -> list[LmSumsRow]:
        """Language-model rows with ``start <= bucket_start < end``, by bucket and segment."""
        ...

    def read_lm_points(
        self, name: str, start: int, end: int, step: int, segment: str | None = None
    ) -> list[tuple[int, tuple[Any, ...]]]:
        """Per point ``i`` of `step` seconds from `start` (buckets before `end`): its sums, by point."""
        ...

    def read_lm_totals(self, name: str) -> tuple[Any, ...] | None:
        """The sums of every language-model row of the monitor (None when it has none)."""
        ...

    def read_stats(self, name: str, start: int, end: int, segment: str | None = None) -> list[StatsRow]:
        """Stats rows with ``start <= bucket_start < end`` (of one segment, or all)."""
        ...

    def read_hours(
        self, name: str, start: int, end: int, step: int, *, digests: bool = False
    ) -> HourRows | None:
        """A series' rows with each hour inside one point read as its rollup (None: no such hour)."""
        ...

    def roll_up(self, now: float) -> int:
        """Fold unrolled stats rows into their hours' rollups; return the rows folded."""
        ...

    def segments(self, name: str) -> list[str]:
        """The segments the monitor has seen, sorted."""
        ...

    def reservoir(self, name: str, start: float, end: float, limit: int) -> list[LabelledRow]:
        """Up to `limit` reservoir rows with ``start <= time < end``: a uniform sample of them."""
        ...

    def compact(self, now: float) -> int:
        """Retention, expiry and compaction; returns the number of stats rows merged away."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...
