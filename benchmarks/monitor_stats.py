"""Monitor statistics: bytes per bucket, and the time to merge a 30-day query's blobs.

Run with ``python -m benchmarks.monitor_stats`` (``--quick`` for fewer repeats). Times are
the median thread CPU time (``benchmarks._timing.median_ms``) of one call that starts from the
stored bytes: ``merge_stats(blobs)`` decodes every blob (vectorised) and adds them, then the
query's metrics (CE, accuracy, Brier, ECE/MCE/RMSCE at 15 bins) are computed from the result.
"""

import argparse

import numpy as np

from benchmarks._timing import median_ms, table
from service.core import Distribution, MonitorStats, merge_stats
from service.core.monitoring.codec import HEADER, index_width
from service.core.monitoring.fine_histogram import N_CELLS


def batch(rng: np.random.Generator, rows: int, k: int) -> MonitorStats:
    """Statistics of `rows` rows of random logits, every row labelled."""
    logits = (3 * rng.standard_normal((rows, k))).astype(np.float32)
    return MonitorStats.summarise(Distribution.from_logits(logits), rng.integers(0, k, rows))


def bucket(rng: np.random.Generator, rows: int, k: int, per_batch: int = 32) -> MonitorStats:
    """One bucket: the merge of `rows` rows arriving in batches of `per_batch`."""
    return merge_stats(batch(rng, per_batch, k) for _ in range(max(1, rows // per_batch)))


def sizes(rng: np.random.Generator) -> list[dict[str, object]]:
    rows = []
    for k in (10, 1000):
        for label, stats in (
            ("one 32-row batch", batch(rng, 32, k)),
            ("minute, 1,000 rows in 32-row batches", bucket(rng, 1000, k)),
            ("dense: 1,000,000 rows", batch(rng, 1_000_000, k)),
        ):
            rows.append(
                {
                    "K": k,
                    "bucket": label,
                    "cells": stats.top.cells.size,
                    "bytes": len(stats.to_bytes()),
                }
            )
        classes = 2 * k * min(index_width(k) + 8, 8)  # a class section is dense when that is smaller
        bound = HEADER.itemsize + classes + N_CELLS * (2 + 8 + 8 + 8)
        rows.append(
            {
                "K": k,
                "bucket": "upper bound: every class and cell, 8-byte counts (weighted: +8 B each)",
                "cells": N_CELLS,
                "bytes": bound,
            }
        )
    return rows


def query(blobs: list[bytes]) -> dict[str, float]:
    stats = merge_stats(blobs)
    return {
        "ce": stats.cross_entropy(),
        "accuracy": stats.accuracy(),
        "brier": stats.brier(),
        **stats.calibration_errors(15),
    }


def timings(rng: np.random.Generator, repeats: int) -> list[dict[str, object]]:
    rows = []
    scenarios = [
        # (K, blobs, rows per blob, label)
        (10, 43_200, 32, "30 days of minute buckets, one 32-row batch each"),
        (10, 43_200, 1000, "30 days of minute buckets, 1,000 rows each"),
        (10, 2_136, 1000, "1 day of minutes + 29 days of hours (compacted), 1,000 rows/min"),
        (1000, 43_200, 32, "K = 1,000: 30 days of minutes, one 32-row batch each"),
        (1000, 2_136, 1000, "K = 1,000: 1 day of minutes + 29 days of hours, 1,000 rows/min"),
    ]
    for k, n_blobs, rows_per_blob, label in scenarios:
        pool = [bucket(rng, rows_per_blob, k).to_bytes() for _ in range(60)]
        if n_blobs == 2_136:  # 1,440 minute blobs and 696 hourly ones, each the merge of 60 distinct minutes
            hourly = merge_stats(pool).to_bytes()
            blobs = [pool[i % 60] for i in range(1440)] + [hourly] * 696
        else:
            blobs = [pool[i % 60] for i in range(n_blobs)]
        ms = median_ms(lambda blobs=blobs: query(blobs), repeats)
        rows.append(
            {
                "query": label,
                "blobs": f"{len(blobs):,}",
                "MB": round(sum(map(len, blobs)) / 1e6, 1),
                "merge_stats + metrics (ms)": round(ms, 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(table(sizes(rng)))  # noqa: T201
    print()  # noqa: T201
    print(table(timings(rng, 1 if args.quick else args.repeats)))  # noqa: T201


if __name__ == "__main__":
    main()
