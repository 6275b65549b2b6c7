"""One piece of a 32×10 write's preparation, N times: instructions per piece under callgrind.

    python -m benchmarks.monitor_prepare PIECE N

PIECE is one of `PIECES` (``none`` runs nothing: the start-up to subtract). Under callgrind,
``(Collected(PIECE, N) - Collected(none, N)) / N`` is the piece's instructions per call, e.g.::

    export OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.monitor_prepare none 400
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.monitor_prepare prepare 400

``OPENBLAS_NUM_THREADS=1``: OpenBLAS's idle threads spin (``blas_thread_server``) for as long
as the scheduler lets them, so without it two runs of the same code differ by tens of millions
of instructions. The batch is float64 logits with every row labelled, one bucket, no ids, the
default segment: a monitor's usual write. Figures: docs/monitors-performance.md.
"""

import sys
from collections.abc import Callable

import numpy as np

from service.core import Distribution, MonitorStats, check_labels
from service.core.calibration.brier import brier_rows
from service.core.monitoring import small_batch
from service.monitors.batch_rows import reservoir_rows
from service.monitors.ingest import prepare_batch
from service.store import MonitorConfig

rng = np.random.default_rng(0)
Z = rng.normal(size=(32, 10))
Y = rng.integers(0, 10, 32)
CONFIG = MonitorConfig(name="bench", n_classes=10, binary=False, class_names=None)
LABELS = check_labels(Y.tolist(), 10, ignore_index=-1)
PROBS = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
TOP = PROBS.max(axis=1)
CORRECT = PROBS.argmax(axis=1) == LABELS
DIST = Distribution.from_logits(Z, validate=False)
TIMES = np.full(32, 1.7e9)
STATS = MonitorStats.summarise(DIST, LABELS)


def _dist() -> Distribution:
    return Distribution.from_logits(Z, validate=False)


#: Each piece as the write runs it (a new Distribution where the write makes one).
PIECES: dict[str, Callable[[], object]] = {
    "none": lambda: None,
    "prepare": lambda: prepare_batch(CONFIG, _dist(), LABELS, None, None, "", now=1.7e9),
    "labels": lambda: check_labels(Y.tolist(), 10, ignore_index=-1),  # the route's, before prepare
    "summarise": lambda: MonitorStats.summarise(_dist(), LABELS, validate=False),
    "small": lambda: small_batch.summarise_small(_dist(), LABELS),
    "lse": lambda: _dist().summarise(labels=LABELS),  # the log-sum-exp pass, as /v1/cross-entropy's
    "bytes": STATS.to_bytes,
    "hist": lambda: small_batch.occupied_histogram(TOP, CORRECT),
    "brier": lambda: brier_rows(LABELS, PROBS),
    "reservoir": lambda: reservoir_rows(DIST, TIMES, LABELS, LABELS >= 0, "", 10_000),
}


def main() -> None:
    """Run PIECE N times."""
    piece, n = PIECES[sys.argv[1]], int(sys.argv[2])
    for _ in range(n):
        piece()


if __name__ == "__main__":
    main()
