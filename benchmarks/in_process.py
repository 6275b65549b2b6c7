"""One app's cost per 32×10 request without a server: ASGI calls in this process, no sockets.

    python -m benchmarks.in_process APP [REQUESTS [PATH]]
    python -m benchmarks.in_process --routes [REQUESTS]
    python -m benchmarks.in_process --profile TOP APP [REQUESTS [PATH]]
    python -m benchmarks.in_process --concurrency C [--profile TOP] APP [REQUESTS [PATH]]

APP is ``module:name`` (``service.app:create_app`` is built by its factory, with its lifespan
run). Sends 100 warm-up requests, then REQUESTS (default 5,000) to PATH (default
``/v1/cross-entropy``; any route of :func:`benchmarks.http.route_bodies`) one after another,
and prints the process CPU µs per request (worker threads included) and the event loop's share;
``--concurrency C`` sends C at a time (a monitor's small writes then share their commits), and
the small monitor writes still waiting to be summarised at the end are settled within the count.
``--routes`` prints a row per small-body route (monitor ingest included, on a scratch
``XENT_DATA_DIR``): the bare FastAPI floor, the essential work and Xent on that route, and
Xent's own layers (Xent's µs minus the essential work's). Run under callgrind
it counts instructions, which other processes on a shared machine cannot disturb:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.in_process APP 100
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python -m benchmarks.in_process APP 300

and (Collected₃₀₀ − Collected₁₀₀) / 200 is the instructions per request (start-up cancels out).
``--profile TOP`` runs the measured requests under cProfile (timing thread CPU, so time the
process spends descheduled is not charged to whatever ran last) and prints its TOP entries by
own time.
"""

import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
from typing import Any

from benchmarks._timing import table
from benchmarks.http import MONITOR_INGEST, route_bodies
from benchmarks.profile_server import load_app

BODIES = route_bodies()
#: The event loop's own thread CPU µs per request of the last :func:`measure` of each path (the
#: rest of the process CPU ran in worker threads: the store's write, large bodies, calibration).
LOOP_CPU: dict[str, float] = {}
BODY = BODIES["/v1/cross-entropy"]
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


async def _one(
    app: Any, path: str = "/v1/cross-entropy", method: str = "POST", body: bytes | None = None
) -> None:
    body = BODIES[path] if body is None else body
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    statuses: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    headers = [*SCOPE["headers"][:2], (b"content-length", str(len(body)).encode())]  # type: ignore[index]
    scope = {**SCOPE, "method": method, "path": path, "raw_path": path.encode(), "headers": headers}
    await app({**scope, "state": {}}, receive, send)
    assert statuses in ([200], [201]), statuses


async def measure(
    app: Any,
    requests: int,
    path: str = "/v1/cross-entropy",
    profile: cProfile.Profile | None = None,
    monitor: bool = True,
    concurrency: int = 1,
) -> float:
    """Process CPU µs per request to `path` over `requests` requests, after 100 warm-up ones.

    Monitor ingest's monitor is created first unless `monitor` is false (the bare floor has none).
    `concurrency` requests are sent at once (``asyncio.gather``), as clients in parallel would.
    """
    lifespan, inbox = await _lifespan(app)
    if path == MONITOR_INGEST and monitor:
        await _one(app, "/v1/monitors/bench", "PUT", b'{"n_classes": 10}')

    async def send(count: int) -> None:
        for _ in range(count // concurrency):
            await asyncio.gather(*(_one(app, path) for _ in range(concurrency)))

    await send(100)
    _settle(app)
    start, loop_start = time.process_time(), time.thread_time()
    if profile is not None:
        profile.enable()
    await send(requests)
    requests = requests // concurrency * concurrency
    _settle(app)  # the requests' small monitor writes summarised, in this process's CPU
    if profile is not None:
        profile.disable()
    spent = (time.process_time() - start) / requests * 1e6
    LOOP_CPU[path] = (time.thread_time() - loop_start) / requests * 1e6
    await inbox.put({"type": "lifespan.shutdown"})
    await lifespan
    return spent


def _settle(app: Any) -> None:
    """Settle the raw stats rows of small monitor writes still waiting (``service.monitors.settle``)."""
    from benchmarks import essential_app

    if app is essential_app.app:
        essential_app.MONITOR.settle_all()
        return
    holder = getattr(getattr(app, "state", None), "monitors", None)
    store = None if holder is None else holder.current
    if store is not None:
        store.settle_all()


def every_route(requests: int) -> list[dict[str, object]]:
    """Process CPU µs per request of every small-body route: bare FastAPI, the essential work, Xent.

    Xent's own layers are its µs minus the essential-work app's on the same route. Calibration,
    ~20× dearer, gets a tenth of the requests.
    """
    rows: list[dict[str, object]] = []
    for path in BODIES:
        count = requests // 10 if path == "/v1/calibration" else requests
        bare = asyncio.run(measure(load_app("benchmarks.bare_app:app"), count, path, monitor=False))
        work = asyncio.run(measure(load_app("benchmarks.essential_app:app"), count, path))
        xent = asyncio.run(measure(load_app("service.app:create_app"), count, path))
        rows.append(
            {
                "route (32×10 JSON)": path,
                "bare FastAPI µs": f"{bare:.1f}",
                "essential µs": f"{work:.1f}",
                "Xent µs": f"{xent:.1f}",
                "Xent share of bare": f"{bare / xent:.0%}",
                "Xent share of essential": f"{work / xent:.0%}",
                "Xent's own layers µs": f"{xent - work:.1f}",
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    os.environ.setdefault("XENT_DATA_DIR", tempfile.mkdtemp(prefix="xent-in-process-"))  # monitor ingest
    if args and args[0] == "--routes":
        sys.stdout.write(table(every_route(int(args[1]) if len(args) > 1 else 5_000)) + "\n")
        return 0
    top, profile, concurrency = 0, None, 1
    if args and args[0] == "--concurrency":
        concurrency, args = int(args[1]), args[2:]
    if args and args[0] == "--profile":
        top, profile, args = int(args[1]), cProfile.Profile(time.thread_time), args[2:]  # CPU, not wall
    app, requests = load_app(args[0]), int(args[1]) if len(args) > 1 else 5_000
    path = args[2] if len(args) > 2 else "/v1/cross-entropy"
    spent = asyncio.run(measure(app, requests, path, profile, concurrency=concurrency))
    loop = LOOP_CPU[path]
    sys.stdout.write(
        f"{args[0]} {path}: {spent:.1f} µs process CPU per request ({loop:.1f} on the event loop)"
        f"{f', {concurrency} at a time' if concurrency > 1 else ''}\n"
    )
    if profile is not None:
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
