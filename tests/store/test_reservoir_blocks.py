"""The reservoir in blocks (schema v7) against a naive bottom-k over every row offered, and its migration.

The naive model is the row-per-row design: a table keyed by sample key (a repeated key is not
inserted) trimmed to the `reservoir_size` smallest keys after every write; retention deletes its
rows older than the cutoff; a new size trims it.
"""

import random

import numpy as np
import pytest

from service.store import LabelledRow, MonitorConfig, ReservoirBatch, sql
from service.store.reservoir import REWRITE_FACTOR, bottom
from tests.store.conftest import assert_counters_match, make_store, query
from tests.store.test_reservoir import stored_keys

RETENTION = 10_000


class Naive:
    """The row-per-row reservoir: {key: row}, the `size` smallest keys."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.rows: dict[int, LabelledRow] = {}

    def offer(self, rows: list[tuple[int, LabelledRow]]) -> None:
        if self.size <= 0:
            return
        for key, row in rows:
            self.rows.setdefault(key, row)  # ON CONFLICT (monitor, sample_key) DO NOTHING
        self.resize(self.size)

    def resize(self, size: int) -> None:
        self.size = size
        self.rows = dict(sorted(self.rows.items())[: max(size, 0)])

    def retain(self, cutoff: float) -> None:
        self.rows = {k: r for k, r in self.rows.items() if r.time >= cutoff}

    def read(self, start: float, end: float, limit: int) -> list[LabelledRow]:
        return [r for _, r in sorted(self.rows.items()) if start <= r.time < end][:limit]


def config(size: int) -> MonitorConfig:
    return MonitorConfig(
        "m", n_classes=3, binary=False, class_names=None, reservoir_size=size, retention_s=RETENTION
    )


def offer(rng: np.random.Generator, now: float, small_keys: bool):
    """A random batch as the store gets it (row objects or columns), and its labelled rows with keys."""
    n = int(rng.integers(0, 90))
    kind, dtype = ("logits", "<f4") if rng.random() < 0.7 else ("probs", "<f8")
    values = rng.standard_normal((n, 3)).astype(dtype)
    labels = rng.integers(0, 3, n)
    labelled = rng.random(n) < 0.7  # partly labelled: only those are offered
    times = now - rng.uniform(0, RETENTION / 2, n)  # any order
    if small_keys:  # keys repeat: the first row of a key wins
        keys = rng.integers(0, 400, n).astype(np.int64)
    else:
        keys = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
    segment = str(rng.choice(["", "a", "b"]))
    rows = np.flatnonzero(labelled)
    expected = [
        (
            int(keys[i]),
            LabelledRow(float(times[i]), segment, kind, dtype, values[i].tobytes(), int(labels[i])),
        )
        for i in rows
    ]
    style = rng.integers(0, 3)
    if style == 0:  # row objects, caller keys
        batch: object = [
            LabelledRow(row.time, row.segment, row.kind, row.dtype, row.row, row.label, key)
            for key, row in expected
        ]
    elif style == 1:  # columns, the payload gathered already (what ingestion sent before)
        payload = values[rows].view(np.uint8)
        batch = ReservoirBatch(segment, kind, dtype, times[rows], labels[rows], keys[rows], payload)
    else:  # columns over the whole array, with the rows' indices (what ingestion sends)
        batch = ReservoirBatch(
            segment, kind, dtype, times[rows], labels[rows], keys[rows], values.view(np.uint8), rows
        )
    return batch, expected


@pytest.mark.parametrize(("seed", "small_keys"), [(0, False), (1, False), (2, True)])
def test_reservoir_equals_a_naive_bottom_k_through_writes_compactions_retention_and_resizes(
    db, seed, small_keys
):
    rng = np.random.default_rng(seed)
    store = make_store(db, rng=random.Random(seed))
    size = 40
    store.put_monitor(config(size))
    naive = Naive(size)
    now = 1e6
    stored = compared = tightened = 0
    for _ in range(160):
        now += float(rng.uniform(0, 400))
        action = rng.random()
        if action < 0.75:
            batch, expected = offer(rng, now, small_keys)
            store.write_batch("m", [], labelled=batch)  # type: ignore[arg-type]
            naive.offer(expected)
        elif action < 0.87:
            store.compact(now)
            naive.retain(now - RETENTION)
            keys = stored_keys(db)  # compacted: the reservoir's rows, nothing else (but a repeated key's
            assert sorted(set(keys)) == sorted(naive.rows)  # later rows, until a write rewrites them)
            assert len(keys) == len(naive.rows) or small_keys
        else:
            size = int(rng.choice([0, 5, 25, 40, 60, 90]))
            store.put_monitor(config(size))
            naive.resize(size)
        assert store.reservoir("m", 0.0, 1e12, 10**6) == naive.read(0.0, 1e12, 10**6)
        compared += len(naive.rows)
        start = now - float(rng.uniform(0, RETENTION))
        end, limit = start + float(rng.uniform(0, RETENTION)), int(rng.integers(0, 50))
        assert store.reservoir("m", start, end, limit) == naive.read(start, end, limit)
        assert_counters_match(db)
        stored = len(stored_keys(db))
        assert stored <= REWRITE_FACTOR * size  # bounded: a write rewrites the blocks past 8x the size
        threshold = query(db, "SELECT reservoir_threshold FROM monitors")[0][0]
        if threshold is not None:  # the reservoir is full, at or below it (what `tighten` ranks from)
            assert len(naive.rows) == size and max(naive.rows) <= threshold
        tightened += threshold is not None
    assert compared > 1000 and tightened > 0
    store.close()


def test_writes_set_the_threshold_keep_only_keys_below_it_and_rewrite_past_8x(db):
    """Full: the threshold is the reservoir's largest key; later writes store only keys below it."""
    store = make_store(db)
    store.put_monitor(config(10))

    def write(keys):
        n = len(keys)
        zeros = np.zeros((n, 3), "<f4")
        keys = np.asarray(keys, np.int64)
        batch = ReservoirBatch(
            "", "logits", "<f4", np.full(n, 5.0), np.zeros(n, np.int64), keys, zeros.view(np.uint8)
        )
        store.write_batch("m", [], labelled=batch)

    def threshold():
        return query(db, "SELECT reservoir_threshold FROM monitors")[0][0]

    write(range(9000, 8000, -100))  # 10 rows: full, no threshold yet
    assert threshold() is None and stored_keys(db) == list(range(8100, 9001, 100))
    write([50_000, 7000])  # 12 rows stored: the threshold, from the keys (nothing rewritten)
    assert threshold() == 8900 and stored_keys(db) == sorted([*range(8100, 9001, 100), 50_000, 7000])
    write([8900, 8901, 8899])  # only the key below it is stored
    assert stored_keys(db)[-3:] == [8900, 9000, 50_000] and 8899 in stored_keys(db)
    assert threshold() == 8900  # (13 rows: no new multiple of 10)
    write(range(100, 1000, 100))  # 22 rows: a new multiple of 10, the threshold tightens
    assert threshold() == 7000
    write(range(-100, -7000, -100))  # 91 rows > 8 x 10: rewritten into the reservoir alone
    assert stored_keys(db) == list(range(-6900, -5999, 100)) and threshold() == -6000
    assert [r.time for r in store.reservoir("m", 0, 10, 100)] == [5.0] * 10
    assert_counters_match(db)
    store.close()


