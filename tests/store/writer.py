"""A process writing batches to a store, for the durability and concurrency tests.

    python -m tests.store.writer PATH_OR_URL WORKER N_BATCHES

Batch i of worker w appends one stats row ``(bucket i*60, segment "w<w>", [1, w, i])``,
``PENDING`` pending rows with ids ``"w-i-j"`` and ``LABELLED`` labelled rows for the reservoir (their
keys drawn from ``(w, i)``: `labelled`), in one ``write_batch``, then prints ``i`` (the
acknowledgement) and flushes. N_BATCHES < 0: write until killed.
"""

import itertools
import sys

import numpy as np

from service.store import LabelledRow, PendingRow, ReservoirBatch, StoreLimits
from tests.store.blobs import blob
from tests.store.conftest import make_store

PENDING = 4
LABELLED = 3


def batch(worker: int, i: int) -> tuple[list[tuple[int, str, bytes]], list[PendingRow]]:
    stats = [(i * 60, f"w{worker}", blob(1, worker, i))]
    pending = [
        PendingRow(f"{worker}-{i}-{j}", i * 60.0, f"w{worker}", "logits", "<f4", b"\0" * 40)
        for j in range(PENDING)
    ]
    return stats, pending


def labelled(worker: int, i: int) -> ReservoirBatch:
    """Batch i's labelled rows: keys from a generator seeded with (w, i), row j holding [w, i, j]."""
    keys = np.random.default_rng([worker, i]).integers(-(2**63), 2**63, LABELLED, dtype=np.int64)
    rows = np.array([[worker, i, j] for j in range(LABELLED)], "<f4")
    times, labels = np.full(LABELLED, i * 60.0), np.arange(LABELLED, dtype=np.int64)
    return ReservoirBatch(f"w{worker}", "logits", "<f4", times, labels, keys, rows.view(np.uint8))


def expected_reservoir(batches: list[tuple[int, int]], size: int) -> list[LabelledRow]:
    """What the reservoir must hold after `batches` ((worker, i) pairs): the `size` smallest keys."""
    rows = []
    for worker, i in batches:
        batch = labelled(worker, i)
        for j in range(LABELLED):
            row = batch.payload[j].tobytes()
            rows.append((int(batch.keys[j]), LabelledRow(i * 60.0, f"w{worker}", "logits", "<f4", row, j)))
    return [row for _, row in sorted(rows, key=lambda pair: pair[0])[:size]]


def main() -> None:
    path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limits = StoreLimits(max_pending_rows=10**8)
    timeout = {"timeout_s": 60.0} if path.startswith("postgresql://") else {"busy_timeout_s": 60.0}
    store = make_store(path, limits=limits, **timeout)
    for i in itertools.count() if n < 0 else range(n):
        stats, pending = batch(worker, i)
        store.write_batch("m", stats, pending=pending, labelled=labelled(worker, i), now=0.0)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
    store.close()


if __name__ == "__main__":
    main()
