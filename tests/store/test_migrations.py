import sqlite3

import pytest

from service.store import StoreUnavailable, sql
from tests.store.blobs import blob
from tests.store.conftest import make_store
from tests.store.test_batches import pending


def versions(path) -> list[int]:
    with sqlite3.connect(path) as connection:
        return [v for (v,) in connection.execute("SELECT version FROM schema_version ORDER BY version")]


def create_version_1(path) -> None:
    """A database as the first schema version left it, with a monitor and a stats row."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(sql.CREATE_SCHEMA_VERSION)
    for statement in sql.ddl(1, "sqlite"):
        connection.execute(statement)
    connection.execute(sql.INSERT_SCHEMA_VERSION, (1, 0))
    connection.execute(
        'INSERT INTO monitors VALUES (\'old\', 4, 0, \'["a", "b", "c", "d"]\', 60, 3600, 1.5, 2.5)'
    )
    connection.execute(
        "INSERT INTO stats (monitor, bucket_start, segment, blob) VALUES ('old', 60, 's', ?)", (blob(7),)
    )
    connection.execute("INSERT INTO segments VALUES ('old', 's')")
    connection.close()


def test_fresh_database_is_created_at_the_latest_version_in_wal_mode(db_path):
    store = make_store(db_path)
    assert versions(db_path) == [v for v, _ in sql.MIGRATIONS]
    with sqlite3.connect(db_path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    store.close()


def test_version_1_database_migrates_to_the_latest_keeping_its_data(db_path):
    create_version_1(db_path)
    store = make_store(db_path)
    assert versions(db_path) == [1, 2, 3, 4, 5, 6, 7, 8] == [v for v, _ in sql.MIGRATIONS]
    old = store.get_monitor("old")
    assert (old.n_classes, old.class_names, old.retention_s, old.created_at) == (
        4,
        ("a", "b", "c", "d"),
        3600,
        1.5,
    )
    assert (old.label_ttl_s, old.reservoir_size, old.output, old.output_kind) == (
        7 * 86400,
        10_000,
        None,
        None,
    )
    assert store.read_stats("old", 0, 10**9) == [(60, "s", blob(7))]
    assert store.segments("old") == ["s"]
    store.write_batch("old", [], pending=[pending("x", time=100.0)], now=100.0)  # the new tables work
    assert store.join_labels("old", ["x"], 100.0, lambda rows, labels: [], [1]).joined == 1
    sums = (1, 2.5, 3, 2.3, 1, 4, 1, 0, 0, 0, 0)  # version 5: language-model sums add up per bucket
    assert store.add_lm_sums("old", [(60, "s", sums), (120, "s", sums)]) == 2
    store.add_lm_sums("old", [(60, "s", sums)])
    doubled = tuple(2 * v for v in sums)
    assert store.read_lm_sums("old", 0, 10**9) == [(60, "s", doubled), (120, "s", sums)]
    store.close()


def test_migration_is_idempotent(db_path):
    create_version_1(db_path)
    make_store(db_path).close()
    store = make_store(db_path)
    assert store.migrate() == sql.LATEST_VERSION
    assert versions(db_path) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert store.read_stats("old", 0, 10**9) == [(60, "s", blob(7))]
    store.close()


def test_migrate_to_an_intermediate_version_then_on(db_path):
    store = make_store(db_path, migrate=False)
    assert store.migrate(1) == 1
    assert versions(db_path) == [1]
    assert store.migrate() == sql.LATEST_VERSION == 8
    assert versions(db_path) == [1, 2, 3, 4, 5, 6, 7, 8]
    store.close()


def test_a_database_from_a_newer_xent_is_refused(db_path):
    make_store(db_path).close()
    with sqlite3.connect(db_path) as connection:
        connection.execute(sql.INSERT_SCHEMA_VERSION, (sql.LATEST_VERSION + 1, 0))
    with pytest.raises(
        StoreUnavailable, match=f"schema version {sql.LATEST_VERSION + 1} is newer than this Xent's"
    ):
        make_store(db_path)


OPEN_AND_CREATE = """
import sys
from service.store import MonitorConfig, SqliteStore
from tests.store.blobs import merge
store = SqliteStore(sys.argv[1], merge=merge, busy_timeout_s=30)
store.put_monitor(MonitorConfig(sys.argv[2], n_classes=2, binary=False, class_names=None))
store.close()
"""


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(db_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-c", OPEN_AND_CREATE, str(db_path)]
    processes = [subprocess.Popen([*command, f"w{i}"], env=env) for i in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0] * 4
    assert versions(db_path) == [v for v, _ in sql.MIGRATIONS]
    store = make_store(db_path)
    assert [m.name for m in store.list_monitors()] == ["w0", "w1", "w2", "w3"]
    store.close()


def test_a_database_path_that_cannot_be_opened_is_unavailable(tmp_path):
    from service.store import StoreUnavailable

    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        make_store(tmp_path)  # a directory
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreUnavailable, match="cannot create"):
        make_store(tmp_path / "file" / "sub" / "monitors.sqlite3")
    (tmp_path / "junk.db").write_bytes(b"not a database" * 100)
    with pytest.raises(StoreUnavailable, match="file is not a database"):
        make_store(tmp_path / "junk.db")
