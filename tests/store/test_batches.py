import pytest

from service.store import PendingRow, StoreLimit, StoreLimits
from tests.store.blobs import blob
from tests.store.conftest import assert_counters_match, make_store
from tests.store.test_monitors import config


def pending(id_, time=100.0, segment="s", payload=b"\x01\x02"):
    return PendingRow(id_, time, segment, "logits", "<f4", payload)


def test_write_batch_round_trips_in_bucket_order(store, monitor):
    store.write_batch("m", [(120, "b", blob(1, 2)), (60, "a", blob(3, 4))])
    store.write_batch("m", [(60, "a", blob(5, 6)), (180, "a", blob(7, 8))])
    assert store.read_stats("m", 0, 10**9) == [
        (60, "a", blob(3, 4)),
        (60, "a", blob(5, 6)),
        (120, "b", blob(1, 2)),
        (180, "a", blob(7, 8)),
    ]
    assert store.segments("m") == ["a", "b"]


def test_read_stats_range_is_half_open_and_filters_segments(store, monitor):
    store.write_batch("m", [(b, s, blob(b)) for b in (0, 60, 120, 180) for s in ("x", "y")])
    assert [(b, s) for b, s, _ in store.read_stats("m", 60, 180)] == [
        (60, "x"),
        (60, "y"),
        (120, "x"),
        (120, "y"),
    ]
    assert store.read_stats("m", 60, 180, segment="y") == [(60, "y", blob(60)), (120, "y", blob(120))]
    assert store.read_stats("m", 200, 300) == []


def test_write_batch_counts_duplicate_pending_ids_and_keeps_the_first(store, monitor):
    assert (
        store.write_batch("m", [], pending=[pending("a", payload=b"first"), pending("a", payload=b"again")])
        == 1
    )
    assert store.write_batch("m", [], pending=[pending("a", payload=b"later"), pending("b")]) == 1
    seen = []
    counts = store.join_labels("m", ["a", "b"], 101.0, lambda rows, labels: seen.extend(rows) or [], [0, 1])
    assert counts.joined == 2
    assert [row.row for row in seen] == [b"first", b"\x01\x02"]


def test_segments_cap_refuses_the_batch_whole(db):
    store = make_store(db, limits=StoreLimits(max_segments=2))
    store.put_monitor(config())
    store.write_batch("m", [(0, "a", blob(1)), (0, "b", blob(1))])
    with pytest.raises(
        StoreLimit, match=r"`segment` exceeds max_segments=2: monitor 'm' would have 3"
    ) as info:
        store.write_batch("m", [(60, "a", blob(1)), (60, "c", blob(1))], pending=[pending("x", segment="a")])
    assert info.value.limit == "max_segments"
    assert store.read_stats("m", 0, 10**9) == [(0, "a", blob(1)), (0, "b", blob(1))]
    assert store.segments("m") == ["a", "b"]
    assert store.join_labels("m", ["x"], 100.0, lambda rows, labels: [], [0]).unknown == 1
    with pytest.raises(StoreLimit):  # a pending row's segment counts too
        store.write_batch("m", [], pending=[pending("x", segment="c")])
    store.close()


def test_pending_rows_cap_refuses_the_batch_whole(db):
    store = make_store(db, limits=StoreLimits(max_pending_rows=5))
    store.put_monitor(config(label_ttl_s=1000))
    store.write_batch("m", [], pending=[pending(f"a{i}") for i in range(3)], now=100.0)
    with pytest.raises(
        StoreLimit, match=r"`ids` exceeds max_pending_rows=5: monitor 'm' would hold 6"
    ) as info:
        store.write_batch("m", [(60, "s", blob(1))], pending=[pending(f"b{i}") for i in range(3)], now=100.0)
    assert (info.value.field, info.value.limit) == ("ids", "max_pending_rows")
    assert store.read_stats("m", 0, 10**9) == []
    store.write_batch("m", [], pending=[pending(f"c{i}") for i in range(2)], now=100.0)  # exactly 5
    counts = store.join_labels("m", ["a0", "b0", "c1"], 100.0, lambda rows, labels: [], [0, 0, 0])
    assert (counts.joined, counts.unknown) == (2, 1)
    store.write_batch("m", [], pending=[pending("d0"), pending("d1")], now=100.0)  # joined rows freed room
    with pytest.raises(StoreLimit):
        store.write_batch("m", [], pending=[pending("e0")], now=100.0)
    assert_counters_match(db)
    store.close()


def test_pending_rows_cap_first_drops_expired_rows(db):
    store = make_store(db, limits=StoreLimits(max_pending_rows=3))
    store.put_monitor(config(label_ttl_s=10))
    store.write_batch("m", [], pending=[pending(f"old{i}", time=100.0) for i in range(3)], now=100.0)
    store.write_batch("m", [], pending=[pending(f"new{i}", time=200.0) for i in range(3)], now=200.0)
    counts = store.join_labels("m", ["old0", "new0", "new1", "new2"], 200.0, lambda rows, labels: [], [0] * 4)
    assert (counts.joined, counts.unknown) == (3, 1)
    assert_counters_match(db)
    store.close()
