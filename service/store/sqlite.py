"""The embedded SQLite backend: one file, WAL, one connection per thread, ``BEGIN IMMEDIATE`` writes.

Durability: a write method returns after ``COMMIT``; in WAL mode with ``synchronous=NORMAL`` a
committed transaction survives the process being killed (``kill -9``), though not a power loss
or OS crash (``synchronous="FULL"`` adds an fsync per commit for that). Several threads and
processes may share the file. The threads of one process queue on a lock of their own, and the
batch and label writes of those waiting are committed together (`GroupCommit`); processes queue
on SQLite's lock. Past ``busy_timeout_s`` a writer gets `StoreUnavailable`; readers never wait
for writers.
"""

import os
import random
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

from service.store.base import Merge, StoreError, StoreLimits, StoreUnavailable, WouldBlock
from service.store.group_commit import GroupCommit, LoopCommit, committing
from service.store.sqlstore import Cursor, SqlStore

T = TypeVar("T")
#: Page cache of the write connection (KiB); SQLite's default is 2,000 KiB per connection.
WRITER_CACHE_KIB = 16384

if sqlite3.sqlite_version_info < (3, 35, 0):  # pragma: no cover - Python 3.11 wheels ship 3.40+
    raise ImportError(f"the monitor store needs SQLite >= 3.35 (RETURNING); found {sqlite3.sqlite_version}")

#: Primary result codes meaning "not now": the database is busy, full, unreadable or unwritable.
_UNAVAILABLE = {
    sqlite3.SQLITE_BUSY: "database is locked",
    sqlite3.SQLITE_LOCKED: "database table is locked",
    sqlite3.SQLITE_FULL: "database or disk is full",
    sqlite3.SQLITE_IOERR: "disk I/O error",
    sqlite3.SQLITE_CANTOPEN: "unable to open database file",
    sqlite3.SQLITE_READONLY: "database is read-only",
    sqlite3.SQLITE_NOMEM: "out of memory",
    sqlite3.SQLITE_PROTOCOL: "locking protocol error",
    sqlite3.SQLITE_CORRUPT: "database disk image is malformed",
    sqlite3.SQLITE_NOTADB: "file is not a database",
}


