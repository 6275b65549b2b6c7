"""`MonitorStore` over a DB-API connection with the SQL of `service.store.sql`.

A backend subclasses `SqlStore` and supplies two context managers: `_transaction` (a write
transaction that takes the write lock at its start, commits on exit, rolls back on error, and
turns the engine's "locked / full / I/O" errors into `StoreUnavailable`) and `_reading` (a cursor
for one or more reads). Everything else, compaction included, is shared: the base and its
helpers in :mod:`.sql_base`, the writes in :mod:`.sql_writes`, the schema, the monitors' rows,
the reads and the compaction here.
"""

import time
from dataclasses import replace
from typing import Any

from service import clock
from service.store import reservoir, sql
from service.store.base import (
    IMMUTABLE_FIELDS,
    HourRows,
    LabelledRow,
    LmSumsRow,
    MonitorConfig,
    MonitorConflict,
    StatsRow,
    StoreUnavailable,
)
from service.store.compaction import compact
from service.store.rollups import roll_up
from service.store.settling import settle, settle_all, settle_soon
from service.store.sql_base import Cursor, SqlBase, _config, _mutable
from service.store.sql_writes import SqlWrites

__all__ = ["Cursor", "SqlBase", "SqlStore", "SqlWrites"]


class SqlStore(SqlWrites):
    """The store's logic in portable SQL; see the module docstring for what a backend adds."""

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
        now = clock.now() if now is None else now
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
        now = clock.now()
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

    def settle(self, name: str | None = None) -> int:
        """Replace raw stats rows by their statistics (`service.store.settling`); rows settled."""
        return settle(self, name)

    def settle_all(self, name: str | None = None) -> int:
        """`settle` until every raw row written before the call is settled; rows settled."""
        return settle_all(self, name)

    async def settle_soon(self) -> int:
        """`settle` from an event loop, in its turn's shared transactions (`WouldBlock`, `LockHeld`)."""
        return await settle_soon(self)

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
        """Up to `limit` reservoir rows with ``start <= time < end``: a uniform sample of them.

        The monitor's raw rows are settled first, so the sample draws from every labelled row written.
        """
        settle_all(self, name)
        with self._reading() as cur:
            size = self._require(cur, name).reservoir_size
            stored = reservoir.Stored.read(cur, self._q, name)
        picked = stored.select(size)  # the reservoir
        times = stored.times[picked]
        return stored.rows(stored.by_key(picked[(times >= start) & (times < end)])[: max(limit, 0)])
