"""What only the PostgreSQL backend has: its URL in settings, migrations, errors, several processes.

The backend-agnostic contract (batches, labels, reservoir, compaction, kill -9) runs over both
backends from the other test files (the `db` fixture).
"""

import os
import subprocess
import sys
import threading

import pytest

from service.settings import Settings
from service.store import (
    MonitorConfig,
    MonitorNotFound,
    StoreError,
    StoreLimit,
    StoreUnavailable,
    open_store,
    sql,
)
from tests.store.blobs import blob, merge, total
from tests.store.conftest import make_store, query

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL tests need the postgres extra (psycopg)")
from service.store.postgres import PostgresStore, redact, unavailable  # noqa: E402


def config(name: str) -> MonitorConfig:
    return MonitorConfig(name, n_classes=2, binary=False, class_names=None)


def test_open_store_takes_a_postgresql_url_with_the_settings_caps(postgres_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "unused", database_url=postgres_url, max_monitors=1)
    store = open_store(settings, merge=merge)
    assert isinstance(store, PostgresStore)
    store.put_monitor(config("a"))
    with pytest.raises(StoreLimit, match="max_monitors=1"):
        store.put_monitor(config("b"))
    store.close()
    assert not (tmp_path / "unused").exists()
    assert query(postgres_url, "SELECT name FROM monitors") == [("a",)]


def test_the_url_s_password_never_shows(postgres_url):
    assert redact("postgresql://xent:s3cret@db:5432/xent") == "postgresql://xent:***@db:5432/xent"
    store = make_store(postgres_url)
    assert "s3cret" not in repr(store) and repr(store).startswith("PostgresStore('postgresql://postgres@")
    store.close()


def test_without_the_extra_the_error_names_it(tmp_path):
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from service.settings import Settings; from service.store import open_store\n"
        "open_store(Settings(database_url='postgresql://x@127.0.0.1/x'), merge=lambda b: b[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    assert done.returncode == 1
    assert "ImportError: XENT_DATABASE_URL=postgresql://... needs the PostgreSQL driver" in done.stderr
    assert "pip install 'xent-service[postgres]'" in done.stderr


def test_a_server_that_cannot_be_reached_is_unavailable():
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(StoreUnavailable, match="no database connection within the pool timeout"):
        make_store(f"postgresql://postgres@127.0.0.1:{port}/postgres", timeout_s=1.0)


def test_server_errors_meaning_not_now_map_to_unavailable(postgres_url):
    """A real serialization failure from the server, and the SQLSTATEs of a full disk or a shutdown."""
    with psycopg.connect(postgres_url, autocommit=True) as setup:
        setup.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (0)")
    first, second = psycopg.connect(postgres_url), psycopg.connect(postgres_url)
    for connection in (first, second):
        connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        connection.execute("SELECT x FROM t").fetchall()
    first.execute("UPDATE t SET x = 1")
    first.commit()
    with pytest.raises(psycopg.errors.SerializationFailure) as raised:
        second.execute("UPDATE t SET x = 2")
    first.close()
    second.close()
    assert "serialization failure" in unavailable(raised.value).reason
    assert "disk full (SQLSTATE 53100)" in unavailable(psycopg.errors.DiskFull()).reason
    assert "server shutting down" in unavailable(psycopg.errors.AdminShutdown()).reason
    assert unavailable(psycopg.errors.UniqueViolation()) is None  # a bug, not an outage: stays a 500
    assert unavailable(ValueError()) is None


def test_fresh_database_is_migrated_to_the_latest_version_once(postgres_url):
    store = make_store(postgres_url)
    assert store.migrate() == sql.LATEST_VERSION
    store.close()
    versions = query(postgres_url, "SELECT version FROM schema_version ORDER BY version")
    assert versions == [(v,) for v, _ in sql.MIGRATIONS]


def test_a_database_from_a_newer_xent_is_refused(postgres_url):
    make_store(postgres_url).close()
    with psycopg.connect(postgres_url) as connection:
        connection.execute(sql.to_format(sql.INSERT_SCHEMA_VERSION), (sql.LATEST_VERSION + 1, 0))
    with pytest.raises(StoreError, match=f"schema version {sql.LATEST_VERSION + 1} is newer"):
        make_store(postgres_url)


OPEN_AND_CREATE = """
import sys
from service.store import MonitorConfig
from service.store.postgres import PostgresStore
from tests.store.blobs import merge
store = PostgresStore(sys.argv[1], merge=merge, timeout_s=30)
store.put_monitor(MonitorConfig(sys.argv[2], n_classes=2, binary=False, class_names=None))
store.close()
"""


def test_processes_opening_a_fresh_database_at_once_migrate_it_once(postgres_url):
    """The advisory lock: replicas starting together do not race each other's CREATE TABLEs."""
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    command = [sys.executable, "-c", OPEN_AND_CREATE, postgres_url]
    processes = [subprocess.Popen([*command, f"w{i}"], env=env) for i in range(4)]
    assert [p.wait(timeout=120) for p in processes] == [0] * 4
    assert query(postgres_url, "SELECT version FROM schema_version ORDER BY version") == [
        (v,) for v, _ in sql.MIGRATIONS
    ]
    assert query(postgres_url, "SELECT name FROM monitors ORDER BY name") == [
        ("w0",),
        ("w1",),
        ("w2",),
        ("w3",),
    ]


def test_a_monitor_deleted_while_batches_arrive_leaves_no_orphan_rows(postgres_url):
    """Writers hold the monitor's row FOR KEY SHARE: the delete waits, later writes see it gone."""
    store = make_store(postgres_url)
    store.put_monitor(config("m"))
    outcomes: list[str] = []

    def write() -> None:
        for i in range(200):
            try:
                store.write_batch("m", [(i * 60, "a", blob(1))], now=0.0)
            except MonitorNotFound:
                outcomes.append("gone")
                return
        outcomes.append("done")

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    assert store.delete_monitor("m")
    for thread in threads:
        thread.join()
    assert set(outcomes) <= {"gone", "done"} and len(outcomes) == 4  # never a foreign-key error
    assert query(postgres_url, "SELECT count(*) FROM stats") == [(0,)]
    assert query(postgres_url, "SELECT count(*) FROM segments") == [(0,)]
    store.close()


def test_two_stores_in_one_database_see_each_other_s_rows(postgres_url):
    """Two pools (two replicas): rows one writes, the other reads and compacts, exactly once."""
    a, b = make_store(postgres_url), make_store(postgres_url)
    a.put_monitor(config("m"))
    for i in range(10):
        (a if i % 2 else b).write_batch("m", [(0, "s", blob(1, i))], now=0.0)
    assert total(b.read_stats("m", 0, 60)).tolist() == [10.0, 45.0]
    assert b.compact(0.0) == 9
    assert a.read_stats("m", 0, 60) == [(0, "s", blob(10, 45))]
    a.close()
    b.close()
