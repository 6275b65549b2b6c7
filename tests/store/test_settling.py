"""Raw stats rows: read as their statistics until settled, settled exactly once, never rolled up raw."""

import threading

import numpy as np
import pytest

from service.core import MonitorStats, merge_stats
from service.core.monitoring.raw_batch import encode_raw
from service.monitors.holder import merge_blobs
from service.monitors.settle import settle_rows
from service.store import MonitorConfig, StoreLimits
from tests.store.conftest import make_store, query

NOW = 1_796_083_200.0  # 2026-12-01T00:00:00Z, an hour boundary
K = 4


def real_store(db):
    store = make_store(db, merge=merge_blobs, limits=StoreLimits())
    store.settle_rows = settle_rows
    return store


def raw_batches(n_batches: int, seed: int = 0, start: float = NOW + 120) -> list[tuple[int, str, bytes]]:
    """`n_batches` raw rows of 8 rows each, spread over three minute buckets and two segments."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_batches):
        at = start + 60 * (i % 3) + 1
        logits, labels = rng.standard_normal((8, K)), rng.integers(-1, K, 8)
        rows.append((int(at // 60 * 60), "ab"[i % 2], encode_raw(logits, labels, at)))
    return rows


def write_raw(store, n_batches: int, *, seed: int = 0, **config) -> None:
    """Create monitor "m" (K classes, `config`) and write `n_batches` raw rows to it (`raw_batches`)."""
    store.put_monitor(MonitorConfig("m", n_classes=K, binary=False, class_names=None, **config))
    for row in raw_batches(n_batches, seed=seed):
        store.write_batch("m", [row])


def total(store, name: str = "m") -> MonitorStats:
    return merge_stats([blob for _, _, blob in store.read_stats(name, 0, 2**40)])


def assert_same(a: MonitorStats, b: MonitorStats) -> None:
    assert (a.n_predictions, a.n_labelled, a.correct) == (b.n_predictions, b.n_labelled, b.correct)
    assert np.array_equal(a.label_counts, b.label_counts) and np.array_equal(a.top.count, b.top.count)
    assert a.nll_sum == pytest.approx(b.nll_sum, rel=1e-12)
    assert a.brier_sum == pytest.approx(b.brier_sum, rel=1e-12)


def raw_count(db) -> int:
    return int(query(db, "SELECT count(*) FROM stats WHERE raw = 1")[0][0])


def test_settled_rows_read_as_the_raw_rows_did_and_feed_the_reservoir(db):
    store = real_store(db)
    told: list[tuple[str, list]] = []
    store.on_settled = lambda name, rows: told.append((name, list(rows)))
    write_raw(store, 12, reservoir_size=1000)
    before = total(store)
    assert raw_count(db) == 12 and before.n_predictions == 96
    assert store.settle() == 12
    assert raw_count(db) == 0
    assert_same(total(store), before)
    # one statistics row per (bucket, segment) in place of the twelve
    assert len(store.read_stats("m", 0, 2**40)) == 6
    assert [name for name, _ in told] == ["m"]
    assert_same(merge_stats([stats for _, stats in told[0][1]]), before)
    assert {segment for segment, _ in told[0][1]} == {"a", "b"}
    labelled = store.reservoir("m", 0, 2**40, 1000)
    assert len(labelled) == before.n_labelled
    store.close()


def test_the_reservoir_settles_first(db):
    store = real_store(db)
    write_raw(store, 3, reservoir_size=1000)
    n_labelled = total(store).n_labelled
    assert len(store.reservoir("m", 0, 2**40, 1000)) == n_labelled and raw_count(db) == 0
    store.close()


def test_concurrent_settles_settle_each_row_once(db):
    first, second = real_store(db), real_store(db)
    told: list[MonitorStats] = []
    lock = threading.Lock()

    def tell(name, rows):
        with lock:
            told.extend(stats for _, stats in rows)

    first.on_settled = second.on_settled = tell
    write_raw(first, 300, seed=3, reservoir_size=0)
    before = total(first)
    barrier = threading.Barrier(2)

    def run(store):
        barrier.wait()
        while store.settle():
            pass

    threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert raw_count(db) == 0
    assert_same(total(first), before)
    assert_same(merge_stats(told), before)  # the counters see every row once
    first.close()
    second.close()


def test_rollups_and_compaction_leave_raw_rows_alone(db):
    store = real_store(db)
    write_raw(store, 9, reservoir_size=0)
    before = total(store)
    later = NOW + 3 * 86400  # the minute buckets are past coarsening
    store.roll_up(later)
    store.compact(later)
    assert raw_count(db) == 9
    assert query(db, "SELECT count(*) FROM stats_hours")[0][0] == 0  # no rollup holds a raw row
    assert store.settle() == 9
    store.roll_up(later)
    store.compact(later)
    assert query(db, "SELECT count(*) FROM stats_hours")[0][0] == 2  # the hour's rollup per segment
    hours = store.read_hours("m", int(NOW), int(NOW) + 3600, 3600)
    assert hours is not None
    assert_same(merge_stats([blob for _, _, blob in hours.rows]), before)  # each row counted once
    assert_same(total(store), before)
    store.close()


def test_retention_deletes_expired_raw_rows(db):
    store = real_store(db)
    write_raw(store, 4, reservoir_size=0, retention_s=3600)
    store.compact(NOW + 2 * 3600)
    assert raw_count(db) == 0 and store.read_stats("m", 0, 2**40) == []
    assert store.settle() == 0
    store.close()
