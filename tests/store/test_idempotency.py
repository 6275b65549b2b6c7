"""Idempotency keys in the store, on both backends: stored in the write's transaction, swept by compaction."""

import threading

import pytest

from service.store import IdempotencyKey, KeyReused, Replayed, StoreLimits
from tests.store.blobs import blob, total
from tests.store.conftest import make_store, query
from tests.store.test_batches import pending


def key(name: str, body: bytes = b"body") -> IdempotencyKey:
    return IdempotencyKey(name, body.ljust(32, b"."), lambda result: f"answer {result}".encode())


def test_a_key_replays_its_answer_and_writes_nothing_again(store, monitor):
    assert store.write_batch("m", [(60, "", blob(1))], [pending("a")], key=key("k"), now=100.0) == 0
    with pytest.raises(Replayed) as replay:
        store.write_batch("m", [(60, "", blob(1))], [pending("a")], key=key("k"), now=101.0)
    assert replay.value.answer == b"answer 0"
    with pytest.raises(KeyReused):
        store.write_batch("m", [(60, "", blob(5))], key=key("k", b"other"), now=102.0)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [1.0]
    counts = store.join_labels("m", ["a"], 103.0, lambda rows, labels: [], [0], key=key("j"))
    with pytest.raises(Replayed) as replay:
        store.join_labels("m", ["a"], 104.0, lambda rows, labels: [], [0], key=key("j"))
    assert replay.value.answer == f"answer {counts}".encode() and counts.joined == 1


def test_a_failed_write_keeps_no_key(db, store, monitor):
    with pytest.raises(Exception, match="no monitor"):
        store.write_batch("absent", [(60, "", blob(1))], key=key("k"))
    store.write_batch("m", [(60, "", blob(2))], key=key("k"))  # the key is free: this one counts
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [2.0]


def test_keys_survive_reopening(db, store, monitor):
    store.write_batch("m", [(60, "", blob(1))], key=key("k"), now=100.0)
    store.close()
    reopened = make_store(db)
    with pytest.raises(Replayed):
        reopened.write_batch("m", [(60, "", blob(1))], key=key("k"), now=100.0)
    reopened.close()


def test_concurrent_writers_with_the_same_key_commit_once(db, monitor):
    """8 threads, each its own store (connections), race 20 keys; every key commits exactly once."""
    stores = [make_store(db) for _ in range(8)]
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def writer(store) -> None:
        barrier.wait()
        for i in range(20):
            try:
                store.write_batch("m", [(60, "", blob(1))], key=key(f"k{i}"))
                result = "written"
            except Replayed:
                result = "replayed"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=writer, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (outcomes.count("written"), outcomes.count("replayed")) == (20, 140)
    assert total(stores[0].read_stats("m", 0, 10**9)).tolist() == [20.0]
    for store in stores:
        store.close()


def test_compaction_forgets_keys_past_the_ttl_and_the_cap(db, monitor):
    store = make_store(db, limits=StoreLimits(idempotency_ttl_s=1000, max_idempotency_keys=3))
    for i in range(6):
        store.write_batch("m", [(60, "", blob(1))], key=key(f"k{i}"), now=100.0 + i)
    store.compact(now=200.0)
    kept = sorted(row[0] for row in query(db, "SELECT idem_key FROM idempotency"))
    assert kept == ["k3", "k4", "k5"]  # the newest 3
    store.compact(now=1104.5)  # k3 (103) and k4 (104) are older than the TTL now
    assert [row[0] for row in query(db, "SELECT idem_key FROM idempotency")] == ["k5"]
    store.write_batch("m", [(60, "", blob(1))], key=key("k3"), now=1105.0)  # forgotten: counts again
    # an expired key not swept yet is a new key too
    store.write_batch("m", [(60, "", blob(1))], key=key("k5"), now=5000.0)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [8.0]
    store.close()
