"""Ingest rate of the monitor store (SQLite, PostgreSQL): `write_batch` calls per second, 1 and 2 processes.

    python -m benchmarks.store [--backend sqlite|postgresql] [--database-url URL] [--seconds 2]
                               [--repeats 3] [--blob-bytes 520] [--synchronous NORMAL]

Each call is one committed transaction (WAL) appending what one scored batch of 32 rows of
K=10 would: one stats row whose blob has `--blob-bytes` bytes (the size of a serialised
MonitorStats of 32 rows; the store never looks inside), plus, by variant, the 32 rows as pending
rows waiting for late labels (40-byte float32 logits each, with ids) or as labelled rows offered to
the reservoir (size 10,000). Every process writes to the same file, one minute bucket per second
of the run, for `--seconds` seconds after a common start; the figure is the sum of their calls per
second, the median of `--repeats` runs (each on a fresh file) with the range in brackets, and the
CPU time of the writing thread per call (in the driver and Python; less disturbed by other load than
the rates).

PostgreSQL: every run in a fresh database on the server `--database-url` names (a superuser, or a
role allowed to create databases), else on a throw-away local cluster started like the tests' one
but with the server's durable defaults (fsync on, ``synchronous_commit=on``). The extra variant
"upsert counters" and "read-merge-write blob" are the designs not taken, one row per (monitor,
bucket, segment) updated in place: the first adds two numbers with ``INSERT ... ON CONFLICT DO
UPDATE SET n = n + EXCLUDED.n`` (what SQL can add; not the statistics), the second does what a
serialised histogram needs: ``SELECT ... FOR UPDATE`` the bucket's blob, merge it in Python (here a
float64 vector of `--blob-bytes` bytes, summed), ``UPDATE`` it. Writers of one bucket queue on its
row in both. ``--variants`` picks some (comma-separated names).
"""

import argparse
import multiprocessing
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from benchmarks._timing import table
from service.store import LabelledRow, MonitorConfig, PendingRow, SqliteStore, StoreLimits
from service.store.sqlstore import SqlStore

VARIANTS = ("stats", "stats+32 pending", "stats+32 labelled", "upsert counters", "read-merge-write blob")
UPSERT_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_counters (monitor TEXT NOT NULL, bucket_start BIGINT NOT NULL, "
    "segment TEXT NOT NULL, n BIGINT NOT NULL, total DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (monitor, bucket_start, segment))"
)
BLOB_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_blobs (monitor TEXT NOT NULL, bucket_start BIGINT NOT NULL, "
    "segment TEXT NOT NULL, blob {blob} NOT NULL, PRIMARY KEY (monitor, bucket_start, segment))"
)
BLOB_CREATE = (
    "INSERT INTO bench_blobs (monitor, bucket_start, segment, blob) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (monitor, bucket_start, segment) DO NOTHING"
)
BLOB_LOCK = "SELECT blob FROM bench_blobs WHERE monitor = ? AND bucket_start = ? AND segment = ?{lock}"
BLOB_UPDATE = "UPDATE bench_blobs SET blob = ? WHERE monitor = ? AND bucket_start = ? AND segment = ?"
UPSERT = (
    "INSERT INTO bench_counters (monitor, bucket_start, segment, n, total) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (monitor, bucket_start, segment) DO UPDATE SET n = bench_counters.n + EXCLUDED.n, "
    "total = bench_counters.total + EXCLUDED.total"
)


def _merge(blobs: list[bytes]) -> bytes:
    return blobs[0]  # compaction does not run here


def _open(location: Path | str, synchronous: str) -> SqlStore:
    limits = StoreLimits(max_pending_rows=10**9)
    if isinstance(location, str):
        from service.store.postgres import PostgresStore

        return PostgresStore(location, merge=_merge, limits=limits, timeout_s=60)
    return SqliteStore(location, merge=_merge, limits=limits, synchronous=synchronous, busy_timeout_s=60)  # type: ignore[arg-type]


