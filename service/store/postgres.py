"""The PostgreSQL backend: psycopg 3, a connection pool, the shared SQL of `service.store.sql`.

Several Xent processes (workers, replicas) may share one database with no coordination between
them: stats rows are append-only (``INSERT`` only; readers merge them), a late label's join deletes
its pending row with ``DELETE ... RETURNING`` (so exactly one transaction ever gets it), compaction
deletes exactly the ids it merged and rolls back if another compactor took any, and the per-monitor
counters (pending rows, reservoir rows) are updated with ``UPDATE ... SET n = n + ?`` under the
row's lock. Transactions run at READ COMMITTED; a write transaction first takes a ``FOR KEY SHARE``
lock on its monitor's row, so a concurrent delete of the monitor waits for it (and the writer then
sees `MonitorNotFound`, never a foreign-key error), while writers never block one another on it.

Durability: a write method returns after ``COMMIT``, which with the server's default
``synchronous_commit=on`` means the WAL record is flushed to disk: a committed batch survives the
Xent process, and the server, being killed.

Errors: a connection that fails or times out (the pool's ``timeout``), a server shutting down,
a serialization failure or deadlock, a full disk, memory or connection slots, a read-only server:
`StoreUnavailable` (the API answers 503 with Retry-After; nothing of the call was written).
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, ClassVar

from service.store import sql
from service.store.base import Merge, StoreError, StoreLimits, StoreUnavailable
from service.store.sqlstore import Cursor, SqlStore

try:
    import psycopg
    import psycopg.errors
    from psycopg_pool import ConnectionPool, PoolTimeout
except ImportError as error:  # pragma: no cover - exercised by the test without the extra
    raise ImportError(
        "XENT_DATABASE_URL=postgresql://... needs the PostgreSQL driver: "
        "pip install 'xent-service[postgres]' (psycopg[binary] and psycopg-pool)"
    ) from error

#: SQLSTATE classes and codes meaning "not now" (https://www.postgresql.org/docs/current/errcodes-appendix.html).
_UNAVAILABLE_CLASSES = {
    "08": "connection failure",
    "53": "insufficient resources",
    "57": "server shutting down or query cancelled",
    "58": "server I/O error",
}
_UNAVAILABLE_CODES = {
    "40001": "serialization failure (a concurrent transaction); retry",
    "40P01": "deadlock detected; retry",
    "53100": "disk full",
    "53200": "server out of memory",
    "53300": "too many connections",
    "55P03": "lock not available",
    "25006": "the server is read-only (a standby?)",
    "57P01": "server shutting down",
    "57P03": "server not accepting connections now",
}


def unavailable(error: BaseException) -> StoreUnavailable | None:
    """The `StoreUnavailable` a psycopg error stands for, or None for any other error (a bug)."""
    if isinstance(error, PoolTimeout):
        return StoreUnavailable(f"no database connection within the pool timeout: {error}")
    if not isinstance(error, psycopg.Error):
        return None
    code = error.sqlstate or ""
    reason = _UNAVAILABLE_CODES.get(code) or _UNAVAILABLE_CLASSES.get(code[:2])
    if reason is not None:
        return StoreUnavailable(f"{reason} (SQLSTATE {code})")
    if isinstance(error, psycopg.OperationalError):  # no SQLSTATE: the connection failed or broke
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return StoreUnavailable(f"database connection failed: {message}")
    return None


@lru_cache(maxsize=512)
def _to_format(statement: str) -> str:
    return sql.to_format(statement)


def redact(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``, for messages and logs."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    host = info.get("host", "")
    port = f":{info['port']}" if info.get("port") else ""
    user = f"{info['user']}{':***' if info.get('password') else ''}@" if info.get("user") else ""
    return f"postgresql://{user}{host}{port}/{info.get('dbname', '')}"


class PostgresStore(SqlStore):
    """`MonitorStore` in a PostgreSQL database (tables created and migrated at open).

    Parameters
    ----------
    url : str
        A libpq connection URL, ``postgresql://user:password@host:5432/dbname``.
    merge : callable
        Merges blobs into one; compaction uses it.
    limits : StoreLimits
        The caps to enforce. Under concurrent writers from several processes a cap counted with
        ``count(*)`` (monitors, segments) may be passed by the writers racing it; the pending-row
        and reservoir caps, counted under the monitor's row lock, hold exactly.
    pool_size : int, default=10
        Most connections this process opens.
    timeout_s : float, default=5.0
        How long a call waits for a connection (and a new connection for the server) before
        raising `StoreUnavailable`.
    migrate : bool, default=True
        Create or upgrade the schema at open (under an advisory lock, so replicas starting
        together migrate it once).
    """

    dialect: ClassVar[str] = "postgresql"
    #: Advisory-lock key serialising migrations (any fixed 64-bit number; "xent" in ASCII).
    migration_lock: ClassVar[int] = 0x78656E74

    def __init__(
        self,
        url: str,
        *,
        merge: Merge,
        limits: StoreLimits | None = None,
        pool_size: int = 10,
        timeout_s: float = 5.0,
        rng: Any = None,
        coarsen_after_s: int = 86400,
        coarse_bucket_s: int = 3600,
        migrate: bool = True,
    ) -> None:
        super().__init__(
            merge=merge,
            limits=limits or StoreLimits(),
            rng=rng,
            coarsen_after_s=coarsen_after_s,
            coarse_bucket_s=coarse_bucket_s,
        )
        self.url = url
        self.pool_size = pool_size
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._pool_: ConnectionPool | None = None
        self._pid = os.getpid()
        self._closed = False
        if migrate:
            try:
                self.migrate()
            except BaseException:
                self.close()  # stop the pool's threads retrying a server we give up on
                raise

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.url)!r})"

    def _pool(self) -> ConnectionPool:
        with self._lock:
            if self._closed:
                raise StoreError("the monitor store is closed")
            if self._pool_ is not None and self._pid != os.getpid():
                self._pool_ = None  # a forked child: its parent's connections and threads are not its own
            if self._pool_ is None:
                self._pid = os.getpid()
                self._pool_ = ConnectionPool(
                    self.url,
                    min_size=1,
                    max_size=self.pool_size,
                    timeout=self.timeout_s,
                    kwargs={"autocommit": True, "connect_timeout": max(1, round(self.timeout_s))},
                    # a connection broken by a server restart is replaced, not handed out
                    check=ConnectionPool.check_connection,
                    name="xent-monitors",
                    open=False,
                )
                self._pool_.open(wait=False)
            return self._pool_

    def _q(self, statement: str) -> str:
        return _to_format(statement)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except (psycopg.Error, PoolTimeout) as error:
            mapped = unavailable(error)
            if mapped is None:
                raise
            raise mapped from error

    @contextmanager
    def _transaction(self) -> Iterator[Cursor]:
        """A READ COMMITTED transaction: commit on exit, rollback on error."""
        with (
            self._errors(),
            self._pool().connection() as connection,
            connection.transaction(),
            connection.cursor() as cursor,
        ):
            yield cursor

    @contextmanager
    def _reading(self) -> Iterator[Cursor]:
        """A cursor in autocommit mode: each statement sees one committed snapshot.

        Results come in PostgreSQL's binary format: the same Python values, but a ``bytea`` column
        arrives as its bytes instead of hex text to decode (a 30-day series reads ~9 MB of blobs:
        36-56 ms instead of 127-190 ms on the development VM under load).
        """
        with (
            self._errors(),
            self._pool().connection() as connection,
            connection.cursor(binary=True) as cursor,
        ):
            yield cursor

    def _lock_schema(self, cur: Cursor) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (self.migration_lock,))

    def close(self) -> None:
        """Close the pool's connections; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            pool, self._pool_ = self._pool_, None
        if pool is not None and self._pid == os.getpid():
            pool.close()
