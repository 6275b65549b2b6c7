"""A SQL store's writes: a batch's rows, late labels and a language model's sums, each in one transaction.

Each write checks the monitor (and, with `expect`, its config) inside its transaction, claims its
idempotency key there, appends its rows and stores its answer, so a committed write is whole
and a failed one leaves nothing (:class:`SqlWrites`, the writing part of
:class:`~service.store.sqlstore.SqlStore`).
"""

from collections.abc import Callable, Sequence
from typing import Any

from service import clock
from service.core.monitoring.raw_batch import is_raw
from service.store import reservoir, sql
from service.store.base import (
    ConfigChanged,
    Fold,
    IdempotencyKey,
    JoinCounts,
    KeyReused,
    LabelledRow,
    LmSumsRow,
    MonitorConfig,
    PendingRow,
    Replayed,
    ReservoirBatch,
    StatsRow,
    StoreUnavailable,
    same_config,
)
from service.store.raw_appends import RawAppends
from service.store.sql_base import Cursor, SqlBase


class SqlWrites(SqlBase):
    """The writes of a SQL store (module docstring)."""

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

    async def append_raw_soon(self, name: str, row: StatsRow, *, expect: MonitorConfig) -> None:
        """Append one raw stats row from an event loop, with the other raw rows of its turn (`RawAppends`).

        Only for a segment the monitor has (no segment is added, no key claimed). Raises
        `ConfigChanged` / `MonitorNotFound` (nothing written) as `write_batch_soon` does with
        `expect`, and `WouldBlock` where it would.
        """
        if self._raw_appends is None:
            self._raw_appends = RawAppends(self, self._write_soon)
        await self._raw_appends.append(name, row, expect)

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
        at = clock.now() if now is None else now

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
            self._claim(cur, name, key, clock.now())
            self._add_segments(cur, name, {s for _, s, _ in rows})
            if rows:
                cur.executemany(self._q(sql.ADD_LM_SUMS), [(name, s, int(b), *sums) for b, s, sums in rows])
            self._answer(cur, name, key, len(rows))
            return len(rows)

        return self._write(work)

    # Helpers (all run inside the caller's transaction)
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

    def _insert_stats(self, cur: Cursor, name: str, stats: Sequence[StatsRow]) -> None:
        """Insert stats rows; a raw batch's blob (`raw_batch`) as a raw row, for `settle` to summarise."""
        if len(stats) == 1:  # the usual batch: one bucket (`execute` costs less than `executemany`)
            ((b, s, blob),) = stats
            insert = sql.INSERT_RAW_STATS if is_raw(blob) else sql.INSERT_STATS
            cur.execute(self._q(insert), (name, int(b), str(s), bytes(blob)))
        elif stats:
            for raw in (False, True):
                rows = [(name, int(b), str(s), bytes(blob)) for b, s, blob in stats if is_raw(blob) == raw]
                if rows:
                    cur.executemany(self._q(sql.INSERT_RAW_STATS if raw else sql.INSERT_STATS), rows)

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
