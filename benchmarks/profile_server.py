"""Where a server's time goes under load: cProfile inside a uvicorn worker, driven by the raw generator.

    python -m benchmarks.profile_server [--app service.app:create_app] [--path /v1/cross-entropy]
        [--body FILE] [--seconds 5] [--top 25] [--sort tottime|cumulative]

The server runs in this process (one uvicorn worker on uvloop and httptools, as ``xent serve``
runs), with :mod:`cProfile` on for the whole load run; the load comes from
:mod:`benchmarks._rawload` in its own process (16 keep-alive clients, the 32×10 JSON body of
``benchmarks.http`` for `--path`, unless ``--body`` names a file). Prints the requests served and the
profile's top entries per request: calls, own time and cumulative time in µs. cProfile adds
a fixed cost to every Python call, so code made of many small calls looks dearer than it is:
read the entries as where the time goes, and take absolute costs from ``benchmarks.http``.
"""

import argparse
import asyncio
import cProfile
import importlib
import json
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
import uvloop

ROOT = Path(__file__).resolve().parents[1]


def small_body() -> bytes:
    """The 32×10 JSON body of ``benchmarks.http``'s small-batch rows."""
    rng = np.random.default_rng(0)
    return json.dumps(
        {"logits": rng.standard_normal((32, 10)).tolist(), "labels": rng.integers(0, 10, 32).tolist()}
    ).encode()


def _route_body(path: str) -> bytes:
    """The small body ``benchmarks.http`` sends to `path` (calibration, divergence, apply, ...)."""
    from benchmarks.http import route_bodies

    return route_bodies().get(path) or small_body()


def load_app(spec: str) -> Any:
    """``module:name``; a function named ``create_app`` is called (an app factory)."""
    module, _, name = spec.partition(":")
    app = getattr(importlib.import_module(module), name)
    return app() if name == "create_app" else app


async def profile_under_load(
    app: Any, path: str, body: bytes, seconds: float, clients: int
) -> tuple[dict[str, float], cProfile.Profile]:
    """Serve `app` in this process and profile it while the raw generator posts `body` to `path`."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, port=port, log_level="warning", loop="none", http="httptools")
    server = uvicorn.Server(config)
    serving = asyncio.ensure_future(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    profile = cProfile.Profile(time.thread_time)  # CPU time: on a shared machine wall time counts waits
    with tempfile.NamedTemporaryFile(suffix=".body") as file:
        file.write(body)
        file.flush()
        args = ["-m", "benchmarks._rawload", str(port), path, str(clients)]
        tail = [file.name, "application/json"]
        warm = await asyncio.create_subprocess_exec(
            sys.executable, *args, "1", *tail, cwd=ROOT, stdout=subprocess.DEVNULL
        )
        await warm.wait()
        load = await asyncio.create_subprocess_exec(
            sys.executable, *args, str(seconds), *tail, cwd=ROOT, stdout=subprocess.PIPE
        )
        profile.enable()
        out, _ = await load.communicate()
        profile.disable()
    server.should_exit = True
    await serving
    return json.loads(out), profile


def top_entries(profile: cProfile.Profile, requests: float, sort: str, top: int) -> str:
    """The `top` functions by `sort`, per request: calls, own µs, cumulative µs."""
    stats = pstats.Stats(profile)
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).name}:{line}({name})" if line else name
        rows.append((own if sort == "tottime" else cumulative, calls, own, cumulative, where))
    rows.sort(reverse=True)
    lines = ["| function | calls/request | own µs/request | cumulative µs/request |", "|---|---|---|---|"]
    for _, calls, own, cumulative, where in rows[:top]:
        per_request = (calls / requests, own / requests * 1e6, cumulative / requests * 1e6)
        lines.append(f"| `{where}` | {per_request[0]:.2f} | {per_request[1]:.1f} | {per_request[2]:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--app", default="service.app:create_app")
    parser.add_argument("--path", default="/v1/cross-entropy")
    parser.add_argument("--body", type=Path, help="JSON request body file; default: the route's 32×10 body")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = parser.parse_args(argv)
    body = args.body.read_bytes() if args.body else _route_body(args.path)
    load, profile = uvloop.run(
        profile_under_load(load_app(args.app), args.path, body, args.seconds, args.clients)
    )
    assert load["non_200"] == 0, load
    requests = load["rps"] * args.seconds
    sys.stdout.write(
        f"{args.app} {args.path}: {requests:.0f} requests in {args.seconds:g} s under cProfile\n\n"
    )
    sys.stdout.write(top_entries(profile, requests, args.sort, args.top) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
