"""Graceful shutdown: on SIGTERM keep answering (503) until the requests in flight are done.

uvicorn's own handler closes the listening socket at once, so a client that connects
after SIGTERM gets "connection refused", and a load balancer never sees the instance
say it is going away. This hook runs first and delays uvicorn's handler:

1. the first SIGTERM (or SIGINT) marks the worker as draining: it keeps accepting
   connections, answers every new ``/v1`` request 503 problem+json with ``Retry-After``
   and ``Connection: close``, and ``/readyz`` answers 503; requests in flight run on;
2. once no scoring request is in flight *and* at least ``drain_s`` has passed since the
   signal (so load balancers and probes get to see the 503s; SIGINT, i.e. Ctrl-C, skips
   this minimum), or once ``grace_s`` has passed whatever is in flight, the signal is
   handed to uvicorn, which closes the socket and the idle connections and exits;
3. a second signal while draining is handed to uvicorn at once (a second Ctrl-C also
   makes uvicorn skip its wait for open connections).

With ``--workers N`` uvicorn's supervisor answers SIGTERM/SIGINT by sending SIGTERM to
every worker and waiting for them, so each worker drains the same way on its own (the
listening socket is shared: whichever worker accepts a new connection answers 503).
"""

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .limits import Gate

LOGGER = logging.getLogger("uvicorn.error")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL_S = 0.02


def install_drain_hook(gate: Gate, *, drain_s: float, grace_s: float) -> Callable[[], None]:
    """Wrap the server's SIGTERM/SIGINT handlers so that the worker drains before it stops.

    Must be called from the event loop's thread (the app's lifespan). Returns a function
    that puts the previous handlers back and stops a pending hand-over. Does nothing off
    the main thread (where signals cannot be handled) or when no handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    previous: dict[int, Callable[..., Any]] = {}
    watchers: set[asyncio.Task[None]] = set()
    handed_over = False

    def hand_over(signum: int, frame: FrameType | None) -> None:
        nonlocal handed_over
        if not handed_over:
            handed_over = True
            previous[signum](signum, frame)

    async def watch(signum: int, started: float, window: float) -> None:
        earliest, latest = started + window, started + grace_s
        while True:
            now = time.monotonic()
            if now >= latest or (gate.in_flight == 0 and now >= earliest):
                break
            await asyncio.sleep(POLL_S)
        if not handed_over:
            LOGGER.info("Drained after %.2f s; closing", time.monotonic() - started)
        hand_over(signum, None)

    def start_watch(signum: int, started: float, window: float) -> None:
        LOGGER.info(
            "Draining: %d request(s) in flight; answering 503 for at least %g s, at most %g s",
            gate.in_flight,
            min(window, grace_s),
            grace_s,
        )
        task = loop.create_task(watch(signum, started, window))
        watchers.add(task)
        task.add_done_callback(watchers.discard)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal handed_over
        if gate.draining:  # a second signal goes straight to the server: stop waiting
            handed_over = True
            previous[signum](signum, frame)
            return
        gate.draining = True
        window = 0.0 if signum == signal.SIGINT else drain_s
        loop.call_soon_threadsafe(start_watch, signum, time.monotonic(), window)

    for sig in SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = handler
            signal.signal(sig, on_signal)

    def restore() -> None:
        for task in watchers:
            task.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return restore
