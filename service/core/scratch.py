"""Block-sized scratch buffers, kept by each thread and lent again to its next call.

The blocked passes (:mod:`.logsumexp`, :mod:`.monitoring.softmax_rows`) work in a few buffers
the size of one block (up to ``logsumexp.BLOCK_BYTES``, 512 KiB). Allocated afresh on every
call, each is above ``xent serve``'s 128 KiB mmap threshold (``service.api.serving.MALLOC_ENV``):
a fresh ``mmap``, page-faulted in and unmapped again, ~100 page faults a 10,000×10 float32 call
(~0.2 ms of its ~0.4). :func:`borrowed` lends the calling thread's own buffers instead.

A buffer is lent to one borrower at a time (a nested borrow in the same thread gets another)
and given back when the borrower's ``with`` ends, whatever its contents: borrowers write every
element they read. Each thread keeps at most ``KEPT`` buffers per dtype, none over
``MAX_KEPT_BYTES``; they go with the thread (the scoring pool's threads end when idle).
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import DTypeLike

#: Buffers a thread keeps per dtype (a blocked pass borrows at most four at once).
KEPT = 6
#: A buffer larger than this is not kept (a block is at most ~512 KiB).
MAX_KEPT_BYTES = 1 << 21

_local = threading.local()


def _free() -> dict[str, list[np.ndarray]]:
    free: dict[str, list[np.ndarray]] | None = getattr(_local, "free", None)
    if free is None:
        free = _local.free = {}
    return free


@contextmanager
def borrowed(*wanted: tuple[int, DTypeLike]) -> Iterator[list[np.ndarray]]:
    """1-D buffers of ``(size, dtype)`` each, for the duration of the ``with``: this thread's, lent.

    Each holds exactly `size` elements (a view of a buffer at least as large); contents are
    whatever the last borrower left.

    Examples
    --------
    >>> with borrowed((4, np.float64), (3, bool)) as (a, b):
    ...     a.shape, a.dtype, b.shape, b.dtype
    ((4,), dtype('float64'), (3,), dtype('bool'))
    """
    free = _free()
    lent: list[tuple[str, np.ndarray]] = []
    views = []
    try:
        for size, dtype in wanted:
            kind = np.dtype(dtype)
            if size == 0:  # (nothing to lend: no buffer taken from the pool)
                views.append(np.empty(0, kind))
                continue
            pool = free.setdefault(kind.str, [])
            fits = [i for i, buffer in enumerate(pool) if buffer.size >= size]  # the smallest that holds it
            buffer = pool.pop(min(fits, key=lambda i: pool[i].size)) if fits else np.empty(size, kind)
            lent.append((kind.str, buffer))
            views.append(buffer[:size])
        yield views
    finally:
        for key, buffer in lent:
            if buffer.nbytes <= MAX_KEPT_BYTES:
                pool = free.setdefault(key, [])
                pool.append(buffer)
                if len(pool) > KEPT:  # the smallest goes
                    del pool[min(range(len(pool)), key=lambda i: pool[i].size)]
