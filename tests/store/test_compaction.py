import threading
import time

import numpy as np
import pytest

from service.store import Compactor, MonitorConfig, PendingRow
from tests.store.blobs import blob, merge, total
from tests.store.conftest import make_store

DAY = 86400
NOW = 100 * DAY  # a day boundary, so hours line up


@pytest.fixture
def minutes(store) -> MonitorConfig:
    return store.put_monitor(
        MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=30 * DAY)
    )[0]


def write_rows(store, rng, buckets, segments=("a", "b"), per_bucket=3):
    """Several rows per bucket and segment, random integer-valued blobs; returns them."""
    rows = [
        (b, s, blob(*rng.integers(0, 1000, size=4)))
        for b in buckets
        for s in segments
        for _ in range(per_bucket)
    ]
    for start in range(0, len(rows), 5):
        store.write_batch("m", rows[start : start + 5])
    return rows


def by_group(rows, width=None, cutoff=None):
    groups: dict[tuple[int, str], list[bytes]] = {}
    for b, s, data in rows:
        key = b // width * width if width and b < cutoff else b
        groups.setdefault((key, s), []).append(data)
    return groups


def test_compaction_merges_each_bucket_into_one_row_equal_to_the_merge(store, minutes, rng):
    recent = [NOW - 3600 + 60 * i for i in range(5)]
    rows = write_rows(store, rng, recent)
    merged = store.compact(NOW)
    assert merged == len(rows) - 10
    after = store.read_stats("m", 0, 10**10)
    expected = {key: merge(blobs) for key, blobs in by_group(rows).items()}
    assert {(b, s): data for b, s, data in after} == expected
    assert len(after) == 10
    assert store.compact(NOW) == 0  # nothing left to merge


def test_minute_buckets_older_than_a_day_become_hourly(store, minutes, rng):
    old = [NOW - 2 * DAY + 60 * i for i in range(0, 120, 7)]  # two hours of minutes, two days ago
    young = [NOW - DAY + 3600 + 60 * i for i in range(3)]  # less than a day old: stay per minute
    rows = write_rows(store, rng, old + young, per_bucket=2)
    store.compact(NOW)
    after = store.read_stats("m", 0, 10**10)
    expected = by_group(rows, width=3600, cutoff=NOW - DAY)
    assert sorted((b, s) for b, s, _ in after) == sorted(expected)
    assert {(b, s): data for b, s, data in after} == {key: merge(blobs) for key, blobs in expected.items()}
    assert {b for b, _, _ in after if b < NOW - DAY} == {NOW - 2 * DAY, NOW - 2 * DAY + 3600}


def test_a_lone_old_minute_row_moves_to_its_hour(store, minutes):
    store.write_batch("m", [(NOW - 2 * DAY + 120, "a", blob(5))])
    assert store.compact(NOW) == 0
    assert store.read_stats("m", 0, 10**10) == [(NOW - 2 * DAY, "a", blob(5))]


def test_compaction_leaves_other_monitors_segments_and_buckets_alone(store, minutes):
    store.put_monitor(MonitorConfig("other", n_classes=2, binary=False, class_names=None))
    store.write_batch("other", [(NOW, "a", blob(1)), (NOW, "a", blob(2))])
    store.write_batch("m", [(NOW, "a", blob(1)), (NOW, "b", blob(2)), (NOW + 60, "a", blob(3))])
    assert store.compact(NOW) == 1
    assert store.read_stats("m", 0, 10**10) == [
        (NOW, "a", blob(1)),
        (NOW, "b", blob(2)),
        (NOW + 60, "a", blob(3)),
    ]
    assert store.read_stats("other", 0, 10**10) == [(NOW, "a", blob(3))]


def test_a_write_during_compaction_is_not_lost(store, db, minutes):
    """The merge runs between the read of a group and the delete; a row written then must survive."""
    store.write_batch("m", [(NOW, "a", blob(1, 1)), (NOW, "a", blob(2, 2))])

    written = []

    def merge_while_writing(blobs):
        if not written:  # lands in the same bucket between the read and the delete
            written.append(store.write_batch("m", [(NOW, "a", blob(100, 100))]))
        return merge(blobs)

    racing = make_store(db, merge=merge_while_writing)
    racing.compact(NOW)
    assert written
    assert store.read_stats("m", 0, 10**10) == [(NOW, "a", blob(103, 103))]  # merged by the next pass
    racing.close()


def test_two_compactors_racing_merge_each_row_once(store, db, minutes):
    """A compactor whose rows were merged by another meanwhile rolls back instead of double counting."""
    store.write_batch("m", [(NOW, "a", blob(1)), (NOW, "a", blob(2)), (NOW, "a", blob(4))])
    other = make_store(db)

    def merge_after_the_other(blobs):
        other.compact(NOW)  # merges the same three rows first
        return merge(blobs)

    first = make_store(db, merge=merge_after_the_other)
    assert first.compact(NOW) == 0  # its transaction saw the rows gone and rolled back
    assert store.read_stats("m", 0, 10**10) == [(NOW, "a", blob(7))]
    first.close()
    other.close()


