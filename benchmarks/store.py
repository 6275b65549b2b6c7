"""Ingest rate of the SQLite monitor store: `write_batch` calls per second, 1 and 2 processes.

    python -m benchmarks.store [--seconds 2] [--repeats 3] [--blob-bytes 520] [--synchronous NORMAL]

Each call is one committed transaction (WAL) appending what one scored batch of 32 rows of
K=10 would: one stats row whose blob has `--blob-bytes` bytes (the size of a serialised
MonitorStats of 32 rows; the store never looks inside), plus, by variant, the 32 rows as pending
rows waiting for late labels (40-byte float32 logits each, with ids) or as labelled rows offered to
the reservoir (size 10,000). Every process writes to the same file, one minute bucket per second
of the run, for `--seconds` seconds after a common start; the figure is the sum of their calls per
second, the median of `--repeats` runs (each on a fresh file) with the range in brackets, and the
CPU time of the writing thread per call (in SQLite and Python; less disturbed by other load than
the rates).
"""

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._timing import table
from service.store import LabelledRow, MonitorConfig, PendingRow, SqliteStore, StoreLimits

VARIANTS = ("stats", "stats+32 pending", "stats+32 labelled")


def _merge(blobs: list[bytes]) -> bytes:
    return blobs[0]  # compaction does not run here


def _open(path: Path, synchronous: str) -> SqliteStore:
    limits = StoreLimits(max_pending_rows=10**9)
    return SqliteStore(path, merge=_merge, limits=limits, synchronous=synchronous, busy_timeout_s=60)  # type: ignore[arg-type]


def _writer(
    path: Path, synchronous: str, variant: str, blob_bytes: int, worker: int, start: float, seconds: float
) -> tuple[int, float]:
    store = _open(path, synchronous)
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
        store.write_batch("m", [(bucket, "s", blob)], pending=pending, labelled=labelled, now=now)
        n += 1
    cpu = time.thread_time() - cpu
    store.close()
    return n, cpu


def run(variant: str, processes: int, args: argparse.Namespace) -> tuple[float, float]:
    """Calls per second summed over the processes, and CPU microseconds per call."""
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "monitors.sqlite3"
        store = _open(path, args.synchronous)
        store.put_monitor(MonitorConfig("m", n_classes=10, binary=False, class_names=None))
        store.close()
        start = time.time() + 1.0 + 0.5 * processes  # after the processes have imported
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
    return calls / args.seconds, sum(cpu for _, cpu in results) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--blob-bytes", type=int, default=520)
    parser.add_argument("--synchronous", choices=["NORMAL", "FULL"], default="NORMAL")
    args = parser.parse_args()
    rows = []
    for variant in VARIANTS:
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
    print(
        f"synchronous={args.synchronous}, blob {args.blob_bytes} B, {args.seconds:g} s per run, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(table(rows))


if __name__ == "__main__":
    main()
