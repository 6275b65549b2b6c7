"""``LoopCommit``: the writes of one event-loop turn share one transaction and one COMMIT.

Each write keeps its own outcome (its error rolls back only itself); a transaction that cannot
begin at once fails every write of the turn with nothing written.
"""

import asyncio
import sqlite3
import threading

import pytest

from service.store import (
    LockHeld,
    MonitorConfig,
    MonitorNotFound,
    StoreLimit,
    StoreLimits,
    StoreUnavailable,
    WouldBlock,
)
from tests.store.blobs import blob, total
from tests.store.conftest import assert_counters_match, make_store
from tests.store.test_batches import pending


@pytest.fixture
def sqlite_store(db_path):
    store = make_store(db_path, limits=StoreLimits(max_pending_rows=3))
    store.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))
    yield store
    store.close()


async def _outcomes(*writes):
    """Each write's result or exception, the writes started together (one turn of the loop)."""
    return await asyncio.gather(*writes, return_exceptions=True)


def test_writes_of_one_turn_commit_together_and_a_failing_one_alone_is_rolled_back(sqlite_store):
    store = sqlite_store
    commits, works = store.group_commit.commits, store.group_commit.works
    outcomes = asyncio.run(
        _outcomes(
            store.write_batch_soon("m", [(60, "", blob(1))], now=100.0),
            store.write_batch_soon("absent", [(60, "", blob(100))], now=100.0),  # no such monitor
            store.write_batch_soon("m", [(60, "", blob(2))], [pending("a"), pending("b")], now=100.0),
            store.write_batch_soon(
                "m", [(60, "", blob(1000))], [pending(f"c{i}") for i in range(3)], now=100.0
            ),
            store.write_batch_soon("m", [(120, "", blob(4))], [pending("a")], now=100.0),  # "a" is pending
        )
    )
    assert outcomes[0] == 0 and outcomes[2] == 0 and outcomes[4] == 1
    assert isinstance(outcomes[1], MonitorNotFound) and isinstance(outcomes[3], StoreLimit)
    assert (store.group_commit.commits - commits, store.group_commit.works - works) == (1, 3)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [7.0]  # 1 + 2 + 4: not 100, not 1000
    assert store.join_labels("m", ["a", "b", "c0"], 100.0, lambda rows, labels: [], [0, 0, 0]).joined == 2
    assert_counters_match(store.path)


def test_many_writes_of_many_turns_lose_nothing(sqlite_store):
    store = sqlite_store
    commits, works = store.group_commit.commits, store.group_commit.works

    async def writer(i: int) -> None:
        for j in range(25):
            await store.write_batch_soon("m", [(60 * (j % 4), str(i % 3), blob(i * 100 + j))])

    async def main() -> None:
        await asyncio.gather(*(writer(i) for i in range(8)))

    asyncio.run(main())
    assert store.group_commit.works - works == 200
    assert store.group_commit.commits - commits < 200 / 4  # 8 writers: ~8 a commit (some go to a thread)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [
        sum(i * 100 + j for i in range(8) for j in range(25))
    ]


def test_a_turn_that_cannot_begin_at_once_writes_nothing(sqlite_store):
    store = sqlite_store
    other = sqlite3.connect(store.path, isolation_level=None)  # another process's writer, in effect
    other.execute("BEGIN IMMEDIATE")
    try:
        outcomes = asyncio.run(
            _outcomes(*(store.write_batch_soon("m", [(60, "", blob(i))]) for i in range(3)))
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert all(type(outcome) is WouldBlock for outcome in outcomes)
    assert store.read_stats("m", 0, 10**9) == []

    with store._writer:  # a thread of this process writing: LockHeld, each with its own notify
        outcomes = asyncio.run(
            _outcomes(*(store.write_batch_soon("m", [(60, "", blob(i))]) for i in range(3)))
        )
    assert all(isinstance(outcome, LockHeld) for outcome in outcomes)
    assert len({id(outcome) for outcome in outcomes}) == 3
    assert store.read_stats("m", 0, 10**9) == []
    woken = threading.Event()
    outcomes[0].notify(woken.set)
    assert woken.wait(1)  # the lock is free again


def test_a_write_cancelled_before_its_turn_commits_is_not_written(sqlite_store):
    store = sqlite_store

    async def main() -> object:
        kept = asyncio.ensure_future(store.write_batch_soon("m", [(60, "", blob(1))]))
        dropped = asyncio.ensure_future(store.write_batch_soon("m", [(60, "", blob(10))]))
        await asyncio.sleep(0)  # both queued in this turn
        dropped.cancel()  # (a request's deadline)
        return await kept

    assert asyncio.run(main()) == 0
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [1.0]


def test_a_full_database_fails_writes_of_a_turn_with_nothing_of_them_written(db_path):
    """Turns of 3 writes until the database is full: each write is committed whole or fails whole."""
    store = make_store(db_path, max_bytes=320 * 1024, limits=StoreLimits(max_pending_rows=10**6))
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, reservoir_size=0))
    big = b"\1" * 5_000

    def write(i: int):
        rows = [pending(f"{i}-{j}", 0.0, "a", big) for j in range(3)]
        return store.write_batch_soon("m", [(i * 60, "a", blob(i))], rows, now=0.0)

    outcomes: list[object] = []
    for turn in range(20):
        outcomes += asyncio.run(_outcomes(*(write(3 * turn + i) for i in range(3))))
    written = [i for i, outcome in enumerate(outcomes) if outcome == 0]
    failed = [outcome for outcome in outcomes if outcome != 0]
    assert 6 <= len(written) < 60
    assert all(isinstance(outcome, StoreUnavailable) and "disk is full" in str(outcome) for outcome in failed)
    assert [b // 60 for b, _, _ in store.read_stats("m", 0, 10**9)] == written
    ids = [f"{i}-{j}" for i in range(60) for j in range(3)]
    counts = store.join_labels("m", ids, 0.0, lambda rows, labels: [], [0] * len(ids))
    assert (counts.joined, counts.unknown) == (3 * len(written), 3 * (60 - len(written)))
    assert_counters_match(db_path)
    store.close()