def test_a_group_that_cannot_be_merged_is_left_as_it_is(store, minutes, caplog):
    store.write_batch(
        "m", [(NOW, "a", blob(1)), (NOW, "a", blob(1, 2)), (NOW + 60, "a", blob(3)), (NOW + 60, "a", blob(4))]
    )
    assert store.compact(NOW) == 1  # the bucket of mismatched blobs fails, the next one merges
    assert store.read_stats("m", 0, 10**10) == [
        (NOW, "a", blob(1)),
        (NOW, "a", blob(1, 2)),
        (NOW + 60, "a", blob(7)),
    ]
    assert "cannot merge 2 stats rows of bucket" in caplog.text


def test_retention_deletes_old_buckets_reservoir_rows_and_empty_segments(store):
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=DAY))
    store.write_batch(
        "m", [(NOW - DAY - 60, "gone", blob(1)), (NOW - DAY, "a", blob(2)), (NOW, "a", blob(3))]
    )
    store.write_batch(
        "m", [], pending=[PendingRow("p", NOW - 2 * DAY, "waits", "probs", "<f8", b"")], now=NOW - 2 * DAY
    )
    from tests.store.test_reservoir import labelled

    store.write_batch("m", [], labelled=[labelled(0, time=NOW - DAY - 1.0), labelled(1, time=NOW - DAY)])
    store.compact(NOW)
    assert store.read_stats("m", 0, 10**10) == [(NOW - DAY, "a", blob(2)), (NOW, "a", blob(3))]
    assert [row.label for row in store.reservoir("m", 0, 1e12, 10)] == [1]
    assert store.segments("m") == ["a", "waits"]  # a segment with a pending row stays


def test_many_rows_of_one_bucket_merge_in_several_transactions(store, minutes):
    from service.store import compaction

    n = 2 * compaction.MAX_GROUP_ROWS + 17
    store.write_batch("m", [(NOW, "a", blob(i, 1)) for i in range(n)])
    assert store.compact(NOW) == n - 1
    assert store.read_stats("m", 0, 10**10) == [(NOW, "a", blob(n * (n - 1) // 2, n))]


def test_compactor_thread_runs_compaction_in_the_background(store):
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None))
    now = int(time.time()) // 60 * 60
    store.write_batch("m", [(now, "a", blob(1)), (now, "a", blob(2))])
    compactor = Compactor(store, 0.02).start()
    deadline = time.monotonic() + 10
    while len(store.read_stats("m", 0, 10**10)) > 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    compactor.stop()
    assert compactor.runs >= 1
    assert store.read_stats("m", 0, 10**10) == [(now, "a", blob(3))]
    assert np.array_equal(total(store.read_stats("m", 0, 10**10)), [3])


def test_retention_deletes_in_chunks_until_nothing_old_is_left(store, db, monkeypatch):
    from service.store import compaction
    from tests.store.conftest import assert_counters_match

    monkeypatch.setattr(compaction, "MAX_DELETE_ROWS", 3)
    store.put_monitor(
        MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=DAY, label_ttl_s=60)
    )
    store.write_batch("m", [(NOW - 2 * DAY + i, "old", blob(1)) for i in range(10)] + [(NOW, "a", blob(5))])
    old = [PendingRow(f"p{i}", NOW - 1000.0, "old", "probs", "<f8", b"") for i in range(8)]
    store.write_batch("m", [], pending=[*old, PendingRow("q", NOW - 10.0, "a", "probs", "<f8", b"")], now=NOW)
    store.compact(NOW)
    assert store.read_stats("m", 0, 10**10) == [(NOW, "a", blob(5))]
    assert store.segments("m") == ["a"]
    assert store.join_labels("m", ["p0", "q"], NOW, lambda rows, labels: [], [0, 0]).joined == 1
    assert_counters_match(db)


def test_readers_during_compaction_see_the_rows_or_their_merge_never_both(store, db, minutes, rng):
    rows = write_rows(
        store, rng, [NOW - 2 * DAY + 60 * i for i in range(120)] + [NOW + 60 * i for i in range(30)]
    )
    expected = total(rows).tolist()
    seen, stop = [], threading.Event()

    def read_totals():
        while not stop.is_set():
            seen.append(total(store.read_stats("m", 0, 10**10)).tolist())

    def slow_merge(blobs):
        time.sleep(0.002)  # leaves the reader time to read between the groups
        return merge(blobs)

    compactor = make_store(db, merge=slow_merge)
    reader = threading.Thread(target=read_totals)
    reader.start()
    merged = compactor.compact(NOW)
    stop.set()
    reader.join()
    compactor.close()
    assert merged == len(rows) - 2 * (2 + 30)  # two segments: 2 hours and 30 minutes each
    assert len(seen) > 10
    assert all(t == expected for t in seen)
