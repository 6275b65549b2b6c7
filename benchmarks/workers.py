"""``xent serve`` with 1 and 2 workers under wrk, a load generator written in C.

    python -m benchmarks.workers [--seconds S] [--connections C]

Needs Debian's ``wrk`` (``apt-get install wrk``). Issue 22 asks for 1 vs 2 workers "with the
generator in its own process": the Python raw generator of ``benchmarks.http --workers-compare``
spends about as much CPU per request as the server does, so on a 2-core machine it holds one of
the two cores a second worker would need. wrk spends a fraction of that; its share of the
machine is printed beside each row (the CPU the workers could not have), so a row reads as
"throughput with this many cores left to the server". 32×10 float32 cross-entropy as JSON,
keep-alive, one wrk thread; the bare FastAPI server (``benchmarks.bare_app``, the same body, a
constant answer) with 1 and 2 uvicorn workers gives the ceiling for each count.
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from benchmarks._timing import table
from benchmarks.http import Server, _cpu_seconds, route_bodies

PATH = "/v1/cross-entropy"
SCRIPT = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open("{body}", "rb"):read("*a")
"""


def _wrk(url: str, body_file: str, seconds: float, connections: int) -> tuple[float, float]:
    """Requests per second wrk saw, and the CPU seconds wrk itself used."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(SCRIPT.format(body=body_file))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "-s", script.name, url + PATH],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    os.unlink(script.name)
    if re.search(r"Non-2xx or 3xx responses", out):
        raise RuntimeError(f"wrk saw errors:\n{out}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return rps, cpu


def _server(name: str, workers: int) -> Server:
    if name == "xent serve":
        return Server("", factory=False, workers=workers, access_log=True)
    env = {"WEB_CONCURRENCY": str(workers)}  # uvicorn's own --workers, read from the environment
    return Server("benchmarks.bare_app:app", factory=False, env=env)


def measure(seconds: float, connections: int) -> list[dict[str, object]]:
    body = route_bodies()[PATH]  # the JSON bytes benchmarks.http sends
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(body)
    rows, base = [], {}
    try:
        for name in ("bare FastAPI", "xent serve"):
            for workers in (1, 2):
                server = _server(name, workers)
                try:
                    _wrk(server.url, f.name, 2, connections)  # every worker warm
                    cpu0, t0 = _cpu_seconds(server.process.pid), time.perf_counter()
                    rps, wrk_cpu = _wrk(server.url, f.name, seconds, connections)
                    elapsed = time.perf_counter() - t0
                    server_cpu = _cpu_seconds(server.process.pid) - cpu0
                finally:
                    server.stop()
                base.setdefault(name, rps)
                rows.append(
                    {
                        "server": name,
                        "workers": workers,
                        "requests/s": f"{rps:.0f}",
                        "vs 1 worker": f"{rps / base[name]:.2f}×",
                        "server cores busy": f"{server_cpu / elapsed:.2f}",
                        "wrk cores busy": f"{wrk_cpu / elapsed:.2f}",
                        "server CPU µs/request": f"{1e6 * server_cpu / (rps * elapsed):.0f}",
                    }
                )
    finally:
        os.unlink(f.name)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install wrk")
    cores, clients = os.cpu_count(), args.connections
    print(f"## Workers under wrk ({cores} cores, {clients} connections, {args.seconds:g} s)")
    print(table(measure(args.seconds, args.connections)))


if __name__ == "__main__":
    main()
