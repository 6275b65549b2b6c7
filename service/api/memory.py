"""Give freed heap memory back to the system after large requests (glibc ``malloc_trim``).

glibc keeps freed memory inside its heaps for reuse; the peaks of a few large requests
in flight at once then stay in the worker's RSS. After a request that moved at least
``TRIM_AFTER_BYTES`` in or out, ``malloc_trim(0)`` returns the free pages of every arena
(about a millisecond; small requests never pay it). Elsewhere than glibc this is a no-op.
"""

import ctypes
from collections.abc import Callable

from starlette.types import Scope

from .metrics import Exchange

TRIM_AFTER_BYTES = 1 << 20


def heap_trimmer() -> Callable[[Exchange, Scope], None] | None:
    """An exchange observer that trims the heap after large requests, or None without glibc."""
    try:
        malloc_trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    malloc_trim.argtypes = [ctypes.c_size_t]

    def trim_after_large(exchange: Exchange, scope: Scope) -> None:
        if exchange.bytes_in + exchange.bytes_out >= TRIM_AFTER_BYTES:
            malloc_trim(0)

    return trim_after_large
