"""`MonitorStore` over a DB-API connection with the SQL of `service.store.sql`.

A backend subclasses `SqlStore` and supplies two context managers: `_transaction` (a write
transaction that takes the write lock at its start, commits on exit, rolls back on error, and
turns the engine's "locked / full / I/O" errors into `StoreUnavailable`) and `_reading` (a cursor
for one or more reads). Everything else, compaction included, is shared.
"""

import functools
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import replace
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast

from service.core.cancel import Cancelled, current_deadline
from service.store import reservoir, sql
from service.store.base import (
    IMMUTABLE_FIELDS,
    ConfigChanged,
    Digest,
    Fold,
    HourRows,
    IdempotencyKey,
    JoinCounts,
    KeyReused,
    LabelledRow,
    LmSumsRow,
    Merge,
    MonitorConfig,
    MonitorConflict,
    MonitorNotFound,
    PendingRow,
    Replayed,
    ReservoirBatch,
    StatsRow,
    StoreLimit,
    StoreLimits,
    StoreUnavailable,
    WouldBlock,
    same_config,
)
from service.store.compaction import compact
from service.store.rollups import roll_up

T = TypeVar("T")


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses."""

    @property
    def rowcount(self) -> int:
        """Rows changed by the last statement (summed over executemany)."""
        ...

    def execute(self, sql: str, parameters: Any = ..., /) -> Any:
        """Run one statement."""
        ...

    def executemany(self, sql: str, parameters: Any, /) -> Any:
        """Run one statement per parameter tuple."""
        ...

    def fetchone(self) -> Any:
        """The next row, or None."""
        ...

    def fetchall(self) -> list[Any]:
        """The remaining rows."""
        ...


def _config(row: Sequence[Any]) -> MonitorConfig:
    names = row[3]
    return MonitorConfig(
        name=row[0],
        n_classes=int(row[1]),
        binary=bool(row[2]),
        class_names=None if names is None else tuple(json.loads(names)),
        bucket_s=int(row[4]),
        retention_s=int(row[5]),
        label_ttl_s=int(row[6]),
        reservoir_size=int(row[7]),
        output=row[8],
        output_kind=cast(Literal["logits", "probs"] | None, row[9]),
        created_at=float(row[10]),
        updated_at=float(row[11]),
        temperature=None if row[12] is None else float(row[12]),
    )


@functools.lru_cache(maxsize=1024)
def _config_of(row: tuple[Any, ...]) -> MonitorConfig:
    """`_config` of a row read before (each write reads its monitor's row): the same frozen config."""
    return _config(row)


def _mutable(config: MonitorConfig) -> tuple[Any, ...]:
    names = None if config.class_names is None else json.dumps(list(config.class_names))
    return (
        names,
        config.retention_s,
        config.label_ttl_s,
        config.reservoir_size,
        config.output,
        config.output_kind,
    )


class SqlStore:
    """The store's logic in portable SQL; see the module docstring for what a backend adds."""

    dialect: ClassVar[str] = "sqlite"
    #: Most ids bound in one ``IN (...)`` list.
    max_params: ClassVar[int] = 500
    #: See `MonitorStore`; a backend whose commits never block for long sets it.
    inline_writes: bool = False

    def __init__(
        self,
        *,
        merge: Merge,
        limits: StoreLimits,
        rng: random.Random | None = None,
        coarsen_after_s: int = 86400,
        coarse_bucket_s: int = 3600,
    ) -> None:
        self.merge = merge
        #: The app's digest of a rollup's blob (`read_hours(digests=True)` reads it instead); set by
        #: the app after opening the store, None: rollups are stored without one.
        self.digest: Digest | None = None
        self.limits = limits
        self.coarsen_after_s = coarsen_after_s
        self.coarse_bucket_s = coarse_bucket_s
        self._rng = rng or random.SystemRandom()

    # Supplied by a backend.
    def _transaction(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _reading(self) -> AbstractContextManager[Cursor]:
        raise NotImplementedError

    def _write(self, work: Callable[[Cursor], T], *, wait: bool = True) -> T:
        """Run `work` in a write transaction and commit; its result once committed.

        A request whose deadline (:mod:`service.core.cancel`) passed before its transaction
        began is not run (`Cancelled`). SQLite overrides this with a group commit; here
        ``wait=False`` always raises `WouldBlock` (a network round trip may block).
        """
        if not wait:
            raise WouldBlock("this backend's writes may block")
        deadline = current_deadline()
        if deadline is not None and time.monotonic() >= deadline:
            raise Cancelled("the request's deadline passed before its write began; nothing was written")
        with self._transaction() as cur:
            return work(cur)

    async def _write_soon(self, work: Callable[[Cursor], T]) -> T:
        """Run `work` from an event loop, with the other writes of its turn; here `WouldBlock` always."""
        raise WouldBlock("this backend's writes may block")

    def _q(self, statement: str) -> str:
        """The statement in the driver's placeholder style."""
        return statement

    def _lock_schema(self, cur: Cursor) -> None:
        """Serialise migrations of processes opening the database at once (SQLite: BEGIN IMMEDIATE did)."""

    def close(self) -> None:
        """Close every connection."""

    # Schema
    def migrate(self, target: int = sql.LATEST_VERSION) -> int:
        """Bring the schema to version `target` (idempotent, in one transaction); return the version."""
        with self._transaction() as cur:
            self._lock_schema(cur)
            cur.execute(self._q(sql.CREATE_SCHEMA_VERSION))
            cur.execute(self._q(sql.SELECT_SCHEMA_VERSION))
            current = cur.fetchone()[0] or 0
            if current > sql.LATEST_VERSION:
                raise StoreUnavailable(  # a deployment to fix, not a bug: the routes answer 503 with it
                    f"the database's schema version {current} is newer than this Xent's "
                    f"({sql.LATEST_VERSION}); upgrade Xent"
                )
            for version, _ in sql.MIGRATIONS:
                if current < version <= target:
                    for statement in sql.ddl(version, self.dialect):
                        cur.execute(statement)
                    if version == 7:
                        reservoir.move_rows(self, cur)
                    for statement in sql.AFTER_DATA_MOVE.get(version, ()):
                        cur.execute(statement)
                    cur.execute(self._q(sql.INSERT_SCHEMA_VERSION), (version, int(time.time())))
                    current = version
        return int(current)

    # Monitors
    def put_monitor(self, config: MonitorConfig, *, now: float | None = None) -> tuple[MonitorConfig, bool]:
        """Create or update a monitor; return the stored config and whether it was created."""
        if config.reservoir_size > self.limits.max_reservoir:
            raise self._limit("reservoir_size", f"got {config.reservoir_size}", "max_reservoir")
        now = time.time() if now is None else now
        with self._transaction() as cur:
            existing = self._select_monitor(cur, config.name)
            if existing is None:
                cur.execute(self._q(sql.COUNT_MONITORS))
                if cur.fetchone()[0] >= self.limits.max_monitors:
                    raise self._limit(
                        "name", f"would be monitor {self.limits.max_monitors + 1}", "max_monitors"
                    )
                stored = replace(config, created_at=now, updated_at=now)
                names, *rest = _mutable(stored)
                fixed = (stored.name, stored.n_classes, int(stored.binary), names, stored.bucket_s)
                cur.execute(self._q(sql.INSERT_MONITOR), (*fixed, *rest, now, now))
                if cur.rowcount == 1:
                    return stored, True
                existing = self._select_monitor(cur, config.name)  # created meanwhile (PostgreSQL)
                assert existing is not None
            for field in IMMUTABLE_FIELDS:
                old, new = getattr(existing, field), getattr(config, field)
                if old != new:
                    raise MonitorConflict(
                        field, f"cannot change from {old!r} to {new!r}; delete the monitor to change it"
                    )
            if _mutable(existing) == _mutable(config):
                return existing, False
            stored = replace(
                config, created_at=existing.created_at, updated_at=now, temperature=existing.temperature
            )
            if existing.reservoir_size != config.reservoir_size:
                reservoir.resize(self, cur, config.name, existing.reservoir_size, config.reservoir_size)
            cur.execute(self._q(sql.UPDATE_MONITOR), (*_mutable(stored), now, stored.name))
            return stored, False

    def get_monitor(self, name: str) -> MonitorConfig | None:
        """The monitor's config, or None."""
        with self._reading() as cur:
            return self._select_monitor(cur, name)

    def set_temperature(self, name: str, temperature: float | None) -> MonitorConfig:
        """Store the monitor's fitted temperature (None: forget it); raises `MonitorNotFound`."""
        now = time.time()
        with self._transaction() as cur:
            config = self._require(cur, name, lock=True)
            cur.execute(self._q(sql.SET_TEMPERATURE), (temperature, now, name))
            return replace(config, temperature=temperature, updated_at=now)

    def list_monitors(self) -> list[MonitorConfig]:
        """Every monitor, by name."""
        with self._reading() as cur:
            cur.execute(self._q(sql.LIST_MONITORS))
            return [_config(row) for row in cur.fetchall()]

    def delete_monitor(self, name: str) -> bool:
        """Delete a monitor and all its data; False if there was none."""
        with self._transaction() as cur:
            # The monitor's row first: on PostgreSQL this waits for the writers holding it (they lock
            # it first too), so no writer is left waiting on a child row this transaction deleted.
            cur.execute(self._q(sql.DELETE_MONITOR), (name,))
            deleted = bool(cur.rowcount)
            for statement in sql.DELETE_MONITOR_DATA:  # (the foreign keys cascade; this is explicit)
                cur.execute(self._q(statement), (name,))
            return deleted

    # Writes
    def write_batch(
        self,
        name: str,
        stats: Sequence[StatsRow],
        pending: Sequence[PendingRow] = (),
        labelled: Sequence[LabelledRow] | ReservoirBatch = (),
        *,
        now: float | None = None,
        key: IdempotencyKey | None = None,
        expect: MonitorConfig | None = None,
        wait: bool = True,
    ) -> int:
        """Append stats, pending and reservoir rows in one transaction; return duplicate pending ids.

        A pending row whose id is already pending for this monitor (or repeats one earlier in
        `pending`) is not stored: the first row of an id wins, the count of the others is returned.
        With `key`, a key used before raises `Replayed` (same request) or `KeyReused` (another).
        With `expect`, a stored config other than it raises `ConfigChanged` (with the stored one);
        ``wait=False`` raises `WouldBlock` unless the write can start at once (`MonitorStore`).
        """
        work = self._batch_work(name, stats, pending, labelled, now=now, key=key, expect=expect)
        return self._write(work, wait=wait)

    async def write_batch_soon(
        self,
        name: str,
        stats: Sequence[StatsRow],
        pending: Sequence[PendingRow] = (),
        labelled: Sequence[LabelledRow] | ReservoirBatch = (),
        *,
        now: float | None = None,
        key: IdempotencyKey | None = None,
        expect: MonitorConfig | None = None,
    ) -> int:
        """`write_batch` from an event loop: committed with the other small writes of its turn.

        Raises `WouldBlock` (nothing written) unless the store commits without blocking
        (SQLite's `LoopCommit`), or when the shared transaction could not begin at once.
        """
        return await self._write_soon(
            self._batch_work(name, stats, pending, labelled, now=now, key=key, expect=expect)
        )

    def _batch_work(
        self,
        name: str,
        stats: Sequence[StatsRow],
        pending: Sequence[PendingRow] = (),
        labelled: Sequence[LabelledRow] | ReservoirBatch = (),
        *,
        now: float | None = None,
        key: IdempotencyKey | None = None,
        expect: MonitorConfig | None = None,
    ) -> Callable[[Cursor], int]:
        """The transaction's work of `write_batch`."""
        at = time.time() if now is None else now

        def work(cur: Cursor) -> int:
            offered = len(labelled) > 0  # rows for the reservoir: its state read with the config, once
            config, state = (
                self._require_reservoir(cur, name) if offered else (self._require(cur, name, lock=True), None)
            )
            if expect is not None and not same_config(config, expect):
                raise ConfigChanged(name, config)
            self._claim(cur, name, key, at)
            self._insert_stats(cur, name, stats)
            self._add_segments(cur, name, {s for _, s, _ in stats} | {row.segment for row in pending})
            duplicates = self._insert_pending(cur, config, pending, at) if pending else 0
            if offered:
                self._add_to_reservoir(cur, config, labelled, state)
            self._answer(cur, name, key, duplicates)
            return duplicates

        return work

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

        An id whose pending row is older than ``label_ttl_s`` at `now` counts as expired (its row is
        dropped); expired rows are swept by `compact` one more ``label_ttl_s`` later, after which
        their ids count as unknown.
        """
        if len(ids) != len(labels):
            raise ValueError(f"`labels` must have one label per id; got {len(labels)} for {len(ids)} ids")
        label_of: dict[str, int] = {}
        for id_, label in zip(ids, labels, strict=True):
            label_of.setdefault(id_, int(label))
        unique = list(label_of)

        def work(cur: Cursor) -> JoinCounts:
            config = self._require(cur, name, lock=True)
            self._claim(cur, name, key, now)
            found: list[Any] = []
            for chunk in sql.chunks(unique, self.max_params):
                cur.execute(
                    self._q(sql.DELETE_PENDING_IDS.format(ids=sql.placeholders(len(chunk)))), (name, *chunk)
                )
                found += cur.fetchall()
            if found:
                cur.execute(self._q(sql.ADD_PENDING), (-len(found), name))
                cur.fetchall()
            order = {id_: i for i, id_ in enumerate(unique)}
            rows = sorted((PendingRow(*row) for row in found), key=lambda row: order[row.id])
            live = [row for row in rows if row.time >= now - config.label_ttl_s]
            if live:
                live_labels = [label_of[row.id] for row in live]
                stats = fold(live, live_labels)
                self._insert_stats(cur, name, stats)
                self._add_segments(cur, name, {s for _, s, _ in stats})
                reservoir = [
                    LabelledRow(row.time, row.segment, row.kind, row.dtype, row.row, label)
                    for row, label in zip(live, live_labels, strict=True)
                ]
                self._add_to_reservoir(cur, config, reservoir)
            counts = JoinCounts(
                joined=len(live),
                unknown=len(unique) - len(found),
                duplicate=len(ids) - len(unique),
                expired=len(found) - len(live),
            )
            self._answer(cur, name, key, counts)
            return counts

        return self._write(work)

    def add_lm_sums(self, name: str, rows: Sequence[LmSumsRow], *, key: IdempotencyKey | None = None) -> int:
        """Add language-model sums to their buckets' rows in one transaction; return the rows touched."""

        def work(cur: Cursor) -> int:
            self._require(cur, name, lock=True)
            self._claim(cur, name, key, time.time())
            self._add_segments(cur, name, {s for _, s, _ in rows})
            if rows:
                cur.executemany(self._q(sql.ADD_LM_SUMS), [(name, s, int(b), *sums) for b, s, sums in rows])
            self._answer(cur, name, key, len(rows))
            return len(rows)

        return self._write(work)

    def read_lm_sums(self, name: str, start: int, end: int) -> list[LmSumsRow]:
        """Language-model rows with ``start <= bucket_start < end``, by bucket and segment."""
        with self._reading() as cur:
            self._require(cur, name)
            cur.execute(self._q(sql.SELECT_LM_SUMS), (name, start, end))
            return [(int(row[0]), row[1], tuple(row[2:])) for row in cur.fetchall()]

    def read_lm_totals(self, name: str) -> tuple[Any, ...] | None:
        """The sums of every language-model row of the monitor (None when it has none)."""
        with self._reading() as cur:
            self._require(cur, name)
            cur.execute(self._q(sql.SELECT_LM_TOTALS), (name,))
            row = cur.fetchone()
        return None if row is None or not row[0] else tuple(row[1:])

    def read_lm_points(
        self, name: str, start: int, end: int, step: int, segment: str | None = None
    ) -> list[tuple[int, tuple[Any, ...]]]:
        """Per point ``i`` of `step` seconds from `start` (buckets before `end`): its sums, by point."""
        statement = sql.SELECT_LM_POINTS.format(segment="" if segment is None else sql.SEGMENT_FILTER)
        params = (start, step, name, start, end) + (() if segment is None else (segment,))
        with self._reading() as cur:
            self._require(cur, name)
            cur.execute(self._q(statement), params)
            return [(int(row[0]), tuple(row[1:])) for row in cur.fetchall()]

    def compact(self, now: float) -> int:
        """Retention, expiry and compaction (see `service.store.compaction`); returns rows merged away."""
        return compact(self, now)

    def roll_up(self, now: float) -> int:
        """Fold unrolled stats rows into their hours' rollups (`service.store.rollups`); rows folded."""
        return roll_up(self, now)

    def read_hours(
        self, name: str, start: int, end: int, step: int, *, digests: bool = False
    ) -> HourRows | None:
        """The rows of a series' window, with each hour that lies inside one point read as its rollup.

        Returns the rows, oldest first (a rollup's ``bucket_start`` is its hour), or None when the
        window holds no whole hour or `step` is shorter than one (read `read_stats` then). Point by
        point of ``[start + i·step, start + (i + 1)·step)`` they merge to what `read_stats` gives.
        `digests`: the rollups as their stored digests (`digest`), unless one has none (then
        their blobs, read again in one statement).
        """
        width = self.coarse_bucket_s
        first, last = -(-start // width) * width, end // width * width
        if start < 0 or step < width or first >= last:
            return None
        aligned = start % width == 0 and step % width == 0
        params: tuple[Any, ...] = (name, first, last, name, first, last, name)
        if aligned:
            params += (start, first, name, last, end)
        else:
            params += (start, end, first, last)
        rows: list[Any] = []
        for rollup in ("sums", "blob") if digests else ("blob",):
            if aligned:
                statement = sql.SELECT_HOURS_STATS.format(rollup=rollup)
            else:
                statement = sql.select_whole_hours_stats(start, step, width, rollup)
            with self._reading() as cur:
                self._require(cur, name)
                cur.execute(self._q(statement), params)
                rows = cur.fetchall()
            if rollup == "blob" or all(row[2] is not None for row in rows):
                break
        hours = HourRows([], [])
        for b, s, data, is_rollup in rows:
            kept = hours.digests if is_rollup and rollup == "sums" else hours.rows
            kept.append((int(b), s, bytes(data)))
        return hours

    # Reads
    def read_stats(self, name: str, start: int, end: int, segment: str | None = None) -> list[StatsRow]:
        """Stats rows with ``start <= bucket_start < end`` (of one segment, or all), oldest first."""
        with self._reading() as cur:
            self._require(cur, name)
            if segment is None:
                cur.execute(self._q(sql.SELECT_STATS), (name, start, end))
            else:
                cur.execute(self._q(sql.SELECT_SEGMENT_STATS), (name, start, end, segment))
            return [(int(b), s, bytes(blob)) for b, s, blob in cur.fetchall()]

    def segments(self, name: str) -> list[str]:
        """The segments the monitor has seen, sorted."""
        with self._reading() as cur:
            self._require(cur, name)
            cur.execute(self._q(sql.SELECT_SEGMENTS), (name,))
            return [row[0] for row in cur.fetchall()]

    def reservoir(self, name: str, start: float, end: float, limit: int) -> list[LabelledRow]:
        """Up to `limit` reservoir rows with ``start <= time < end``: a uniform sample of them."""
        with self._reading() as cur:
            size = self._require(cur, name).reservoir_size
            stored = reservoir.Stored.read(cur, self._q, name)
        picked = stored.select(size)  # the reservoir
        times = stored.times[picked]
        return stored.rows(stored.by_key(picked[(times >= start) & (times < end)])[: max(limit, 0)])

    # Helpers (all run inside the caller's transaction)
    def _select_monitor(self, cur: Cursor, name: str, *, lock: bool = False) -> MonitorConfig | None:
        statement = sql.SELECT_MONITOR + (sql.MONITOR_ROW_LOCK[self.dialect] if lock else "")
        cur.execute(self._q(statement), (name,))
        row = cur.fetchone()
        return None if row is None else _config_of(tuple(row))

    def _require_reservoir(self, cur: Cursor, name: str) -> tuple[MonitorConfig, tuple[int | None, int, int]]:
        """The monitor's config and its reservoir's state (as `reservoir.lock_state`), in one locked read."""
        cur.execute(self._q(sql.SELECT_MONITOR_RESERVOIR + sql.RESERVOIR_LOCK[self.dialect]), (name,))
        row = cur.fetchone()
        if row is None:
            raise MonitorNotFound(name)
        *columns, threshold, count = tuple(row)
        config = _config_of(tuple(columns))
        return config, (None if threshold is None else int(threshold), int(count), config.reservoir_size)

    def _require(self, cur: Cursor, name: str, *, lock: bool = False) -> MonitorConfig:
        """The monitor's config; `lock` (in a write transaction): keep it from being deleted until commit."""
        config = self._select_monitor(cur, name, lock=lock)
        if config is None:
            raise MonitorNotFound(name)
        return config

    def _claim(self, cur: Cursor, name: str, key: IdempotencyKey | None, now: float) -> None:
        """Store `key` for this write, or raise `Replayed` / `KeyReused` if it was used before.

        On PostgreSQL a concurrent transaction holding the same key makes the insert wait until it
        commits (then this one replays it) or rolls back (then this one goes ahead).
        """
        if key is None:
            return
        cur.execute(self._q(sql.CLAIM_KEY), (name, key.key, key.fingerprint, now))
        if cur.rowcount == 1:
            return
        cur.execute(self._q(sql.SELECT_KEY), (name, key.key))
        row = cur.fetchone()
        if row is None:  # pragma: no cover - the holder rolled back between the two statements
            raise StoreUnavailable("a concurrent request with the same idempotency key; retry")
        fingerprint, answer, created_at = bytes(row[0]), row[1], float(row[2])
        if created_at < now - self.limits.idempotency_ttl_s:  # expired, not swept yet: a new key
            cur.execute(self._q(sql.RENEW_KEY), (key.fingerprint, now, name, key.key))
            return
        if fingerprint != key.fingerprint:
            raise KeyReused(key.key)
        if answer is None:  # pragma: no cover - a committed key always has its answer
            raise StoreUnavailable("a concurrent request with the same idempotency key; retry")
        raise Replayed(key.key, bytes(answer))

    def _answer(self, cur: Cursor, name: str, key: IdempotencyKey | None, result: object) -> None:
        """Store the answer a retry with `key` gets (in the write's transaction)."""
        if key is not None:
            cur.execute(self._q(sql.ANSWER_KEY), (key.answer(result), name, key.key))

    def _limit(self, field: str, reason: str, limit: str) -> StoreLimit:
        value = getattr(self.limits, limit)
        return StoreLimit(field, f"exceeds {limit}={value}: {reason}", limit=limit)

    def _insert_stats(self, cur: Cursor, name: str, stats: Sequence[StatsRow]) -> None:
        if len(stats) == 1:  # the usual batch: one bucket (`execute` costs less than `executemany`)
            ((b, s, blob),) = stats
            cur.execute(self._q(sql.INSERT_STATS), (name, int(b), str(s), bytes(blob)))
        elif stats:
            rows = [(name, int(b), str(s), bytes(blob)) for b, s, blob in stats]
            cur.executemany(self._q(sql.INSERT_STATS), rows)

    def _add_segments(self, cur: Cursor, name: str, segments: set[str]) -> None:
        if not segments:
            return
        if len(segments) == 1:
            cur.execute(self._q(sql.INSERT_SEGMENT), (name, *segments))
        else:
            cur.executemany(self._q(sql.INSERT_SEGMENT), [(name, s) for s in sorted(segments)])
        if cur.rowcount > 0:
            cur.execute(self._q(sql.COUNT_SEGMENTS), (name,))
            count = cur.fetchone()[0]
            if count > self.limits.max_segments:
                raise self._limit("segment", f"monitor {name!r} would have {count} segments", "max_segments")

    def _insert_pending(
        self, cur: Cursor, config: MonitorConfig, pending: Sequence[PendingRow], now: float
    ) -> int:
        name = config.name
        rows = [(name, p.id, p.time, p.segment, p.kind, p.dtype, p.row) for p in pending]
        cur.executemany(self._q(sql.INSERT_PENDING), rows)
        added = cur.rowcount
        if added:
            cur.execute(self._q(sql.ADD_PENDING), (added, name))
            total = cur.fetchone()[0]
            cur.fetchall()
            if total > self.limits.max_pending_rows:  # make room by dropping expired rows first
                cur.execute(self._q(sql.DELETE_PENDING_BEFORE), (name, now - config.label_ttl_s))
                dropped = cur.rowcount
                if dropped:
                    cur.execute(self._q(sql.ADD_PENDING), (-dropped, name))
                    cur.fetchall()
                if total - dropped > self.limits.max_pending_rows:
                    raise self._limit(
                        "ids",
                        f"monitor {name!r} would hold {total - dropped} unlabelled rows",
                        "max_pending_rows",
                    )
        return len(rows) - added

    def _add_to_reservoir(
        self,
        cur: Cursor,
        config: MonitorConfig,
        rows: Sequence[LabelledRow] | ReservoirBatch,
        state: tuple[int | None, int, int] | None = None,
    ) -> None:
        if config.reservoir_size > 0 and len(rows):
            reservoir.add(self, cur, config.name, rows, state)

    def _ids(
        self, ids: Sequence[int], statement: str = sql.DELETE_STATS_IDS
    ) -> Iterator[tuple[str, Sequence[int]]]:
        """``DELETE ... WHERE id IN (...)`` statements with their ids, in chunks."""
        for chunk in sql.chunks(ids, self.max_params):
            yield self._q(statement.format(ids=sql.placeholders(len(chunk)))), chunk
