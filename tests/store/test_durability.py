import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from service.store import MonitorConfig, PendingRow, StoreLimits, StoreUnavailable
from tests.store.blobs import blob, total
from tests.store.conftest import assert_counters_match, make_store
from tests.store.writer import PENDING, batch, expected_reservoir, labelled

#: The monitor's reservoir: smaller than the labelled rows written, so writes rewrite its blocks.
RESERVOIR = 64


def start_writer(path, worker, n):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-m", "tests.store.writer", str(path), str(worker), str(n)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def create_monitor(path):
    store = make_store(path, limits=StoreLimits(max_segments=100))
    forever = 10**10  # the batches are stamped near 1970: keep them
    store.put_monitor(
        MonitorConfig(
            "m",
            n_classes=2,
            binary=False,
            class_names=None,
            label_ttl_s=forever,
            retention_s=forever,
            reservoir_size=RESERVOIR,
        )
    )
    return store


@pytest.mark.parametrize("kill_after", [37, 300])
def test_every_acknowledged_batch_survives_kill_9(db, kill_after):
    db_path = db
    create_monitor(db_path).close()
    writer = start_writer(db_path, 1, -1)
    acknowledged = []
    for line in writer.stdout:
        acknowledged.append(int(line))
        if len(acknowledged) == kill_after:
            break
    writer.send_signal(signal.SIGKILL)  # mid-way: the writer is in its next transaction or about to be
    acknowledged += [int(line) for line in writer.stdout]  # acks already in the pipe count too
    writer.wait()
    writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    if not isinstance(db_path, str):
        with sqlite3.connect(db_path) as connection:
            assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store = make_store(db_path)
    rows = store.read_stats("m", 0, 10**12)
    found = {b // 60 for b, _, _ in rows}
    assert set(acknowledged) <= found
    assert len(found) <= len(acknowledged) + 1  # at most the one batch in flight committed unacknowledged
    # the reservoir holds the smallest keys of the committed batches' labelled rows, nothing else
    kept = store.reservoir("m", 0.0, 1e12, 10**6)
    assert kept == expected_reservoir([(1, i) for i in sorted(found)], RESERVOIR)
    for i in found:  # each batch whole: its stats row and all its pending rows, or nothing
        stats, pending = batch(1, i)
        assert store.read_stats("m", i * 60, i * 60 + 1) == stats
        ids = [row.id for row in pending]
        assert store.join_labels("m", ids, 0.0, lambda rows, labels: [], [0] * PENDING).joined == PENDING
    store.close()


def test_processes_and_threads_writing_at_once_lose_nothing(db):
    db_path = db
    """8 processes x 200 batches and 2 threads x 100 batches on one file, compaction running: totals exact."""
    store = create_monitor(db_path)
    writers = [start_writer(db_path, worker, 200) for worker in range(8)]

    def write_in_thread(worker):
        for i in range(100):
            stats, pending = batch(worker, i)
            store.write_batch("m", stats, pending=pending, labelled=labelled(worker, i), now=0.0)

    threads = [threading.Thread(target=write_in_thread, args=(worker,)) for worker in (8, 9)]
    for thread in threads:
        thread.start()
    compactions = 0
    while any(w.poll() is None for w in writers) or any(t.is_alive() for t in threads):
        store.compact(time.time())
        compactions += 1
        time.sleep(0.05)
    for thread in threads:
        thread.join()
    outputs = [w.communicate()[0] for w in writers]
    assert [w.returncode for w in writers] == [0] * 8
    assert [len(out.split()) for out in outputs] == [200] * 8
    store.compact(time.time())
    expected = [0.0, 0.0, 0.0]
    for worker, n in [*((w, 200) for w in range(8)), (8, 100), (9, 100)]:
        expected = [expected[0] + n, expected[1] + worker * n, expected[2] + n * (n - 1) / 2]
    rows = store.read_stats("m", 0, 10**12)
    assert total(rows).tolist() == expected
    # compacted into hours (the buckets are more than a day old): 200 minutes span 4, 100 span 2
    assert sorted((s, b) for b, s, _ in rows) == sorted(
        [(f"w{w}", h * 3600) for w in range(8) for h in range(4)]
        + [(f"w{w}", h * 3600) for w in (8, 9) for h in range(2)]
    )
    written = [(w, i) for w in range(8) for i in range(200)] + [(w, i) for w in (8, 9) for i in range(100)]
    assert store.reservoir("m", 0.0, 1e12, 10**6) == expected_reservoir(written, RESERVOIR)
    ids = [f"{w}-{i}-{j}" for w in range(8) for i in range(200) for j in range(PENDING)]
    ids += [f"{w}-{i}-{j}" for w in (8, 9) for i in range(100) for j in range(PENDING)]
    assert store.join_labels("m", ids, 0.0, lambda rows, labels: [], [0] * len(ids)).joined == len(ids)
    assert compactions > 1
    assert_counters_match(db_path)
    store.close()


def test_a_locked_database_raises_store_unavailable_and_writes_nothing(db_path):
    store = make_store(db_path, busy_timeout_s=0.2)
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None))
    store.write_batch("m", [(0, "a", blob(1))], now=0.0)
    holder = sqlite3.connect(db_path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO segments VALUES ('m', 'held')")
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="database is locked"):
        store.write_batch(
            "m", [(60, "a", blob(2))], pending=[PendingRow("x", 60.0, "b", "probs", "<f8", b"")]
        )
    assert 0.15 < time.monotonic() - started < 5
    with pytest.raises(StoreUnavailable):
        store.compact(time.time())
    assert store.read_stats("m", 0, 10**9) == [(0, "a", blob(1))]  # readers are not blocked
    holder.execute("ROLLBACK")
    holder.close()
    assert store.read_stats("m", 0, 10**9) == [(0, "a", blob(1))]
    assert store.segments("m") == ["a"]
    assert store.join_labels("m", ["x"], 60.0, lambda rows, labels: [], [0]).unknown == 1
    store.write_batch("m", [(60, "a", blob(2))], now=0.0)  # and the store works again
    assert len(store.read_stats("m", 0, 10**9)) == 2
    store.close()


