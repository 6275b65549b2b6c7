"""Group commit for SQLite: the writes of concurrent threads share one transaction and one COMMIT.

SQLite has one writer at a time. Threads that queue on its lock wait in its busy handler, which
sleeps in steps of milliseconds; and with ``synchronous=FULL`` every COMMIT is an fsync. Here a
thread that wants to write puts its work in a queue and takes the process's write lock; whoever
holds the lock (the *leader*) runs every queued work in one ``BEGIN IMMEDIATE`` transaction,
each inside its own ``SAVEPOINT`` (so one work's error rolls back that work only), commits once,
and hands every thread its result. A thread whose work a leader took waits for the lock and
finds its work done: each caller returns only after the COMMIT that holds its write returned,
so a 2xx still means committed. A single writer pays two SAVEPOINT statements less: alone in its
transaction it needs none.

A work whose request deadline (:mod:`service.core.cancel`) has passed when a leader comes to
it is not run (`Cancelled`): its request was answered 503 already, and it must not commit.

A caller that must not wait (an event loop writing a small batch) asks ``run(..., wait=False)``:
its work runs alone, at once, if neither this process's lock nor SQLite's is held and no thread
is queued; otherwise `WouldBlock`, with nothing done. When a thread of this process holds the
lock or has a write queued, that is `LockHeld`, whose ``notify`` tells the caller when the lock is
free again: it tries again then, still without waiting, instead of sending its write to a
thread (which would hold the lock in turn and send the next small writes to threads, and so on:
under steady load every write then took the slower way). Otherwise (SQLite's lock held by
another process, or a write due to checkpoint the WAL) it calls again with ``wait=True`` from a
thread.

An event loop's small writes go through `LoopCommit`: the writes of one turn of the loop run
together in one such transaction (:meth:`GroupCommit.run_now` takes a list), each in its
``SAVEPOINT``, with one COMMIT, and each request resumes after it. The one transaction in
``INLINE_CHECKPOINT_EVERY`` sent to a thread is then a whole turn's writes.
"""

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, closing, contextmanager, suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from service.core.cancel import Cancelled, current_deadline
from service.store.base import LockHeld, StoreUnavailable, WouldBlock

T = TypeVar("T")
#: One in this many writes asked not to wait goes to a thread, where its COMMIT checkpoints the WAL.
INLINE_CHECKPOINT_EVERY = 128


@dataclass(eq=False)
class _Work:
    run: Callable[[sqlite3.Cursor], Any]
    deadline: float | None
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@contextmanager
def committing(connection: sqlite3.Connection) -> Iterator[None]:
    """COMMIT the transaction begun on `connection` when the block ends, ROLLBACK if it raises."""
    try:
        yield
        connection.execute("COMMIT")
    except BaseException:
        roll_back(connection)
        raise


def roll_back(connection: sqlite3.Connection) -> None:
    """ROLLBACK the open transaction on `connection`, unless SQLite rolled it back already (a full disk).

    An error of the ROLLBACK itself is dropped: the error that led here says more.
    """
    if connection.in_transaction:
        with suppress(sqlite3.Error):
            connection.execute("ROLLBACK")


def _late(work: _Work) -> bool:
    return work.deadline is not None and time.monotonic() >= work.deadline


