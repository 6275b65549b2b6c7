"""Event-loop lag: how late the loop runs a timer, i.e. how long it was busy with other work.

The service keeps CPU-bound scoring off the event loop (worker threads, small bodies
excepted), so that probes and other requests are answered while a large request is scored.
:func:`watch_loop_lag` checks that this holds in production: every ``interval`` seconds it
sleeps and records by how much the wake-up overshot, into the
``xent_event_loop_lag_seconds`` histogram (:class:`service.api.middleware.metrics.Metrics`). A stall
shorter than the interval can fall between two checks; any longer one is seen.
"""

import asyncio
from collections.abc import Callable

#: Seconds between two checks: 50 wake-ups a second. On the 2-vCPU development VM these cost an
#: idle worker ~10 ms of CPU a second, ~200 µs a wake-up (the VM's wake-up, mostly: the check itself is
#: a few Python lines): 10-11 against 1-2 ms/s with the watcher off, 2026-12-07 (throwaway script).
INTERVAL_S = 0.02


async def watch_loop_lag(observe: Callable[[float], None], interval: float = INTERVAL_S) -> None:
    """Forever: sleep `interval`, then ``observe`` how many seconds late the loop woke up."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval
        await asyncio.sleep(interval)
        observe(max(0.0, loop.time() - due))