def test_a_full_database_raises_store_unavailable_and_writes_nothing(db_path):
    # (schema v6 added pages: 320 KB leaves room for a few batches before the cap)
    store = make_store(db_path, max_bytes=320 * 1024, limits=StoreLimits(max_pending_rows=10**6))
    # (no reservoir: the join below only counts the pending ids; copying them needs room of its own)
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, reservoir_size=0))
    big = b"\1" * 20_000
    written = []
    with pytest.raises(StoreUnavailable, match="database or disk is full"):
        for i in range(100):
            pending = [PendingRow(f"{i}-{j}", 0.0, "a", "probs", "<f8", big) for j in range(3)]
            store.write_batch("m", [(i * 60, "a", blob(i))], pending=pending, now=0.0)
            written.append(i)
    failed = len(written)
    assert 3 <= failed < 100
    assert [b // 60 for b, _, _ in store.read_stats("m", 0, 10**9)] == written
    ids = [f"{i}-{j}" for i in [*written, failed] for j in range(3)]
    counts = store.join_labels("m", ids, 0.0, lambda rows, labels: [], [0] * len(ids))
    assert (counts.joined, counts.unknown) == (3 * failed, 3)  # the failed batch left nothing
    store.write_batch("m", [(0, "a", blob(1))], pending=[PendingRow("after", 0.0, "a", "probs", "<f8", big)])
    assert_counters_match(db_path)
    store.close()


def _write_from_child(store):
    store.write_batch("m", [(60, "child", blob(2))])


def test_a_forked_child_opens_its_own_connection(store):
    import multiprocessing

    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None))
    store.write_batch("m", [(0, "parent", blob(1))])  # the parent's connection exists before the fork
    child = multiprocessing.get_context("fork").Process(target=_write_from_child, args=(store,))
    child.start()
    child.join()
    assert child.exitcode == 0
    assert store.read_stats("m", 0, 10**9) == [(0, "parent", blob(1)), (60, "child", blob(2))]