class GroupCommit:
    """Runs the writes of one process's threads in shared transactions (module docstring).

    Parameters
    ----------
    connection : callable
        The calling thread's connection (the leader's is used for the whole group).
    errors : callable
        A context manager turning the engine's "locked / full / I/O" errors into `StoreUnavailable`.
    lock : threading.Lock
        The process's write lock; every other write transaction of the store takes it too.
    timeout_s : float
        How long a thread waits for the lock before `StoreUnavailable` ("database is locked").
    inline_connection : callable, optional
        The connection of writes that must not wait (:meth:`_run_now`): a busy timeout of 0 and
        no automatic WAL checkpoint, set once when it is opened.
    """

    def __init__(
        self,
        connection: Callable[[], sqlite3.Connection],
        errors: Callable[[], AbstractContextManager[None]],
        lock: threading.Lock,
        timeout_s: float,
        inline_connection: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self._connection = connection
        self._inline_connection = inline_connection or connection
        self._errors = errors
        self.lock = lock
        self.timeout_s = timeout_s
        self._queue: list[_Work] = []
        self._queue_lock = threading.Lock()
        #: Transactions committed and works they held (for tests and the benchmark).
        self.commits = 0
        self.works = 0
        self._inline = 0  # writes run at once since the last one sent to a thread
        self._wakers: list[Callable[[], None]] = []  # told when the lock is free (`notify`)

    def run(self, run: Callable[[sqlite3.Cursor], T], *, wait: bool = True) -> T:
        """Run `run(cursor)` in a write transaction, with whatever other threads queued; its result.

        ``wait=False``: alone, now, or `WouldBlock` (:meth:`_run_now`), for a caller that must not
        wait (an event loop).
        """
        if not wait:
            return self._run_now(run)
        work = _Work(run, current_deadline())
        with self._queue_lock:
            self._queue.append(work)
        if not self.lock.acquire(timeout=self.timeout_s):
            with self._queue_lock:
                if any(w is work for w in self._queue):  # no leader took it: give up, nothing written
                    self._queue.remove(work)
                    raise StoreUnavailable("database is locked")
            self.lock.acquire()  # a leader is committing it: wait for the outcome
        try:
            if not work.done:  # not taken by an earlier leader: lead the queue, this work included
                self._lead()
        finally:
            self.lock.release()
            self.released()
        if work.error is not None:
            raise work.error
        return work.result

    def _run_now(self, run: Callable[[sqlite3.Cursor], T]) -> T:
        """`run` alone in a transaction begun at once, or `WouldBlock` with nothing done (:meth:`run_now`)."""
        work = _Work(run, current_deadline())
        self.run_now([work])
        if work.error is not None:
            raise work.error
        result: T = work.result
        return result

    def run_now(self, works: list[_Work]) -> None:
        """`works` in one transaction begun at once, each outcome in its own ``result`` / ``error``.

        At once: the process's lock is free and no thread queued a write, and SQLite's lock is
        free too (``BEGIN IMMEDIATE`` on the inline connection, whose busy timeout is 0: another
        process writing makes it fail rather than wait). In WAL mode only that BEGIN can wait for
        another writer. Otherwise every work gets `LockHeld` or `WouldBlock`, and nothing is
        written. Several works share the transaction as a leader's group does (each in its
        own ``SAVEPOINT``): one work's error rolls back that work only, an error of the
        transaction itself (a full disk) fails every work, with nothing written.

        Its COMMIT never checkpoints the WAL (an automatic checkpoint copies ~1,000 pages and
        syncs the database file: milliseconds); every ``INLINE_CHECKPOINT_EVERY``-th such
        transaction is sent to a thread instead (`WouldBlock`), whose commit on the other
        connection checkpoints as usual.
        """
        if not self.lock.acquire(blocking=False):
            self._settle(works, lambda: LockHeld("another write holds the lock", self.notify, self.timeout_s))
            return
        try:
            if self._queue:  # another thread is about to lead these: it goes first
                self._settle(works, lambda: LockHeld("other writes are queued", self.notify, self.timeout_s))
                return
            self._inline += 1
            if self._inline >= INLINE_CHECKPOINT_EVERY:
                self._inline = 0
                self._settle(works, lambda: WouldBlock("this write checkpoints the WAL, in a thread"))
                return
            self._run_group(works, self._inline_connection, self._begin_now)
        finally:
            self.lock.release()

    @staticmethod
    def _settle(works: list[_Work], error: Callable[[], BaseException]) -> None:
        """Every work not failed yet fails with an ``error()`` of its own; nothing of them was written."""
        for work in works:
            if work.error is None:
                work.error = error()
            work.result = None
            work.done = True

    def notify(self, wake: Callable[[], None]) -> None:
        """Call `wake` once the lock is free with no write queued: now if it is, else when released.

        The lock is checked after `wake` is registered, under the queue's lock that
        :meth:`released` takes after every release, so a release between a caller's failed
        attempt and this call is never missed.
        """
        with self._queue_lock:
            self._wakers.append(wake)
        if not self.lock.locked() and not self._queue:
            self.released()

    def released(self) -> None:
        """The lock was released: wake the callers waiting for it (:meth:`notify`), unless writes are queued.

        Every holder of the lock calls this after releasing it (a queued write's own thread
        releases it after its leader, and calls this then).
        """
        with self._queue_lock:
            if self._queue or not self._wakers:
                return
            wakers, self._wakers = self._wakers, []
        for wake in wakers:
            wake()

    @staticmethod
    def _begin_now(connection: sqlite3.Connection) -> None:
        """``BEGIN IMMEDIATE`` (busy timeout 0): `WouldBlock` if another connection holds the write lock."""
        try:
            connection.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if getattr(error, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_BUSY:
                raise
            raise WouldBlock("another process holds the database's write lock") from error

    def _lead(self) -> None:
        with self._queue_lock:
            works, self._queue = self._queue, []
        self._run_group(works, self._connection, self._begin)

    def _run_group(
        self,
        works: list[_Work],
        connection: Callable[[], sqlite3.Connection],
        begin: Callable[[sqlite3.Connection], None],
    ) -> None:
        """`works` in one transaction on `connection`, begun by `begin`; each outcome in its work."""
        try:
            with self._errors():
                self._commit(works, connection(), begin)
        except BaseException as error:  # the transaction failed as a whole: nothing of it was written
            failed = error
            self._settle(
                works,
                lambda: StoreUnavailable(failed.reason) if isinstance(failed, StoreUnavailable) else failed,
            )
        finally:
            for work in works:
                work.done = True

    @staticmethod
    def _begin(connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")

    def _commit(
        self, works: list[_Work], connection: sqlite3.Connection, begin: Callable[[sqlite3.Connection], None]
    ) -> None:
        live = [work for work in works if not _late(work)]
        for work in works:
            if _late(work):
                work.error = Cancelled(
                    "the request's deadline passed before its write began; nothing written"
                )
        if not live:
            return
        begin(connection)
        try:  # (what `committing` does, without a generator's context manager per transaction)
            if len(live) == 1:
                self._run_alone(connection, live[0])
            else:
                for work in live:
                    self._run_nested(connection, work)
            connection.execute("COMMIT")
        except BaseException:
            roll_back(connection)
            raise
        self.commits += 1
        self.works += sum(work.error is None for work in live)

    def _run_alone(self, connection: sqlite3.Connection, work: _Work) -> None:
        # An error rolls the whole (one-work) transaction back; `_run_group` maps SQLite's.
        cursor = connection.cursor()
        try:
            work.result = work.run(cursor)
        finally:
            cursor.close()

    def _run_nested(self, connection: sqlite3.Connection, work: _Work) -> None:
        connection.execute("SAVEPOINT work")
        try:
            with self._errors(), closing(connection.cursor()) as cursor:
                work.result = work.run(cursor)
        except Exception as error:
            if not connection.in_transaction:  # SQLite rolled the whole transaction back
                raise
            connection.execute("ROLLBACK TO work")
            connection.execute("RELEASE work")
            work.error, work.result = error, None
            return
        connection.execute("RELEASE work")


class LoopCommit:
    """The small writes of an event loop's requests, committed together once per turn of the loop.

    A request on the loop hands its work to :meth:`run` and awaits it. The first work of a turn
    schedules a flush (``loop.call_soon``: it runs after every callback already ready in this
    turn, the steps of the other requests that arrived with it); the flush runs every work
    queued by then in one transaction (:meth:`GroupCommit.run_now`, each work in its own
    ``SAVEPOINT``) and commits once: N requests of one turn pay one ``BEGIN`` and one
    ``COMMIT``. Each request resumes only after that COMMIT returned, with its own outcome:
    its result, or its own error (a missing monitor, a changed config, a used key: that work
    alone is rolled back), or the error of the transaction (a full disk, a locked database:
    `StoreUnavailable` for every work of the group, nothing written), or `LockHeld` /
    `WouldBlock` for every work when the transaction could not begin at once (nothing
    written; each request then waits or goes to a thread as it would have alone). A request
    cancelled before the flush (its deadline's timer) is dropped from the group, unwritten.
    """

    def __init__(self, group: GroupCommit) -> None:
        self._group = group
        self._turns: dict[asyncio.AbstractEventLoop, list[tuple[_Work, asyncio.Future[None]]]] = {}

    async def run(self, run: Callable[[sqlite3.Cursor], T]) -> T:
        """`run(cursor)` in this turn's shared transaction; its result once that committed."""
        loop = asyncio.get_running_loop()
        work = _Work(run, current_deadline())
        future: asyncio.Future[None] = loop.create_future()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = []
            loop.call_soon(self._flush, loop)
        turn.append((work, future))
        await future
        if work.error is not None:
            raise work.error
        result: T = work.result
        return result

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        live = [(work, future) for work, future in self._turns.pop(loop, []) if not future.cancelled()]
        try:
            if live:
                self._group.run_now([work for work, _ in live])
        finally:
            for work, future in live:
                if not work.done and work.error is None:  # (run_now settles every work; never left)
                    work.error = StoreUnavailable("the write was not run; nothing written")
                if not future.done():
                    future.set_result(None)
