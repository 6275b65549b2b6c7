"""The real app plus a test-only route that holds a worker thread, for limit, fault and shutdown tests.

``POST /v1/test/sleep?seconds=S`` sleeps S seconds in the threadpool, as one long NumPy call would,
then answers ``{"slept": S, "pid": <worker pid>}``. ``POST /v1/test/spin?seconds=S`` works for S
seconds in 10 ms steps with a cancellation checkpoint before each, as the core's block loops do;
it appends ``"done"`` or ``"stopped"`` to ``SPUN``. With ``XENT_TEST_MARK_DIR`` set, it first
touches ``entered-<pid>`` there. uvicorn can serve it with
``--factory tests.serving.slow_app:create_app``.
"""

import os
import threading
import time
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from service.app import create_app as create_service_app
from service.core.cancel import Cancelled, checkpoint
from service.settings import Settings

#: Set while a sleep is in progress; tests wait on it to know a request is inside the app.
ENTERED = threading.Event()
FINISHED: list[float] = []
SPUN: list[tuple[str, float]] = []


def sleep(seconds: float = 0.0) -> dict[str, Any]:
    ENTERED.set()
    marks = os.environ.get("XENT_TEST_MARK_DIR")
    if marks:  # tell an out-of-process test which worker holds the request
        (Path(marks) / f"entered-{os.getpid()}").touch()
    time.sleep(seconds)
    FINISHED.append(seconds)
    return {"slept": seconds, "pid": os.getpid()}


def spin(seconds: float = 0.0) -> dict[str, Any]:
    ENTERED.set()
    started = time.monotonic()
    try:
        while time.monotonic() - started < seconds:
            checkpoint()
            time.sleep(0.01)
    except Cancelled:
        SPUN.append(("stopped", time.monotonic()))
        raise
    SPUN.append(("done", time.monotonic()))
    return {"spun": seconds}


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(settings)
    app.add_api_route("/v1/test/sleep", sleep, methods=["POST"], include_in_schema=False)
    app.add_api_route("/v1/test/spin", spin, methods=["POST"], include_in_schema=False)
    return app
