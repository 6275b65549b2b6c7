"""A large batch's log-sum-exp pass and monitor summary in process, under ``xent serve``'s malloc settings.

    python -m benchmarks.large_summary [--rows 10000] [--classes 10] [--repeats 300]

Applies ``xent serve``'s glibc settings to this process first (``service.api.serving.tune_malloc``:
a fixed 128 KiB mmap threshold, so any buffer above it that a call allocates afresh is a new
mapping, page-faulted in) and times, on float32 logits with labels: the log-sum-exp pass with
labels (``softmax_summary``, what ``/v1/cross-entropy`` runs), with the default 512 KiB blocks and
with 120 KiB ones, and a monitor's whole summary (``MonitorStats.summarise``). Each row: the best
of 7 rounds of REPEATS calls in µs, and the minor page faults per call. Figures:
docs/internals.md (Block sizes) and docs/monitors-performance.md.
"""

import argparse
import resource
import time
from collections.abc import Callable

import numpy as np

from benchmarks._timing import table
from service.api.serving import tune_malloc
from service.core import Distribution, MonitorStats
from service.core.logsumexp import softmax_summary


def best_us(work: Callable[[], object], repeats: int) -> float:
    """Best of 7 rounds of `repeats` calls: µs a call."""
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(repeats):
            work()
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e6


def faults_per_call(work: Callable[[], object], repeats: int) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(repeats):
        work()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args()
    tuned = tune_malloc()
    rng = np.random.default_rng(1)
    z = rng.standard_normal((args.rows, args.classes)).astype(np.float32)
    y = rng.integers(0, args.classes, args.rows)
    works: dict[str, Callable[[], object]] = {
        "log-sum-exp pass with labels, 512 KiB blocks": lambda: softmax_summary(
            z, top=False, entropy=False, labels=y
        ),
        "log-sum-exp pass with labels, 120 KiB blocks": lambda: softmax_summary(
            z, top=False, entropy=False, labels=y, block_bytes=120 << 10
        ),
        "monitor summary (MonitorStats.summarise)": lambda: MonitorStats.summarise(
            Distribution.from_logits(z, validate=False), y, validate=False
        ),
    }
    rows: list[dict[str, object]] = []
    for name, work in works.items():
        work()  # warm: this thread's scratch lent from the second call on
        rows.append(
            {
                f"{args.rows:,}×{args.classes} float32": name,
                "best µs": f"{best_us(work, args.repeats):.0f}",
                "page faults a call": f"{faults_per_call(work, args.repeats):.1f}",
            }
        )
    print(table(rows))
    print(f"xent serve's malloc settings applied: {tuned}")


if __name__ == "__main__":
    main()
