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
