from collections.abc import Iterator

import pytest

from service.store import MonitorConfig, SqliteStore, StoreLimits
from tests.store.blobs import merge


def make_store(path, **kwargs) -> SqliteStore:
    return SqliteStore(path, merge=kwargs.pop("merge", merge), **kwargs)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "monitors.sqlite3"


@pytest.fixture
def store(db_path) -> Iterator[SqliteStore]:
    store = make_store(db_path, limits=StoreLimits())
    yield store
    store.close()


@pytest.fixture
def monitor(store) -> MonitorConfig:
    config, created = store.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))
    assert created
    return config


def assert_counters_match(path) -> None:
    """The per-monitor counters the caps rely on equal the rows they count."""
    import sqlite3

    with sqlite3.connect(path) as connection:
        rows = connection.execute(
            "SELECT name, n_pending, (SELECT count(*) FROM pending WHERE monitor = name), "
            "n_reservoir, (SELECT count(*) FROM reservoir WHERE monitor = name) FROM monitors"
        ).fetchall()
    for name, n_pending, pending, n_reservoir, reservoir in rows:
        assert (name, n_pending, n_reservoir) == (name, pending, reservoir)
