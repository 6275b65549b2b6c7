"""One app's cost per 32×10 request without a server: ASGI calls in this process, no sockets.

    python -m benchmarks.in_process APP [REQUESTS]

APP is ``module:name`` (``service.app:create_app`` is built by its factory, with its lifespan
run). Sends 100 warm-up requests, then REQUESTS (default 5,000) to ``/v1/cross-entropy`` one
after another, and prints the thread CPU µs per request. Run under callgrind it counts
instructions, which other processes on a shared machine cannot disturb:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.in_process APP 100
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.in_process APP 300

and (Collected₃₀₀ − Collected₁₀₀) / 200 is the instructions per request (start-up cancels out).
"""

import asyncio
import sys
import time
from typing import Any

from benchmarks.http import route_bodies
from benchmarks.profile_server import load_app

BODY = route_bodies()["/v1/cross-entropy"]
SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.4"},
    "http_version": "1.1",
    "method": "POST",
    "scheme": "http",
    "path": "/v1/cross-entropy",
    "raw_path": b"/v1/cross-entropy",
    "query_string": b"",
    "root_path": "",
    "headers": [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"content-length", str(len(BODY)).encode()),
    ],
    "client": ("127.0.0.1", 1),
    "server": ("127.0.0.1", 8000),
}


async def _lifespan(app: Any) -> "tuple[asyncio.Task[None], asyncio.Queue[dict[str, str]]]":
    """Run the app's lifespan startup; return its task and inbox (for the shutdown)."""
    inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    outbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.ensure_future(app(scope, inbox.get, outbox.put))
    message = await outbox.get()
    assert message["type"] == "lifespan.startup.complete", message
    return task, inbox


async def _one(app: Any) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": BODY, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    await app({**SCOPE, "state": {}}, receive, send)
    assert statuses == [200], statuses


async def measure(app: Any, requests: int) -> float:
    """Thread CPU µs per request over `requests` requests, after 100 warm-up ones."""
    lifespan, inbox = await _lifespan(app)
    for _ in range(100):
        await _one(app)
    start = time.thread_time()
    for _ in range(requests):
        await _one(app)
    spent = (time.thread_time() - start) / requests * 1e6
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return spent


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    app, requests = load_app(args[0]), int(args[1]) if len(args) > 1 else 5_000
    sys.stdout.write(f"{args[0]}: {asyncio.run(measure(app, requests)):.1f} µs thread CPU per request\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
