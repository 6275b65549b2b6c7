"""CPU per ingested batch, in process (no HTTP): the write path's own cost, steadier than req/s.

    python -m benchmarks.monitor_ingest [--repeats 2000]

One thread, a scratch SQLite store (``synchronous=NORMAL``). For a 32×10 float64 batch with
labels: ``MonitorStats.summarise`` + ``to_bytes`` alone, and ``service.monitors.ingest`` into a
monitor without a reservoir and into one with a full 10,000-row reservoir; for a 10,000×10
float32 batch, ingest without and with that reservoir. Process CPU time per call (median of 5
runs), beside the core's ``cross_entropy`` (per-row values, then their mean) of the same batch.
Runs against any checkout that has ``service.monitors.ingest`` (e.g. a ``git archive`` of an
older commit on ``PYTHONPATH``).

Then 8 threads ingesting 200 batches each into one store, with ``synchronous`` NORMAL and FULL:
batches per second, and how many writes each COMMIT carried (group commit); and 8 coroutines
on one event loop doing the same as the observations route does with a small body (the batch
prepared, then written on the loop: ``write_prepared_soon``, the writes of a turn of the loop
sharing one COMMIT, or, in a checkout without it, ``write_prepared(wait=False)``, one COMMIT
each): CPU µs per batch and writes per COMMIT.
"""

import argparse
import asyncio
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks._timing import table
from service.core import Distribution, MonitorStats, cross_entropy
from service.monitors import ingest
from service.monitors.holder import merge_blobs
from service.store import MonitorConfig, SqliteStore, WouldBlock


def cpu_us(call: Callable[[], object], repeats: int) -> float:
    call()
    runs = []
    for _ in range(5):
        start = time.process_time()
        for _ in range(repeats):
            call()
        runs.append((time.process_time() - start) / repeats * 1e6)
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    small, small_y = rng.standard_normal((32, 10)), rng.integers(0, 10, 32)
    large, large_y = rng.standard_normal((10_000, 10)).astype(np.float32), rng.integers(0, 10, 10_000)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as data_dir:
        store = SqliteStore(Path(data_dir) / "monitors.sqlite3", merge=merge_blobs)
        plain, _ = store.put_monitor(MonitorConfig("plain", 10, False, None, reservoir_size=0))
        full, _ = store.put_monitor(MonitorConfig("full", 10, False, None, reservoir_size=10_000))
        for _ in range(5):  # 50,000 labelled rows offered: the reservoir is full
            ingest(store, full, Distribution.from_logits(large), large_y, None, None, "")

        def score(z: np.ndarray, y: np.ndarray) -> Callable[[], object]:
            return lambda: cross_entropy(y, z).mean()

        def write(config: MonitorConfig, z: np.ndarray, y: np.ndarray) -> Callable[[], object]:
            return lambda: ingest(store, config, Distribution.from_logits(z), y, None, None, "")

        def summary() -> bytes:
            return MonitorStats.summarise(Distribution.from_logits(small), small_y).to_bytes()

        n_small, n_large = args.repeats, max(args.repeats // 200, 5)
        cases = [
            ("32×10: cross_entropy (core)", score(small, small_y), n_small),
            ("32×10: summarise + to_bytes", summary, n_small),
            ("32×10: ingest, no reservoir", write(plain, small, small_y), n_small),
            ("32×10: ingest, full 10,000-row reservoir", write(full, small, small_y), n_small),
            ("10,000×10 f32: cross_entropy (core)", score(large, large_y), n_large),
            ("10,000×10 f32: ingest, no reservoir", write(plain, large, large_y), n_large),
            ("10,000×10 f32: ingest, full reservoir", write(full, large, large_y), n_large),
        ]
        for label, call, repeats in cases:
            rows.append({"in process, one thread": label, "CPU µs per call": f"{cpu_us(call, repeats):,.0f}"})
        store.close()
    print(table(rows), end="\n\n")
    print(table([concurrent(sync, small, small_y) for sync in ("NORMAL", "FULL")]), end="\n\n")
    print(table([on_loop(small, small_y, clients) for clients in (1, 8)]))


def concurrent(
    synchronous: str, z: np.ndarray, y: np.ndarray, threads: int = 8, batches: int = 200
) -> dict[str, object]:
    """`threads` threads each ingesting `batches` 32×10 batches into one store (no reservoir)."""
    with tempfile.TemporaryDirectory(dir=".") as data_dir:  # the disk the data would live on
        store = SqliteStore(Path(data_dir) / "m.sqlite3", merge=merge_blobs, synchronous=synchronous)  # type: ignore[arg-type]
        config, _ = store.put_monitor(MonitorConfig("m", 10, False, None, reservoir_size=0))
        group = getattr(store, "group_commit", None)  # (absent before group commit)
        if group is not None:
            group.commits = group.works = 0

        def work() -> None:
            for _ in range(batches):
                ingest(store, config, Distribution.from_logits(z), y, None, None, "")

        pool = [threading.Thread(target=work) for _ in range(threads)]
        start = time.perf_counter()
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        elapsed = time.perf_counter() - start
        store.close()
    per_commit = f"{group.works / group.commits:.2f}" if group is not None and group.commits else "1"
    return {
        f"{threads} threads × {batches} batches of 32×10": f"synchronous={synchronous}",
        "batches/s": f"{threads * batches / elapsed:,.0f}",
        "writes per commit": per_commit,
    }


def on_loop(z: np.ndarray, y: np.ndarray, clients: int, batches: int = 400) -> dict[str, object]:
    """`clients` coroutines each preparing and writing `batches` 32×10 batches on one event loop."""
    import service.monitors as monitors

    soon = getattr(monitors, "write_prepared_soon", None)  # (absent before the loop's shared commits)
    with tempfile.TemporaryDirectory(dir=".") as data_dir:
        store = SqliteStore(Path(data_dir) / "m.sqlite3", merge=merge_blobs)
        config, _ = store.put_monitor(MonitorConfig("m", 10, False, None, reservoir_size=0))
        group = store.group_commit

        async def client() -> None:
            for _ in range(batches):
                batch = monitors.prepare_batch(config, Distribution.from_logits(z), y, None, None, "")
                while True:
                    try:
                        if soon is not None:
                            await soon(store, batch)
                        else:
                            monitors.write_prepared(store, batch, wait=False)
                            await asyncio.sleep(0)  # (the route's answer lets the other requests run)
                        break
                    except WouldBlock:  # (the route sends it to a thread: here, at once)
                        monitors.write_prepared(store, batch)
                        break

        async def run() -> None:
            await asyncio.gather(*(client() for _ in range(clients)))

        asyncio.run(run())  # (warm-up)
        commits, works = group.commits, group.works
        start = time.process_time()
        asyncio.run(run())
        spent = time.process_time() - start
        commits, works = group.commits - commits, group.works - works
        store.close()
    return {
        "event loop, 32×10 batches": f"{clients} at a time",
        "CPU µs per batch (prepare + write)": f"{spent / (clients * batches) * 1e6:,.0f}",
        "writes per commit": f"{works / commits:.2f}",
    }


if __name__ == "__main__":
    main()
