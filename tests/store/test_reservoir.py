import dataclasses
import random

import numpy as np

from service.store import LabelledRow, MonitorConfig
from tests.store.conftest import assert_counters_match, make_store, query
from tests.store.test_batches import pending
from tests.store.test_labels import fold_by_minute


def stored_keys(db, monitor="m") -> list[int]:
    """Every sample key stored in the monitor's reservoir blocks, sorted."""
    blobs = query(db, f"SELECT keys FROM reservoir_blocks WHERE monitor = '{monitor}'")
    return sorted(np.frombuffer(b"".join(bytes(b) for (b,) in blobs), "<i8").tolist())


def labelled(label, time=100.0):
    return LabelledRow(time, "s", "logits", "<f4", np.float32([label]).tobytes(), label)


def test_reservoir_keeps_exactly_the_k_smallest_keys(db):
    """Bottom-k: the reservoir holds the rows whose random keys are the k smallest (a uniform sample)."""
    store = make_store(db, rng=random.Random(7))
    twin = random.Random(7)  # draws the same keys, in the same order, as the store
    k = 50
    store.put_monitor(MonitorConfig("m", n_classes=1000, binary=False, class_names=None, reservoir_size=k))
    keys: dict[int, int] = {}
    offered: dict[int, LabelledRow] = {}
    label = 0
    for batch in range(30):
        if batch % 3 == 2:  # late labels join the reservoir too
            ids = [f"{batch}-{i}" for i in range(10)]
            store.write_batch(
                "m", [], pending=[pending(i, time=100.0 + label + j) for j, i in enumerate(ids)]
            )
            labels = list(range(label, label + 10))
            assert store.join_labels("m", ids, 200.0, fold_by_minute, labels).joined == 10
            offered |= {i: LabelledRow(100.0 + i, "s", "logits", "<f4", b"\x01\x02", i) for i in labels}
        else:
            labels = list(range(label, label + 10))
            offered |= {i: labelled(i, time=100.0 + i) for i in labels}
            store.write_batch("m", [], labelled=[offered[i] for i in labels])
        for i in labels:
            keys[i] = twin.getrandbits(64) - 2**63
        label += 10
    expected = sorted(keys, key=keys.__getitem__)
    kept = store.reservoir("m", 0.0, 1e9, 1000)
    assert kept == [offered[i] for i in expected[:k]]  # ordered by key
    # a time window and a limit: the smallest keys among the rows in the window
    window = [i for i in expected[:k] if 150 <= 100.0 + i < 250][:5]
    assert [row.label for row in store.reservoir("m", 150.0, 250.0, 5)] == window
    assert_counters_match(db)
    store.compact(200.0)  # the blocks rewritten into the reservoir alone: its keys, nothing else
    assert stored_keys(db) == sorted(keys.values())[:k]
    assert store.reservoir("m", 0.0, 1e9, 1000) == kept
    assert_counters_match(db)
    store.close()


def test_reservoir_shrinks_to_the_smallest_keys_when_its_size_is_lowered(db):
    store = make_store(db, rng=random.Random(3))
    twin = random.Random(3)
    config = MonitorConfig("m", n_classes=100, binary=False, class_names=None, reservoir_size=40)
    store.put_monitor(config)
    store.write_batch("m", [], labelled=[labelled(i) for i in range(40)])
    keys = [twin.getrandbits(64) for _ in range(40)]
    store.put_monitor(MonitorConfig("m", n_classes=100, binary=False, class_names=None, reservoir_size=10))
    store.compact(200.0)
    assert [row.label for row in store.reservoir("m", 0.0, 1e9, 100)] == sorted(
        range(40), key=keys.__getitem__
    )[:10]
    store.close()


def test_reservoir_of_size_zero_keeps_nothing(store):
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, reservoir_size=0))
    store.write_batch("m", [], labelled=[labelled(1)])
    assert store.reservoir("m", 0.0, 1e9, 10) == []


def test_reservoir_keeps_the_smallest_caller_drawn_keys(store, db):
    """Keys drawn by the caller (LabelledRow.key) are kept as given: the k smallest win."""
    store.put_monitor(MonitorConfig("m", n_classes=100, binary=False, class_names=None, reservoir_size=5))
    draw = random.Random(11).getrandbits
    keys = [draw(64) - 2**63 for _ in range(30)]
    for start in range(0, 30, 7):
        rows = [dataclasses.replace(labelled(i), key=keys[i]) for i in range(start, min(start + 7, 30))]
        store.write_batch("m", [], labelled=rows)
    assert [row.label for row in store.reservoir("m", 0.0, 1e9, 10)] == sorted(
        range(30), key=keys.__getitem__
    )[:5]
    assert_counters_match(db)


def test_a_columnar_batch_keeps_the_same_rows_as_row_objects(db):
    """`ReservoirBatch` (what ingestion sends) stores exactly what the same rows as `LabelledRow`s would."""
    from service.store import ReservoirBatch

    store = make_store(db)
    for name in ("rows", "columns"):
        store.put_monitor(MonitorConfig(name, n_classes=3, binary=False, class_names=None, reservoir_size=40))
    rng = np.random.default_rng(3)
    for batch in range(5):
        n = 25
        logits = rng.standard_normal((n, 3)).astype("<f4")
        labels = rng.integers(0, 3, n)
        keys = rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64, endpoint=True)
        times = 100.0 + batch + np.arange(n) / 100
        objects = [
            LabelledRow(times[i], "s", "logits", "<f4", logits[i].tobytes(), int(labels[i]), int(keys[i]))
            for i in range(n)
        ]
        columns = ReservoirBatch("s", "logits", "<f4", times, labels, keys, logits.view(np.uint8))
        store.write_batch("rows", [], labelled=objects)
        store.write_batch("columns", [], labelled=columns)
    kept = [store.reservoir(name, 0.0, 1e9, 1000) for name in ("rows", "columns")]
    assert len(kept[0]) == 40 and kept[0] == kept[1]
    assert_counters_match(db)
    store.close()
