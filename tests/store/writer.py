"""A process writing batches to a store, for the durability and concurrency tests.

    python -m tests.store.writer PATH_OR_URL WORKER N_BATCHES

Batch i of worker w appends one stats row ``(bucket i*60, segment "w<w>", [1, w, i])`` and
``PENDING`` pending rows with ids ``"w-i-j"``, in one ``write_batch``, then prints ``i`` (the
acknowledgement) and flushes. N_BATCHES < 0: write until killed.
"""

import itertools
import sys

from service.store import PendingRow, StoreLimits
from tests.store.blobs import blob
from tests.store.conftest import make_store

PENDING = 4


def batch(worker: int, i: int) -> tuple[list[tuple[int, str, bytes]], list[PendingRow]]:
    stats = [(i * 60, f"w{worker}", blob(1, worker, i))]
    pending = [
        PendingRow(f"{worker}-{i}-{j}", i * 60.0, f"w{worker}", "logits", "<f4", b"\0" * 40)
        for j in range(PENDING)
    ]
    return stats, pending


def main() -> None:
    path, worker, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    limits = StoreLimits(max_pending_rows=10**8)
    timeout = {"timeout_s": 60.0} if path.startswith("postgresql://") else {"busy_timeout_s": 60.0}
    store = make_store(path, limits=limits, **timeout)
    for i in itertools.count() if n < 0 else range(n):
        stats, pending = batch(worker, i)
        store.write_batch("m", stats, pending=pending, now=0.0)
        sys.stdout.write(f"{i}\n")
        sys.stdout.flush()
    store.close()


if __name__ == "__main__":
    main()
