"""Shared timing helpers: single-threaded, medians over repeats, one table."""

import time
from collections.abc import Callable

import numpy as np


def median_ms(fn: Callable[[], object], repeats: int = 5) -> float:
    """Median CPU time of the calling thread running `fn`, in milliseconds, after one warm-up call.

    Thread CPU time rather than wall time: everything here runs on one thread, and CPU time
    is far less disturbed by other processes on a shared 2-core machine.
    """
    fn()
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        fn()
        times.append(time.thread_time() - start)
    return float(np.median(times) * 1e3)


def table(rows: list[dict[str, object]]) -> str:
    """A GitHub-markdown table of `rows` (all with the same keys)."""
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)


def load_summary(latencies: list[float], elapsed: float) -> dict[str, float]:
    """Requests per second and p50/p99 latency in ms of a load run that lasted `elapsed` seconds."""
    ms = np.array(latencies) * 1e3
    return {
        "rps": len(ms) / elapsed,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
    }
