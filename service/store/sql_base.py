"""The shared base of the SQL stores: a DB-API cursor's protocol, a monitor's row, the backend's hooks.

:class:`SqlBase` holds what every part of :class:`~service.store.sqlstore.SqlStore` uses: its
settings, the hooks a backend supplies (`_transaction`, `_reading`, and for SQLite the
group commit of `_write` and `_write_soon`), and the helpers run inside a transaction (a
monitor's row read, locked, or refused as missing). Its writes are in :mod:`.sql_writes`.
"""

import functools
import json
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal, Protocol, TypeVar, cast

from service.core.cancel import Cancelled, current_deadline
from service.store import sql
from service.store.base import (
    Digest,
    Merge,
    MonitorConfig,
    MonitorNotFound,
    OnSettled,
    SettleRows,
    StoreLimit,
    StoreLimits,
    WouldBlock,
)

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


class SqlBase:
    """The settings, backend hooks and in-transaction helpers of a SQL store (module docstring)."""

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
        #: The app's summary of raw stats rows (`service.store.settling`); None: they stay raw.
        self.settle_rows: SettleRows | None = None
        #: Told what each settle stored, after its commit (the app's counters), or None.
        self.on_settled: OnSettled | None = None
        self._raw_appends: Any = None  # `RawAppends`, made on first use (sql_writes)
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

    def _limit(self, field: str, reason: str, limit: str) -> StoreLimit:
        value = getattr(self.limits, limit)
        return StoreLimit(field, f"exceeds {limit}={value}: {reason}", limit=limit)

    def _ids(
        self, ids: Sequence[int], statement: str = sql.DELETE_STATS_IDS
    ) -> Iterator[tuple[str, Sequence[int]]]:
        """``DELETE ... WHERE id IN (...)`` statements with their ids, in chunks."""
        for chunk in sql.chunks(ids, self.max_params):
            yield self._q(statement.format(ids=sql.placeholders(len(chunk)))), chunk
