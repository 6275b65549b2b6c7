from collections.abc import Iterator
from pathlib import Path

import pytest

from service.store import MonitorConfig, SqliteStore, StoreLimits
from service.store.sqlstore import SqlStore
from tests.store.blobs import merge


def make_store(location, **kwargs) -> SqlStore:
    """A store at `location`: an SQLite path, or a postgresql:// URL (SQLite-only options dropped)."""
    merge_ = kwargs.pop("merge", merge)
    if isinstance(location, str) and location.startswith("postgresql://"):
        from service.store.postgres import PostgresStore

        return PostgresStore(location, merge=merge_, **kwargs)
    return SqliteStore(location, merge=merge_, **kwargs)


@pytest.fixture
def db_path(tmp_path) -> Path:
    """An SQLite file (for the tests of SQLite itself)."""
    return tmp_path / "data" / "monitors.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path) -> Path | str:
    """Where a store lives, once per backend: an SQLite path, or an empty PostgreSQL database's URL."""
    if request.param == "sqlite":
        return tmp_path / "data" / "monitors.sqlite3"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(db) -> Iterator[SqlStore]:
    store = make_store(db, limits=StoreLimits())
    yield store
    store.close()


@pytest.fixture
def monitor(store) -> MonitorConfig:
    config, created = store.put_monitor(MonitorConfig("m", n_classes=3, binary=False, class_names=None))
    assert created
    return config


def query(location, statement: str) -> list[tuple]:
    """Rows of one SELECT, read straight from the database (not through the store)."""
    if isinstance(location, str) and location.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(location) as connection:
            return [tuple(row) for row in connection.execute(statement).fetchall()]
    import sqlite3

    with sqlite3.connect(location) as connection:
        return connection.execute(statement).fetchall()


def assert_counters_match(location) -> None:
    """The per-monitor counters the caps rely on equal the rows they count."""
    rows = query(
        location,
        "SELECT name, n_pending, (SELECT count(*) FROM pending WHERE monitor = name), "
        "n_reservoir, (SELECT coalesce(sum(n_rows), 0) FROM reservoir_blocks WHERE monitor = name) "
        "FROM monitors",
    )
    for name, n_pending, pending, n_reservoir, reservoir in rows:
        assert (name, n_pending, n_reservoir) == (name, pending, reservoir)