def _writer(
    location: Path | str,
    synchronous: str,
    variant: str,
    blob_bytes: int,
    worker: int,
    start: float,
    seconds: float,
) -> tuple[int, float]:
    store = _open(location, synchronous)
    blob = os.urandom(blob_bytes)
    row = os.urandom(40)
    n = 0
    while time.time() < start:
        time.sleep(0.001)
    cpu = time.thread_time()
    while (now := time.time()) < start + seconds:
        bucket = int(now) // 60 * 60
        pending = labelled = ()
        if variant == "stats+32 pending":
            pending = [PendingRow(f"{worker}-{n}-{j}", now, "s", "logits", "<f4", row) for j in range(32)]
        elif variant == "stats+32 labelled":
            labelled = [LabelledRow(now, "s", "logits", "<f4", row, j % 10) for j in range(32)]
        if variant == "upsert counters":
            with store._transaction() as cur:
                cur.execute(store._q(UPSERT), ("m", bucket, "s", 32, 1.5))
        elif variant == "read-merge-write blob":
            key = ("m", bucket, "s")
            lock = " FOR UPDATE" if store.dialect == "postgresql" else ""  # SQLite: BEGIN IMMEDIATE
            with store._transaction() as cur:
                cur.execute(store._q(BLOB_CREATE), (*key, bytes(len(blob))))
                cur.execute(store._q(BLOB_LOCK.format(lock=lock)), key)
                old = np.frombuffer(bytes(cur.fetchone()[0]), dtype="<f8")
                new = old + 1.0  # the merge: decode, add, encode
                cur.execute(store._q(BLOB_UPDATE), (new.tobytes(), *key))
        else:
            store.write_batch("m", [(bucket, "s", blob)], pending=pending, labelled=labelled, now=now)
        n += 1
    cpu = time.thread_time() - cpu
    store.close()
    return n, cpu


@contextmanager
def _fresh(args: argparse.Namespace) -> Iterator[Path | str]:
    if args.backend == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield Path(directory) / "monitors.sqlite3"
    else:
        from tests.postgres_server import fresh_database

        with fresh_database(args.database_url) as url:
            yield url


def run(variant: str, processes: int, args: argparse.Namespace) -> tuple[float, float]:
    """Calls per second summed over the processes, and CPU microseconds per call."""
    with _fresh(args) as path:
        store = _open(path, args.synchronous)
        store.put_monitor(MonitorConfig("m", n_classes=10, binary=False, class_names=None))
        with store._transaction() as cur:
            cur.execute(UPSERT_TABLE)
            cur.execute(BLOB_TABLE.format(blob="BYTEA" if store.dialect == "postgresql" else "BLOB"))
        store.close()
        start = time.time() + 3.0 + 1.0 * processes  # after the processes have imported
        context = multiprocessing.get_context("spawn")
        with context.Pool(processes) as pool:
            results = pool.starmap(
                _writer,
                [
                    (path, args.synchronous, variant, args.blob_bytes, w, start, args.seconds)
                    for w in range(processes)
                ],
            )
    calls = sum(n for n, _ in results)
    return calls / args.seconds, sum(cpu for _, cpu in results) / max(calls, 1) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blob-bytes", type=int, default=520)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL", help="SQLite only")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"some of {', '.join(VARIANTS)}")
    parser.add_argument("--database-url", help="PostgreSQL server (default: a throw-away local cluster)")
    args = parser.parse_args()
    if args.backend == "postgresql" and not args.database_url:
        from tests.postgres_server import cluster

        with cluster(fast=False) as url:
            args.database_url = url
            _report(args)
    else:
        _report(args)


def _report(args: argparse.Namespace) -> None:
    rows = []
    for variant in args.variants.split(","):
        row = {"write_batch": variant}
        cpu = []
        for processes in (1, 2):
            runs = [run(variant, processes, args) for _ in range(args.repeats)]
            rates = sorted(rate for rate, _ in runs)
            label = f"{processes} process{'es' if processes > 1 else ''} (/s)"
            row[label] = f"{np.median(rates):,.0f} [{rates[0]:,.0f}-{rates[-1]:,.0f}]"
            cpu += [] if processes > 1 else [us for _, us in runs]
        row["CPU per call, 1 process (µs)"] = f"{np.median(cpu):,.0f}"
        rows.append(row)
    if args.backend == "sqlite":
        durability = f"SQLite {sqlite3.sqlite_version}, synchronous={args.synchronous}"
    else:
        import psycopg

        with psycopg.connect(args.database_url) as connection:
            version = connection.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            commit = connection.execute("SHOW synchronous_commit").fetchone()[0]  # type: ignore[index]
            fsync = connection.execute("SHOW fsync").fetchone()[0]  # type: ignore[index]
        durability = f"PostgreSQL {version}, synchronous_commit={commit}, fsync={fsync}"
    print(
        f"{durability}, blob {args.blob_bytes} B, {args.seconds:g} s per run, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
