"""Raw rows appended on an event loop: one work per turn, each append with its own outcome."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest

from service.core.cancel import Cancelled, deadline
from service.core.monitoring.raw_batch import encode_raw
from service.monitors.holder import merge_blobs
from service.monitors.settle import settle_rows
from service.store import ConfigChanged, MonitorConfig, MonitorNotFound, StoreLimits, WouldBlock
from tests.store.conftest import make_store, query

K = 3


def row(seed: int, bucket: int = 60, segment: str = "") -> tuple[int, str, bytes]:
    rng = np.random.default_rng(seed)
    return (bucket, segment, encode_raw(rng.standard_normal((4, K)), rng.integers(0, K, 4), bucket + 1.0))


@pytest.fixture
def sqlite_store(db_path):
    store = make_store(db_path, merge=merge_blobs, limits=StoreLimits())
    store.settle_rows = settle_rows
    config, _ = store.put_monitor(MonitorConfig("m", n_classes=K, binary=False, class_names=None))
    yield store, config
    store.close()


def blobs(db_path) -> list[bytes]:
    return sorted(bytes(b) for (b,) in query(db_path, "SELECT blob FROM stats WHERE raw = 1"))


def test_the_appends_of_one_turn_share_one_work_and_each_keeps_its_outcome(sqlite_store, db_path):
    store, config = sqlite_store
    other = replace(config, reservoir_size=config.reservoir_size + 1)  # a config the store does not hold

    async def main():
        before = store.group_commit.commits
        outcomes = await asyncio.gather(
            *(store.append_raw_soon("m", row(i), expect=config) for i in range(6)),
            store.append_raw_soon("m", row(6), expect=other),
            store.append_raw_soon("gone", row(7), expect=replace(config, name="gone")),
            return_exceptions=True,
        )
        return outcomes, store.group_commit.commits - before

    outcomes, commits = asyncio.run(main())
    assert outcomes[:6] == [None] * 6
    assert isinstance(outcomes[6], ConfigChanged) and outcomes[6].config == config
    assert isinstance(outcomes[7], MonitorNotFound)
    assert commits == 1
    assert blobs(db_path) == sorted(row(i)[2] for i in range(6))


def test_a_cancelled_or_late_append_writes_nothing(sqlite_store, db_path):
    store, config = sqlite_store

    async def main():
        kept = asyncio.ensure_future(store.append_raw_soon("m", row(0), expect=config))
        dropped = asyncio.ensure_future(store.append_raw_soon("m", row(1), expect=config))
        with deadline(0.0):  # its deadline passed before the turn's work ran
            late = asyncio.ensure_future(store.append_raw_soon("m", row(2), expect=config))
        await asyncio.sleep(0)  # the three appended, the work not run yet
        dropped.cancel()
        return await asyncio.gather(kept, dropped, late, return_exceptions=True)

    kept, dropped, late = asyncio.run(main())
    assert kept is None and isinstance(dropped, asyncio.CancelledError) and isinstance(late, Cancelled)
    assert blobs(db_path) == [row(0)[2]]


def test_postgresql_appends_go_to_a_thread(postgres_url):
    store = make_store(postgres_url, merge=merge_blobs, limits=StoreLimits())
    try:
        config, _ = store.put_monitor(MonitorConfig("m", n_classes=K, binary=False, class_names=None))
        with pytest.raises(WouldBlock):
            asyncio.run(store.append_raw_soon("m", row(0), expect=config))
    finally:
        store.close()


def test_a_settle_puts_back_a_segment_deleted_under_a_known_one(sqlite_store, db_path):
    """A writer that knows a segment appends without its row; one lost to retention in a race comes back."""
    store, config = sqlite_store
    asyncio.run(store.append_raw_soon("m", row(0, segment="s"), expect=config))
    assert store.segments("m") == []  # (as if retention had deleted it just before)
    assert store.settle() == 1
    assert store.segments("m") == ["s"]
