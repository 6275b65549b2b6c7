"""``write_batch``'s `expect` (the config checked inside the transaction) and ``wait=False`` (never wait)."""

import sqlite3
import threading
import time
from dataclasses import replace

import pytest

from service.store import ConfigChanged, MonitorNotFound, StoreLimits, WouldBlock
from service.store.group_commit import INLINE_CHECKPOINT_EVERY
from tests.store.blobs import blob
from tests.store.conftest import make_store
from tests.store.test_monitors import config


def test_a_stale_expected_config_writes_nothing_and_names_the_stored_one(db, store, monitor):
    other = make_store(db, limits=StoreLimits())  # another process or replica
    try:
        changed, _ = other.put_monitor(replace(monitor, retention_s=3600))
    finally:
        other.close()
    with pytest.raises(ConfigChanged) as raised:
        store.write_batch("m", [(60, "", blob(1))], expect=monitor)
    assert raised.value.config == changed and raised.value.config != monitor
    assert store.read_stats("m", 0, 10**9) == []
    store.write_batch("m", [(60, "", blob(1))], expect=raised.value.config)
    assert store.read_stats("m", 0, 10**9) == [(60, "", blob(1))]


def test_an_expected_config_of_a_monitor_deleted_since_is_not_found(db, store, monitor):
    other = make_store(db, limits=StoreLimits())
    try:
        assert other.delete_monitor("m")
    finally:
        other.close()
    with pytest.raises(MonitorNotFound):
        store.write_batch("m", [(60, "", blob(1))], expect=monitor)


def test_a_temperature_set_since_is_a_changed_config(db, store, monitor):
    other = make_store(db, limits=StoreLimits())
    try:
        other.set_temperature("m", 1.5)
    finally:
        other.close()
    with pytest.raises(ConfigChanged) as raised:
        store.write_batch("m", [(60, "", blob(1))], expect=monitor)
    assert raised.value.config is not None and raised.value.config.temperature == 1.5


def test_only_sqlite_with_synchronous_normal_writes_without_waiting(db, monitor):
    sqlite = not str(db).startswith("postgresql://")
    settings = [{}, {"synchronous": "FULL"}] if sqlite else [{}]
    for options in settings:
        store = make_store(db, limits=StoreLimits(), **options)
        try:
            assert store.inline_writes == (sqlite and not options)
            if not store.inline_writes:
                with pytest.raises(WouldBlock):
                    store.write_batch("m", [(60, "", blob(1))], wait=False)
                assert store.read_stats("m", 0, 10**9) == []
        finally:
            store.close()


def test_sqlite_wait_false_commits_when_the_lock_is_free(db_path):
    store = make_store(db_path, limits=StoreLimits())
    try:
        store.put_monitor(config())
        commits = store.group_commit.commits
        assert store.write_batch("m", [(60, "", blob(2))], wait=False) == 0
        assert store.group_commit.commits == commits + 1
        assert store.read_stats("m", 0, 10**9) == [(60, "", blob(2))]
    finally:
        store.close()


def test_sqlite_wait_false_does_not_wait_for_another_thread(db_path):
    store = make_store(db_path, limits=StoreLimits())
    try:
        store.put_monitor(config())
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            with store._writer:
                held.set()
                release.wait(5)

        thread = threading.Thread(target=hold)
        thread.start()
        held.wait(5)
        try:
            with pytest.raises(WouldBlock):
                store.write_batch("m", [(60, "", blob(3))], wait=False)
            assert store.group_commit._queue == []  # nothing left queued for a later leader
        finally:
            release.set()
            thread.join()
        assert store.read_stats("m", 0, 10**9) == []
    finally:
        store.close()


def test_sqlite_wait_false_does_not_wait_for_another_process(db_path):
    store = make_store(db_path, limits=StoreLimits(), busy_timeout_s=5.0)
    try:
        store.put_monitor(config())
        locker = sqlite3.connect(db_path, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process writing
        try:
            start = time.monotonic()
            with pytest.raises(WouldBlock):
                store.write_batch("m", [(60, "", blob(4))], wait=False)
            assert time.monotonic() - start < 1.0  # not the 5 s busy timeout
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert not store._inline_connection().in_transaction
        assert store._write_connection().execute("PRAGMA busy_timeout").fetchone()[0] == 5000  # the pool's
        assert store.write_batch("m", [(60, "", blob(5))], wait=False) == 0
        assert store.read_stats("m", 0, 10**9) == [(60, "", blob(5))]
    finally:
        store.close()


def test_sqlite_writes_that_do_not_wait_leave_the_wal_checkpoint_to_a_thread(tmp_path):
    """An automatic checkpoint (~1,000 pages copied and synced) never runs in a write that must not wait."""
    big = blob(*range(5000))  # 40 kB: ~10 pages a write
    sizes = {}
    for wait in (True, False):
        path = tmp_path / str(wait) / "monitors.sqlite3"
        store = make_store(path, limits=StoreLimits())
        try:
            store.put_monitor(config())
            for i in range(INLINE_CHECKPOINT_EVERY - 2):
                store.write_batch("m", [(60 * i, "", big)], wait=wait)
            sizes[wait] = path.with_name(path.name + "-wal").stat().st_size
            if not wait:  # the next one goes to a thread, whose commit checkpoints
                store.write_batch("m", [(60 * 10**4, "", big)], wait=False)
                with pytest.raises(WouldBlock, match="checkpoints"):
                    store.write_batch("m", [(60 * 10**5, "", big)], wait=False)
        finally:
            store.close()
    page = 4096
    assert sizes[True] < 1100 * page  # the WAL restarted after ~1,000 pages
    assert sizes[False] > (INLINE_CHECKPOINT_EVERY - 2) * len(big)  # every write still in it
