"""The real app plus a test-only route that holds a worker thread, for limit, fault and shutdown tests.

``POST /v1/test/sleep?seconds=S`` sleeps S seconds in the threadpool, as a long NumPy kernel would,
then answers ``{"slept": S, "pid": <worker pid>}``. With ``XENT_TEST_MARK_DIR`` set, it first
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
from service.settings import Settings

#: Set while a sleep is in progress; tests wait on it to know a request is inside the app.
ENTERED = threading.Event()
FINISHED: list[float] = []


def sleep(seconds: float = 0.0) -> dict[str, Any]:
    ENTERED.set()
    marks = os.environ.get("XENT_TEST_MARK_DIR")
    if marks:  # tell an out-of-process test which worker holds the request
        (Path(marks) / f"entered-{os.getpid()}").touch()
    time.sleep(seconds)
    FINISHED.append(seconds)
    return {"slept": seconds, "pid": os.getpid()}


def create_app(settings: Settings | None = None) -> FastAPI:
    app = create_service_app(settings)
    app.add_api_route("/v1/test/sleep", sleep, methods=["POST"], include_in_schema=False)
    return app
