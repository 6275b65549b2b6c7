"""SQLite group commit: queued writes share one transaction; each one's error rolls back only itself."""

import threading
import time

import pytest

from service.core.cancel import Cancelled, deadline
from service.store import MonitorConfig, MonitorNotFound, StoreLimit, StoreLimits
from tests.store.blobs import blob, total
from tests.store.conftest import assert_counters_match, make_store
from tests.store.test_batches import pending


def run_grouped(store, calls):
    """Queue `calls` (each a function of the store) while the write lock is held, then release it.

    Returns each call's result or exception, in order; every call was queued (in order) before any
    ran, so the first thread to get the lock commits all of them together.
    """
    outcomes: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            outcomes[i] = calls[i](store)
        except Exception as error:  # the outcome under test
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with store._writer:
        for queued, thread in enumerate(threads, start=1):
            thread.start()
            while len(store.group_commit._queue) < queued:  # queued in the order of `calls`
                time.sleep(0.001)
    for thread in threads:
        thread.join()
    return outcomes


def test_queued_writes_commit_together_and_a_failing_one_alone_is_rolled_back(db_path):
    store = make_store(db_path, limits=StoreLimits(max_pending_rows=3))
    store.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))
    store.group_commit.commits = store.group_commit.works = 0
    calls = [  # (now=100: the pending rows, of time 100, are not expired)
        lambda s: s.write_batch("m", [(60, "", blob(1))], now=100.0),
        lambda s: s.write_batch("absent", [(60, "", blob(100))], now=100.0),  # no such monitor
        lambda s: s.write_batch("m", [(60, "", blob(2))], [pending("a"), pending("b")], now=100.0),
        lambda s: s.write_batch("m", [(60, "", blob(1000))], [pending(f"c{i}") for i in range(3)], now=100.0),
        lambda s: s.write_batch("m", [(120, "", blob(4))], [pending("a")], now=100.0),  # "a" is pending
    ]
    outcomes = run_grouped(store, calls)
    assert outcomes[0] == 0 and outcomes[2] == 0 and outcomes[4] == 1
    assert isinstance(outcomes[1], MonitorNotFound) and isinstance(outcomes[3], StoreLimit)
    assert (store.group_commit.commits, store.group_commit.works) == (1, 3)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [7.0]  # 1 + 2 + 4: not 100, not 1000
    assert store.join_labels("m", ["a", "b", "c0"], 100.0, lambda rows, labels: [], [0, 0, 0]).joined == 2
    assert_counters_match(db_path)
    store.close()


def test_a_write_whose_deadline_passed_is_not_run(db_path):
    store = make_store(db_path)
    store.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))

    def late(s):
        with deadline(0.0):  # passed by the time a leader comes to it
            return s.write_batch("m", [(60, "", blob(5))])

    outcomes = run_grouped(store, [lambda s: s.write_batch("m", [(60, "", blob(1))]), late])
    assert outcomes[0] == 0 and isinstance(outcomes[1], Cancelled)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [1.0]
    with pytest.raises(Cancelled), deadline(0.0):  # alone, too
        store.write_batch("m", [(60, "", blob(5))])
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [1.0]
    store.close()