def test_delete_monitor_deletes_its_blocks(db):
    store = make_store(db)
    store.put_monitor(config(10))
    store.write_batch("m", [], labelled=[LabelledRow(1.0, "", "logits", "<f4", b"\0" * 12, 0, 7)])
    assert stored_keys(db) == [7]
    assert store.delete_monitor("m")
    assert query(db, "SELECT count(*) FROM reservoir_blocks") == [(0,)]
    store.close()


# Version 6's per-row reservoir, as it stored rows (the migration test writes them this way).
OLD_INSERT = (
    "INSERT INTO reservoir (monitor, sample_key, event_time, segment, kind, dtype, payload, label) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def test_migration_from_version_6_keeps_every_reservoir_row(db):
    store = make_store(db, migrate=False)
    assert store.migrate(6) == 6
    rng = np.random.default_rng(4)
    sizes = {"a": 50, "b": 20, "c": 10}
    for name, size in sizes.items():
        store.put_monitor(
            MonitorConfig(name, n_classes=2, binary=False, class_names=None, reservoir_size=size)
        )
    old: dict[str, list[tuple[int, LabelledRow]]] = {"a": [], "b": [], "c": []}
    counts = {"a": 30, "b": 20, "c": 35}  # not full; full; over its size (shrunk, not compacted yet)
    with store._transaction() as cur:
        for name, n in counts.items():
            for i in range(n):
                key = int(rng.integers(-(2**63), 2**63, dtype=np.int64))
                kind, dtype, row = ("logits", "<f4", rng.standard_normal(2).astype("<f4").tobytes())
                if i % 3 == 0:
                    kind, dtype, row = ("probs", "<f8", np.float64([0.25, 0.75]).tobytes())
                item = LabelledRow(float(rng.uniform(0, 100)), f"s{i % 2}", kind, dtype, row, i % 2)
                old[name].append((key, item))
                cur.execute(
                    store._q(OLD_INSERT), (name, key, item.time, item.segment, kind, dtype, row, i % 2)
                )
            cur.execute(store._q("UPDATE monitors SET n_reservoir = ? WHERE name = ?"), (n, name))
    assert store.migrate() == sql.LATEST_VERSION
    for name, rows in old.items():
        assert stored_keys(db, name) == sorted(key for key, _ in rows)  # every row kept
        by_key = [row for _, row in sorted(rows, key=lambda pair: pair[0])]
        assert store.reservoir(name, 0.0, 1e9, 1000) == by_key[: sizes[name]]
        assert (
            store.reservoir(name, 20.0, 60.0, 5)
            == [r for r in by_key[: sizes[name]] if 20 <= r.time < 60][:5]
        )
    assert_counters_match(db)
    thresholds = dict(query(db, "SELECT name, reservoir_threshold FROM monitors"))
    assert thresholds == {
        "a": None,
        "b": sorted(k for k, _ in old["b"])[19],
        "c": sorted(k for k, _ in old["c"])[9],
    }
    store.close()


@pytest.mark.parametrize(("size", "dtype"), [(1000, np.float64), (10, np.float32)])
def test_ingest_offers_exactly_the_labelled_rows_of_a_batch(db_path, size, dtype):
    """`ingest` sends the labelled rows (partly labelled, several buckets): their bytes, label and time."""
    from service.core import Distribution
    from service.monitors import ingest

    store = make_store(db_path)
    monitor, _ = store.put_monitor(config(size))
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((50, 3)).astype(dtype)
    labels = np.where(rng.random(50) < 0.6, rng.integers(0, 3, 50), -1)
    times = 1e9 + rng.uniform(0, 600, 50)
    ingest(store, monitor, Distribution.from_logits(logits), labels, None, times, "s", now=1e9 + 600)
    offered = {
        (float(times[i]), logits[i].astype(np.dtype(dtype).newbyteorder("<")).tobytes(), int(labels[i]))
        for i in np.flatnonzero(labels >= 0)
    }
    kept = store.reservoir("m", 0.0, 2e9, 10**6)
    assert {(r.time, r.row, r.label) for r in kept} <= offered
    assert len(kept) == min(size, len(offered)) and len({r.time for r in kept}) == len(kept)
    assert {(r.segment, r.kind, r.dtype) for r in kept} == {("s", "logits", np.dtype(dtype).name)}
    store.close()


def test_bottom_is_the_first_row_of_each_of_the_smallest_distinct_keys():
    """`bottom` against the definition, on keys spread over its 16-bit buckets or not, repeated or not."""
    rng = np.random.default_rng(5)
    for trial in range(400):
        n = int(rng.integers(0, 3000))
        style = trial % 5
        if style == 0:  # random keys: the usual case
            keys = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
        elif style == 1:  # small keys: one bucket, many repeats
            keys = rng.integers(0, n // 2 + 1, n).astype(np.int64)
        elif style == 2:  # random keys with a few repeated
            keys = rng.integers(-(2**63), 2**63, n, dtype=np.int64)
            if n:
                keys[rng.integers(0, n, n // 10)] = keys[rng.integers(0, n, n // 10)]
        elif style == 3:  # on both sides of bucket edges (multiples of 2**48)
            keys = (rng.integers(-4, 4, n) * 2**48 + rng.integers(-3, 3, n)).astype(np.int64)
        else:  # many keys per bucket, distinct
            keys = rng.permutation(np.arange(n, dtype=np.int64) * 2**40 - 2**62)
        size = int(rng.integers(-1, n + 5))
        first: dict[int, int] = {}
        for i, key in enumerate(keys.tolist()):
            first.setdefault(key, i)
        expected = sorted(first[key] for key in sorted(first)[: max(size, 0)])
        assert bottom(keys, size).tolist() == expected, (trial, n, size)
