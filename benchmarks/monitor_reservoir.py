"""What the labelled-row reservoir adds to an ingested batch, in process, measured call by call.

    python -m benchmarks.monitor_reservoir [--windows 6]

One thread, a scratch SQLite store (``synchronous=NORMAL``), two monitors: one with the default
10,000-row reservoir, one without (``reservoir_size=0``). The same batch is ingested into one,
then the other, alternately, and each call's process CPU time is added to its monitor's total,
so both see the same machine load. Windows of 1,000 32×10 float64 batches (the JSON case: the
first windows fill the reservoir, 32,000 labelled rows each), then of 20 10,000×10 float32
batches (the binary case). Prints each window's CPU µs per call with and without the reservoir,
and the difference. Runs against any checkout with ``service.monitors.ingest`` (a ``git
archive`` of an older commit on ``PYTHONPATH``).
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._timing import table
from service.core import Distribution
from service.monitors import ingest
from service.monitors.holder import merge_blobs
from service.store import MonitorConfig, SqliteStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    small, small_y = rng.standard_normal((32, 10)), rng.integers(0, 10, 32)
    large, large_y = rng.standard_normal((10_000, 10)).astype(np.float32), rng.integers(0, 10, 10_000)
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as data_dir:
        store = SqliteStore(Path(data_dir) / "monitors.sqlite3", merge=merge_blobs)
        without, _ = store.put_monitor(MonitorConfig("without", 10, False, None, reservoir_size=0))
        with_, _ = store.put_monitor(MonitorConfig("with", 10, False, None, reservoir_size=10_000))
        clock = time.process_time_ns
        for z, y, calls, label in (
            (small, small_y, 1000, "32×10 f64"),
            (large, large_y, 20, "10,000×10 f32"),
        ):
            for window in range(args.windows):
                spent = {"with": 0, "without": 0}
                for _ in range(calls):
                    for config in (with_, without):
                        start = clock()
                        ingest(store, config, Distribution.from_logits(z), y, None, None, "")
                        spent[config.name] += clock() - start
                per_call = {name: ns / calls / 1e3 for name, ns in spent.items()}
                extra = per_call["with"] - per_call["without"]
                rows.append(
                    {
                        "batch, window of calls": f"{label}, {window + 1}",
                        "reservoir µs/call": f"{per_call['with']:,.0f}",
                        "none µs/call": f"{per_call['without']:,.0f}",
                        "added µs": f"{extra:,.0f}",
                        "added %": f"{100 * extra / per_call['without']:.0f}",
                    }
                )
        store.close()
    print(table(rows))


if __name__ == "__main__":
    main()
