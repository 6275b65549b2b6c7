"""``LockHeld``: a write that must not wait learns when this process's write lock is free again."""

import threading

import pytest

from service.store import LockHeld, StoreLimits, WouldBlock
from tests.store.blobs import blob
from tests.store.conftest import make_store
from tests.store.test_monitors import config


@pytest.fixture
def sqlite_store(db_path):
    store = make_store(db_path, limits=StoreLimits())
    store.put_monitor(config())
    yield store
    store.close()


def test_a_write_held_up_by_a_thread_of_this_process_is_told_when_the_lock_is_free(sqlite_store):
    store = sqlite_store
    started, release = threading.Event(), threading.Event()

    def slow(cur):  # a write of another thread, holding the lock until told to finish
        started.set()
        release.wait(5)
        cur.execute("SELECT 1").fetchall()

    thread = threading.Thread(target=store.group_commit.run, args=(slow,))
    thread.start()
    started.wait(5)
    woken = threading.Event()
    try:
        with pytest.raises(LockHeld) as raised:
            store.write_batch("m", [(60, "", blob(1))], wait=False)
        assert isinstance(raised.value, WouldBlock)
        raised.value.notify(woken.set)
        assert not woken.wait(0.1)  # not while the other write holds the lock
    finally:
        release.set()
        thread.join()
    assert woken.wait(5)  # its thread released the lock: told so
    assert store.write_batch("m", [(60, "", blob(2))], wait=False) == 0
    assert store.read_stats("m", 0, 10**9) == [(60, "", blob(2))]


def test_a_transaction_of_the_store_wakes_the_waiters_when_it_ends(sqlite_store):
    store = sqlite_store
    woken = threading.Event()
    with store._transaction():  # put_monitor, compaction, ...: the same lock, taken directly
        store.group_commit.notify(woken.set)
        assert not woken.is_set()
    assert woken.is_set()


def test_notify_when_the_lock_is_free_already_wakes_at_once(sqlite_store):
    woken = threading.Event()
    sqlite_store.group_commit.notify(woken.set)
    assert woken.is_set()


def test_another_process_holding_sqlites_lock_is_not_lock_held(sqlite_store, db_path):
    import sqlite3

    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(WouldBlock) as raised:
            sqlite_store.write_batch("m", [(60, "", blob(1))], wait=False)
        assert not isinstance(raised.value, LockHeld)  # nothing of this process to wait for: a thread waits
    finally:
        locker.execute("ROLLBACK")
        locker.close()


def test_a_coroutine_waits_for_the_lock_on_its_loop_until_freed_or_its_timeout():
    import asyncio
    import time

    wakes: list = []
    held = LockHeld("held", wakes.append)

    async def run() -> tuple[float, float]:
        start = time.monotonic()
        waiting = asyncio.ensure_future(held.freed(5.0))
        await asyncio.sleep(0.05)
        assert not waiting.done() and len(wakes) == 1
        threading.Thread(target=wakes[0]).start()  # the lock freed, from another thread
        await waiting
        freed_after = time.monotonic() - start
        start = time.monotonic()
        await held.freed(0.1)  # never freed: back after its timeout
        return freed_after, time.monotonic() - start

    freed_after, timed_out_after = asyncio.run(run())
    assert 0.04 <= freed_after < 2.0  # (timers may fire within the clock's resolution early)
    assert 0.09 <= timed_out_after < 2.0
