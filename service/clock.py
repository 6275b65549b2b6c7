"""The server's wall clock for monitors: prediction times, query windows, retention, claims, compaction.

Read as ``clock.now()`` (through the module), so a test can set it: the contract test fixes it, so a
monitor's state, and every answer about it, follow from the requests alone, not from when they ran.
"""

import time


def now() -> float:
    """Epoch seconds."""
    return time.time()
