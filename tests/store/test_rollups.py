"""Hourly rollups (schema version 6): a series read through them equals the same read over raw rows.

Every check runs on SQLite and a real PostgreSQL, with the additive test blobs (integer-valued
float64 vectors: sums are exact, so merged blobs compare with ``==``). After each change to the rows
(writes, late labels into old buckets, roll-ups, compaction, retention, an upgrade from version 5,
concurrent writers and compactors), each point of a series read with `read_hours` adds up to exactly
the point read with `read_stats`, and the stored rollups are the merge of exactly their rolled rows.
"""

import threading

import numpy as np
import pytest

from service.store import MonitorConfig, PendingRow, sql
from tests.store.blobs import blob, merge, total, values
from tests.store.conftest import make_store, query

DAY, HOUR = 86400, 3600
NOW = 100 * DAY + 37 * 60 + 13  # not on an hour: retention's cut falls inside one
# (start offset from NOW - 3 days, step): aligned hours, days, two hours, points off the hours'
# grid, steps that are no multiple of an hour, a step shorter than an hour (no rollup used)
SHAPES = [(0, HOUR), (0, DAY), (0, 2 * HOUR), (600, HOUR), (0, 5400), (1800, 7 * 1800), (0, 1800)]


def series(rows, start, step):
    """Per (point, segment): the sum of the rows' blobs."""
    points: dict[tuple[int, str], np.ndarray] = {}
    for b, s, data in rows:
        key = ((b - start) // step, s)
        points[key] = points.get(key, 0) + values(data)
    return {key: tuple(v) for key, v in points.items()}


def assert_series_agree(store, name="m", end=NOW + 1):
    first = (NOW - 3 * DAY) // HOUR * HOUR
    for offset, step in SHAPES:
        start = first + offset
        raw = store.read_stats(name, start, end)
        hours = store.read_hours(name, start, end, step, digests=True)
        if step < HOUR:
            assert hours is None
            continue
        assert hours is not None and hours.digests == []  # (no digest function: the blobs)
        assert series(hours.rows, start, step) == series(raw, start, step), (offset, step)


def assert_rollups_exact(location):
    """Each rollup is the merge of exactly the rolled rows of its hour, and no rolled row lacks one."""
    rolled: dict[tuple[str, int, str], list[bytes]] = {}
    for monitor, b, s, data in query(
        location, "SELECT monitor, bucket_start, segment, blob FROM stats WHERE rolled = 1"
    ):
        rolled.setdefault((monitor, b // HOUR * HOUR, s), []).append(bytes(data))
    rollups = {
        (monitor, h, s): bytes(data)
        for monitor, h, s, data in query(
            location, "SELECT monitor, hour_start, segment, blob FROM stats_hours"
        )
    }
    assert set(rollups) == set(rolled)
    for key, blobs in rolled.items():
        assert values(rollups[key]).tolist() == values(merge(blobs)).tolist()


@pytest.fixture
def month(store) -> MonitorConfig:
    return store.put_monitor(
        MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=30 * DAY)
    )[0]


def write(store, rng, buckets, segments=("a", "b"), per_bucket=2):
    rows = [
        (int(b), s, blob(*rng.integers(0, 1000, size=3)))
        for b in buckets
        for s in segments
        for _ in range(per_bucket)
    ]
    for start in range(0, len(rows), 50):
        store.write_batch("m", rows[start : start + 50])
    return rows


def fold(rows, labels):
    return [
        (int(r.time) // 60 * 60, r.segment, blob(label, 1, 0)) for r, label in zip(rows, labels, strict=True)
    ]


def test_reads_through_rollups_equal_raw_rows_through_every_change(store, db, month, rng):
    minutes = np.arange(NOW - 3 * DAY, NOW, 60) // 60 * 60
    written = write(store, rng, minutes[::7])
    assert_series_agree(store)  # nothing rolled up yet: every row raw
    assert store.roll_up(NOW) == len(written)
    assert_rollups_exact(db)
    assert_series_agree(store)
    start = (NOW - 3 * DAY) // HOUR * HOUR
    whole = {b // HOUR for b, _, _ in written if b < NOW // HOUR * HOUR}
    tail = [row for row in written if row[0] >= NOW // HOUR * HOUR]  # the partial last hour: raw
    read = store.read_hours("m", start, NOW + 1, HOUR).rows
    assert len(read) == 2 * len(whole) + len(tail)  # one row per (hour, segment): the rollups
    assert total(read).tolist() == total(written).tolist()

    write(store, rng, minutes[3::11], segments=("a", "c"))  # new rows, unrolled: read raw
    old = [PendingRow(f"p{i}", float(minutes[i * 13]) + 5, "a", "probs", "<f8", b"") for i in range(40)]
    store.write_batch("m", [], pending=old, now=NOW - 3 * DAY)
    assert store.join_labels("m", [row.id for row in old], NOW - 2 * DAY, fold, [1] * 40).joined == 40
    assert_series_agree(store)  # late labels landed in old, rolled-up hours
    store.roll_up(NOW)
    assert_rollups_exact(db)
    assert_series_agree(store)

    assert store.compact(NOW) > 0  # rows of a bucket merged, minutes older than a day into hours
    assert_rollups_exact(db)
    assert_series_agree(store)
    assert query(db, "SELECT count(*) FROM stats WHERE rolled = 0") == [(0,)]

    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=DAY + 1000))
    write(store, rng, [NOW - DAY - 1000 - 60, NOW - DAY - 1000 + 60])  # around the cut, unrolled
    store.compact(NOW)  # the cut (NOW - DAY - 1000) lies inside an hour
    assert query(db, f"SELECT count(*) FROM stats WHERE bucket_start < {NOW - DAY - 1000}") == [(0,)]
    assert_rollups_exact(db)
    assert_series_agree(store)

    store.delete_monitor("m")
    assert query(db, "SELECT count(*) FROM stats_hours") == [(0,)]


def test_monitors_with_hourly_buckets_keep_no_rollups(store, db, rng):
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, bucket_s=HOUR))
    write(store, rng, np.arange(NOW - DAY, NOW, HOUR) // HOUR * HOUR)
    assert store.roll_up(NOW) == 0
    store.compact(NOW)
    assert query(db, "SELECT count(*) FROM stats_hours") == [(0,)]
    assert_series_agree(store)


def test_a_version_5_database_upgrades_and_rolls_up(db, rng):
    old = make_store(db, migrate=False)
    assert old.migrate(5) == 5
    old.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None))
    written = write(old, rng, np.arange(NOW - 2 * DAY, NOW, 60)[::5] // 60 * 60)
    old.close()
    store = make_store(db)  # opening migrates to version 6 and on
    try:
        assert query(db, "SELECT max(version) FROM schema_version") == [(sql.LATEST_VERSION,)]
        assert_series_agree(store)  # every old row unrolled: read raw
        assert store.roll_up(NOW) == len(written)
        assert_rollups_exact(db)
        assert_series_agree(store)
        start = (NOW - 3 * DAY) // HOUR * HOUR
        hours = {b // HOUR for b, _, _ in written if b < NOW // HOUR * HOUR}
        assert len(store.read_hours("m", start, NOW // HOUR * HOUR, HOUR).rows) == 2 * len(hours) == 2 * 48
    finally:
        store.close()


def test_concurrent_writers_and_compactors_keep_rollups_exact(db, rng):
    """8 writer threads (recent buckets and late rows in old ones) while 2 threads roll up and compact."""
    store = make_store(db)
    cut = NOW // HOUR * HOUR - 2 * DAY  # on an hour (compaction moves rows to their hour's start)
    store.put_monitor(MonitorConfig("m", n_classes=2, binary=False, class_names=None, retention_s=NOW - cut))
    writes = [
        [
            (int(NOW - rng.integers(0, 3 * DAY)) // 60 * 60, "ab"[i % 2], blob(*rng.integers(0, 100, 3)))
            for _ in range(3)
        ]
        for i in range(8 * 40)
    ]
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(k):
        try:
            for batch in writes[k::8]:
                store.write_batch("m", batch)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    def compactor():
        try:
            while not stop.is_set():
                store.roll_up(NOW)
                store.compact(NOW)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(8)]
    background = [threading.Thread(target=compactor) for _ in range(2)]
    for thread in threads + background:
        thread.start()
    for thread in threads:
        thread.join()
    stop.set()
    for thread in background:
        thread.join()
    try:
        assert not errors, errors
        store.compact(NOW)
        assert_rollups_exact(db)
        assert_series_agree(store)
        kept = [row for batch in writes for row in batch if row[0] >= cut]
        start = (NOW - 3 * DAY) // HOUR * HOUR
        assert total(store.read_hours("m", start, NOW + 1, HOUR).rows).tolist() == total(kept).tolist()
    finally:
        store.close()