def unavailable(error: sqlite3.Error) -> StoreUnavailable | None:
    """The `StoreUnavailable` an SQLite error stands for, or None for any other error (a bug)."""
    code = getattr(error, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE:
        return StoreUnavailable(_UNAVAILABLE[code & 0xFF])
    message = str(error)
    if isinstance(error, sqlite3.OperationalError) and any(
        text in message for text in _UNAVAILABLE.values()
    ):  # pragma: no cover - older Pythons without sqlite_errorcode
        return StoreUnavailable(message)
    return None


class SqliteStore(SqlStore):
    """`MonitorStore` in one SQLite file (created, with its directory, on first open).

    Parameters
    ----------
    path : path-like
        The database file, e.g. ``XENT_DATA_DIR/monitors.sqlite3``.
    merge : callable
        Merges blobs into one; compaction uses it.
    limits : StoreLimits
        The caps to enforce.
    busy_timeout_s : float, default=5.0
        How long a write waits for the lock before raising `StoreUnavailable`.
    synchronous : {"NORMAL", "FULL"}, default="NORMAL"
        SQLite's ``synchronous`` pragma: NORMAL survives a killed process, FULL a power loss too.
    max_bytes : int, optional
        Largest size of the database file (``PRAGMA max_page_count``); a write past it raises
        `StoreUnavailable` like a full disk, with nothing written.
    rng : random.Random, optional
        Source of the reservoir's sample keys (default: the OS's).
    coarsen_after_s, coarse_bucket_s : int
        Age after which buckets are merged into coarse ones, and the coarse width.
    """

    dialect: ClassVar[str] = "sqlite"

    def __init__(
        self,
        path: str | Path,
        *,
        merge: Merge,
        limits: StoreLimits | None = None,
        busy_timeout_s: float = 5.0,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        max_bytes: int | None = None,
        rng: random.Random | None = None,
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
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"`synchronous` must be NORMAL or FULL; got {synchronous!r}")
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.synchronous = synchronous
        self.inline_writes = synchronous == "NORMAL"  # a commit appends to the WAL, no fsync
        self.max_bytes = max_bytes
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        #: The process's write lock: this process's writers queue here, not in SQLite's busy handler.
        self._writer = threading.Lock()
        self._write_connection_: tuple[sqlite3.Connection, int] | None = None
        self._inline_connection_: tuple[sqlite3.Connection, int] | None = None
        self.group_commit = GroupCommit(
            self._write_connection,
            self._errors,
            self._writer,
            busy_timeout_s,
            inline_connection=self._inline_connection,
        )
        self.loop_commit = LoopCommit(self.group_commit)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StoreUnavailable(f"cannot create {self.path.parent}: {error}") from error
        if migrate:
            self.migrate()

    def _write_connection(self) -> sqlite3.Connection:
        """The process's one connection for writes, used only by the holder of the write lock.

        One connection keeps its page cache across transactions (SQLite drops a connection's cache
        whenever another connection wrote): a reservoir's random keys touch index pages all over,
        and with a connection per thread every write read them again.
        """
        held = self._write_connection_
        if held is not None and held[1] == os.getpid():
            return held[0]
        connection = self._open()
        connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        self._write_connection_ = (connection, os.getpid())
        return connection

    def _inline_connection(self) -> sqlite3.Connection:
        """The process's connection for writes that must not wait (an event loop's), under the write lock.

        Busy timeout 0 (another process writing: `WouldBlock` at once) and no automatic WAL
        checkpoint (the other write connection's commits run it), set once here.
        """
        held = self._inline_connection_
        if held is not None and held[1] == os.getpid():
            return held[0]
        connection = self._open()
        connection.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        connection.execute("PRAGMA busy_timeout=0")
        connection.execute("PRAGMA wal_autocheckpoint=0").fetchall()
        self._inline_connection_ = (connection, os.getpid())
        return connection

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and self._local.pid == os.getpid():
            return connection  # (a forked child opens its own: SQLite connections must not cross a fork)
        connection = self._open()
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection

    def _open(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError("the monitor store is closed")
        connection = sqlite3.connect(
            self.path, timeout=self.busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL").fetchall()
            connection.execute(f"PRAGMA synchronous={self.synchronous}")
            connection.execute("PRAGMA foreign_keys=ON")
            connection.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_s * 1000)}")
            if self.max_bytes is not None:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count={max(1, self.max_bytes // page_size)}").fetchall()
        except BaseException:
            connection.close()
            raise
        with self._lock:
            self._connections.append(connection)
        return connection

    def _write(self, work: Callable[[Cursor], T], *, wait: bool = True) -> T:
        """Run `work` in a write transaction shared with other threads' writes (`GroupCommit`).

        ``wait=False``: `WouldBlock` unless the write lock is free now and commits need no fsync
        (``synchronous=NORMAL``), so the caller may be an event loop.
        """
        if not wait and not self.inline_writes:
            raise WouldBlock("synchronous=FULL: every commit waits for an fsync")
        return self.group_commit.run(work, wait=wait)

    async def _write_soon(self, work: Callable[[Cursor], T]) -> T:
        """Run `work` in this loop turn's shared transaction (`LoopCommit`), or `WouldBlock`."""
        if not self.inline_writes:
            raise WouldBlock("synchronous=FULL: every commit waits for an fsync")
        return await self.loop_commit.run(work)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Cursor]:
        """A write transaction: the write lock from the start, commit on exit, rollback on error."""
        if not self._writer.acquire(timeout=self.busy_timeout_s):
            raise StoreUnavailable(_UNAVAILABLE[sqlite3.SQLITE_BUSY])
        try:
            with self._errors():
                connection = self._write_connection()
                cursor = connection.execute("BEGIN IMMEDIATE")
                with committing(connection), closing(cursor):
                    yield cursor
        finally:
            self._writer.release()
            self.group_commit.released()

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Cursor]:
        """A cursor in autocommit mode: each statement sees one committed snapshot."""
        with self._errors():
            cursor = self._connection().cursor()
            try:
                yield cursor
            finally:
                cursor.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            mapped = unavailable(error)
            if mapped is None:
                raise
            raise mapped from error

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()
        self._local = threading.local()
        self._write_connection_ = self._inline_connection_ = None
