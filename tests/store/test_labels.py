import threading

import pytest

from service.store import JoinCounts, MonitorConfig
from tests.store.blobs import blob, total
from tests.store.conftest import assert_counters_match
from tests.store.test_batches import pending


def fold_by_minute(rows, labels):
    """One stats row per joined row, in the minute bucket of its prediction: [1, label]."""
    return [
        (int(row.time) // 60 * 60, row.segment, blob(1, label))
        for row, label in zip(rows, labels, strict=True)
    ]


@pytest.fixture
def ttl_monitor(store) -> MonitorConfig:
    return store.put_monitor(
        MonitorConfig("m", n_classes=3, binary=False, class_names=None, label_ttl_s=1000)
    )[0]


def test_join_labels_counts_joined_unknown_duplicate_and_expired(store, ttl_monitor):
    store.write_batch("m", [], pending=[pending("a", time=5000.0), pending("b", time=5100.0)], now=5100.0)
    store.write_batch("m", [], pending=[pending("old", time=3000.0)], now=5100.0)
    seen = []

    def fold(rows, labels):
        seen.append(([row.id for row in rows], labels))
        return fold_by_minute(rows, labels)

    counts = store.join_labels("m", ["b", "a", "b", "nope", "old", "a"], 5200.0, fold, [2, 1, 0, 0, 0, 0])
    assert counts == JoinCounts(joined=2, unknown=1, duplicate=2, expired=1)
    assert seen == [(["b", "a"], [2, 1])]  # in request order, the first label of a repeated id
    # folded into the bucket of the prediction's time, not the label's arrival
    assert store.read_stats("m", 0, 10**9) == [(4980, "s", blob(1, 1)), (5100, "s", blob(1, 2))]


def test_a_joined_row_cannot_be_joined_twice(store, ttl_monitor):
    store.write_batch("m", [], pending=[pending("a", time=100.0)], now=100.0)
    assert store.join_labels("m", ["a"], 200.0, fold_by_minute, [1]).joined == 1
    assert store.join_labels("m", ["a"], 200.0, fold_by_minute, [1]) == JoinCounts(unknown=1)
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [1, 1]


def test_expired_rows_count_as_expired_until_swept_then_unknown(store, db, ttl_monitor):
    store.write_batch("m", [], pending=[pending("a", time=100.0), pending("b", time=100.0)], now=100.0)
    assert store.join_labels("m", ["a"], 1101.0, fold_by_minute, [0]) == JoinCounts(expired=1)
    store.compact(2099.0)  # within two TTLs: kept
    assert store.join_labels("m", ["b"], 2099.0, fold_by_minute, [0]) == JoinCounts(expired=1)
    store.write_batch("m", [], pending=[pending("c", time=100.0)], now=100.0)
    store.compact(2101.0)  # past two TTLs: swept
    assert store.join_labels("m", ["c"], 2101.0, fold_by_minute, [0]) == JoinCounts(unknown=1)
    assert store.read_stats("m", 0, 10**9) == []
    assert_counters_match(db)


def test_join_labels_that_fails_to_fold_changes_nothing(store, ttl_monitor):
    store.write_batch("m", [], pending=[pending("a", time=100.0)], now=100.0)

    def broken(rows, labels):
        raise ValueError("bad row")

    with pytest.raises(ValueError, match="bad row"):
        store.join_labels("m", ["a"], 100.0, broken, [1])
    assert store.join_labels("m", ["a"], 100.0, fold_by_minute, [1]).joined == 1


def test_join_labels_needs_one_label_per_id(store, ttl_monitor):
    with pytest.raises(ValueError, match="one label per id"):
        store.join_labels("m", ["a", "b"], 0.0, fold_by_minute, [1])


def test_concurrent_joins_of_the_same_ids_join_each_row_once(store, ttl_monitor):
    ids = [f"r{i}" for i in range(400)]
    store.write_batch("m", [], pending=[pending(i, time=100.0) for i in ids], now=100.0)
    results: list[JoinCounts] = []

    def join():
        results.append(store.join_labels("m", ids, 100.0, fold_by_minute, [1] * len(ids)))

    threads = [threading.Thread(target=join) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.joined for r in results) == 400
    assert sum(r.unknown for r in results) == 3 * 400
    assert total(store.read_stats("m", 0, 10**9)).tolist() == [400, 400]
