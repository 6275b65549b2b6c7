"""A monitor's 30-day time series, end to end in-process: ``GET …/metrics?window=30d&step=1h``.

    python -m benchmarks.monitor_query [--repeats 7] [--backend sqlite|postgresql]

30 days of minute buckets of one monitor (K = 10), each holding its own 32-row batch (43,200
distinct stats rows), written straight into a scratch store. The app (``create_app``, the store
it opens, FastAPI's TestClient: routing, validation, the store read, the metrics and the JSON
answer, no socket) answers the query:

- ``first``: the first query after start-up (every blob decoded), median of three start-ups;
- ``again``: the median of the next ones (the sums cache of each blob's bytes hit), and its CPU
  time (all threads of the process: what the query costs when it need not wait for a core);
- ``no cache``: the median with ``XENT_MONITOR_CACHE_MB=0`` (every query decodes every blob).

The rows are first rolled up into their hours (``store.roll_up``, what the background compactor
does every ``XENT_COMPACTION_INTERVAL_S`` and at start-up), so the query reads 720 hourly rollups
and the minutes of the current hour. Then the same after the background compaction has run
(minute buckets older than a day merged into hours: 1,440 minute rows and 696 hourly ones), which
is what a monitor holds once it has been up for a day. ``--backend postgresql`` needs
``XENT_TEST_DATABASE_URL`` (an empty database).
"""

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from benchmarks._timing import table
from service.app import create_app
from service.core import Distribution, MonitorStats
from service.monitors.holder import merge_blobs
from service.settings import Settings
from service.store import DATABASE_FILE, MonitorConfig, SqliteStore
from service.store.sqlstore import SqlStore

NAME = "month"


def open_store(location: str) -> SqlStore:
    if location.startswith("postgresql://"):
        from service.store.postgres import PostgresStore

        store: SqlStore = PostgresStore(location, merge=merge_blobs)
    else:
        store = SqliteStore(Path(location) / DATABASE_FILE, merge=merge_blobs)
    if hasattr(store, "digest"):  # as the app's store: rollups keep their default-binning sums
        from service.monitors.sums_cache import rollup_digest

        store.digest = rollup_digest
    return store


def fill(store: SqlStore, now: float, *, days: int = 30, rows: int = 32, k: int = 10) -> int:
    """`days` of minute buckets of monitor "month", each its own `rows`-row batch; return the rows."""
    store.put_monitor(MonitorConfig(name=NAME, n_classes=k, binary=False, class_names=None))
    rng = np.random.default_rng(2)
    first = int(now // 60) * 60 - days * 86400 + 60
    n = days * 1440
    batch: list[tuple[int, str, bytes]] = []
    for i in range(n):
        logits = 2 * rng.standard_normal((rows, k)).astype(np.float32)
        stats = MonitorStats.summarise(Distribution.from_logits(logits), rng.integers(0, k, rows))
        batch.append((first + 60 * i, "", stats.to_bytes()))
        if len(batch) == 5000 or i == n - 1:
            store.write_batch(NAME, batch)
            batch = []
    return n


@contextmanager
def app(location: str, cache_mb: float | None) -> Iterator[TestClient]:
    where: dict[str, Any] = (
        {"database_url": location} if location.startswith("postgresql://") else {"data_dir": location}
    )
    if cache_mb is not None and "monitor_cache_mb" in Settings.model_fields:  # absent before the cache
        where["monitor_cache_mb"] = cache_mb
    settings = Settings(**where, compaction_interval_s=86_400, access_log=False)
    with TestClient(create_app(settings)) as client:
        yield client


def timed(client: TestClient, cpu: list[float] | None = None) -> float:
    """Wall ms of one query; its CPU ms (every thread of the process) appended to `cpu`."""
    start, start_cpu = time.perf_counter(), time.process_time()
    answer = client.get(f"/v1/monitors/{NAME}/metrics", params={"window": "30d", "step": "1h"})
    elapsed, elapsed_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    assert answer.status_code == 200, answer.text
    assert sum(p["n"] for p in answer.json()["points"]) >= 32 * 43_000
    if cpu is not None:
        cpu.append(elapsed_cpu * 1e3)
    return elapsed * 1e3


def measure(location: str, repeats: int, label: str) -> dict[str, object]:
    firsts, first_cpu = [], []
    for _ in range(2):  # the first query of a fresh app (an empty cache); the median of three
        with app(location, None) as client:
            firsts.append(timed(client, first_cpu))
    with app(location, None) as client:
        first = float(np.median([*firsts, timed(client, first_cpu)]))
        cpu: list[float] = []
        again = float(np.median([timed(client, cpu) for _ in range(repeats)]))
    with app(location, 0) as client:
        timed(client)  # (connections opened, code warmed)
        off = float(np.median([timed(client) for _ in range(repeats)]))
    times = {"first ms": round(first), "first CPU ms": round(float(np.median(first_cpu)))}
    times |= {"again ms": round(again), "again CPU ms": round(float(np.median(cpu)))}
    times["no cache ms"] = round(off)
    return {"stats rows": label, **times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--backend", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        location = scratch
        if args.backend == "postgresql":
            location = os.environ.get("XENT_TEST_DATABASE_URL", "")
            if not location.startswith("postgresql://"):
                raise SystemExit("--backend postgresql needs XENT_TEST_DATABASE_URL=postgresql://… (empty)")
        now = time.time()
        store = open_store(location)
        n = fill(store, now)
        start = time.perf_counter()
        rolled = store.roll_up(time.time()) if hasattr(store, "roll_up") else 0  # (the compactor's job)
        print(f"rolled up {rolled:,} rows in {time.perf_counter() - start:.1f} s")  # noqa: T201
        rows = [measure(location, args.repeats, f"{n:,} minute rows, rolled up")]
        merged = store.compact(time.time())
        store.close()
        rows.append(measure(location, args.repeats, f"{n - merged:,} after compaction"))
    print(table(rows))  # noqa: T201
    print(f"{args.backend}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # noqa: T201


if __name__ == "__main__":
    main()
