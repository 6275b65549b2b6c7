"""HTTP benchmarks over loopback: small-batch throughput against a bare FastAPI floor,
large-batch end-to-end time as JSON / OIP binary / npz, server peak RSS per request size,
and /healthz latency while a large request is being scored.

    python -m benchmarks.http [--quick] [--small-only | --routes-only] [--rounds N]

Servers run as subprocesses (one uvicorn worker each). Small batches are driven twice: by
httpx clients in this process (what a Python caller sees; on two cores the client itself is
the bottleneck) and by a raw keep-alive HTTP/1.1 generator in its own process
(``benchmarks._rawload``), which saturates the server and so measures the framework's floor.
A third server, ``benchmarks.essential_app``, does only the work any such service must do for
the request (parse, arrays, checks, Xent's core, the same answer) as raw ASGI, on the HTTP
protocol ``xent serve`` runs (:mod:`service.api.one_write`: a turn's writes as one): its share of
the floor is the ceiling for Xent's. It serves every measured route (cross-entropy, divergence,
calibration with its default metrics, apply), so per route Xent's own layers are measured as
Xent's server CPU per request minus the essential server's (``--routes-only``).
Peak RSS is measured on a fresh server per payload format and size (peak RSS only grows),
after a small warm-up request of the same format. The large request scored during the
/healthz probes is sent from another process, so the probes time the server alone.
"""

import argparse
import asyncio
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import zlib
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from benchmarks._rawload import exchange
from benchmarks._timing import load_summary, table
from service.api.serving import MALLOC_ENV, http_protocol

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """A uvicorn subprocess serving `app` on a free port; `workers` > 0: ``xent serve`` with that many."""

    def __init__(
        self,
        app: str,
        factory: bool,
        env: dict[str, str] | None = None,
        workers: int = 0,
        cwd: str | None = None,
        access_log: bool = False,
        http: str | None = None,
    ) -> None:
        self.port = _free_port()
        self.data_dir = (env or {}).get("XENT_DATA_DIR")
        args = [sys.executable, "-m", "uvicorn", app, "--port", str(self.port), "--log-level", "warning"]
        if factory:
            args.append("--factory")
        if http is not None:  # an HTTP protocol class for uvicorn (`--http module:Class`)
            args += ["--http", http]
        # the glibc malloc settings `xent serve` gives its workers, for every server alike
        env = {**MALLOC_ENV, **os.environ, "XENT_MAX_BODY_BYTES": str(512 * 2**20), **(env or {})}
        output = None
        if workers:  # `xent serve`: its own logging (the access log to stdout, discarded here)
            args = [sys.executable, "-m", "service", "serve"]
            level = "info" if access_log else "warning"
            env.update({"XENT_PORT": str(self.port), "XENT_WORKERS": str(workers), "XENT_LOG_LEVEL": level})
            output = subprocess.DEVNULL
        self.process = subprocess.Popen(args, cwd=cwd or ROOT, env=env, stdout=output)
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(200):
            try:
                httpx.get(self.url + "/docs", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError(f"{app} did not start")

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


async def _load(url: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=clients)) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                latencies.append(time.perf_counter() - start)
                assert response.status_code == 200, response.text

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - start
    return load_summary(latencies, elapsed)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and of its live descendants (uvicorn's workers)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        child = int(stat.parent.name)
        parents[child] = int(fields[1])
        times[child] = (int(fields[11]) + int(fields[12])) / tick
    tree, total = {pid}, 0.0
    for child in sorted(times):  # children have higher pids than their parent, except after wrap-around
        if parents[child] in tree:
            tree.add(child)
    for member in tree:
        total += times.get(member, 0.0)
    return total


def task_cpu(pid: int) -> dict[tuple[int, str], int]:
    """CPU nanoseconds of every live thread of process `pid` and of its live descendants, by (pid, tid).

    From ``/proc/<pid>/task/<tid>/schedstat``: nanoseconds, where ``/proc/<pid>/stat`` counts
    10 ms ticks (a 2 ms request could be charged 0 or 10 ms). Subtract two with :func:`cpu_between`.
    """
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
    tree = {pid}
    for child in sorted(parents):  # children have higher pids than their parent, except after wrap-around
        if parents[child] in tree:
            tree.add(child)
    out: dict[tuple[int, str], int] = {}
    for member in tree:
        for task in Path(f"/proc/{member}/task").glob("[0-9]*"):
            try:
                out[(member, task.name)] = int((task / "schedstat").read_text().split()[0])
            except (OSError, IndexError, ValueError):
                continue
    return out


def cpu_between(before: dict[tuple[int, str], int], after: dict[tuple[int, str], int]) -> float:
    """CPU seconds spent between two :func:`task_cpu` readings by the threads alive at the second.

    A thread that ended between them is left out (its share of the interval is lost: the scoring
    pool's threads end only after 10 s idle, so under load none does).
    """
    return sum(ns - before.get(task, 0) for task, ns in after.items()) / 1e9


def wait_settled(data_dir: str | None, timeout_s: float = 60.0) -> None:
    """Wait until the monitor store in `data_dir` holds no raw stats row (every small write settled).

    A monitor's small write is summarised after its answer (``service.monitors.settle``): a
    load round's CPU is read once its writes are settled, so it holds their summaries too (and
    the next round does not).
    """
    path = None if data_dir is None else Path(data_dir) / "monitors.sqlite3"
    if path is None or not path.exists():
        return
    deadline = time.monotonic() + timeout_s
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as db:
        while db.execute("SELECT count(*) FROM stats WHERE raw = 1").fetchone()[0]:
            if time.monotonic() > deadline:
                raise RuntimeError("raw stats rows were not settled")
            time.sleep(0.01)


def _raw_load(
    server: "Server", body: bytes, clients: int, seconds: float, path: str = "/v1/cross-entropy"
) -> dict[str, float]:
    """The raw generator against `server`: rps, p50/p99, and the server's CPU µs per request.

    CPU time per request is the steadier figure on a shared machine: other processes slow
    the server's wall clock, much less the CPU it spends on each request. A monitor's writes
    are counted with their settling (:func:`wait_settled`).
    """
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        args = [str(server.port), path, str(clients), str(seconds), file.name, "application/json"]
        before = _cpu_seconds(server.process.pid)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks._rawload", *args], cwd=ROOT, capture_output=True, check=True
        )
        wait_settled(server.data_dir)
        spent = _cpu_seconds(server.process.pid) - before
    result: dict[str, float] = json.loads(out.stdout)
    assert result["non_200"] == 0, result
    result["cpu_us"] = spent / (result["rps"] * seconds) * 1e6
    return result


def small_batches(servers: dict[str, Server], clients: int, seconds: float) -> list[dict[str, object]]:
    """Each server in `servers` (the first is the floor) under both clients; their shares of the floor."""
    rng = np.random.default_rng(0)
    body = json.dumps(
        {"logits": rng.standard_normal((32, 10)).tolist(), "labels": rng.integers(0, 10, 32).tolist()}
    ).encode()
    scorers = list(servers.values())[1:]
    answers = [httpx.post(s.url + "/v1/cross-entropy", content=body).json() for s in scorers]
    assert all(answer["loss"] == answers[0]["loss"] for answer in answers), answers  # the same work
    rows = []
    for client, load in (
        ("raw keep-alive generator (server-bound)", lambda s: _raw_load(s, body, clients, seconds)),
        (
            "httpx AsyncClient (client-bound)",
            lambda s: asyncio.run(_load(s.url + "/v1/cross-entropy", body, clients, seconds)),
        ),
    ):
        results = {name: load(server) for name, server in servers.items()}
        floor = next(iter(results.values()))
        for name, r in results.items():
            cpu = "cpu_us" in r
            rows.append(
                {
                    "client": client,
                    "server": name,
                    "requests/s": f"{r['rps']:.0f}",
                    "p50 ms": f"{r['p50']:.2f}",
                    "p99 ms": f"{r['p99']:.2f}",
                    "share of floor": f"{r['rps'] / floor['rps']:.0%}",
                    "server CPU µs/request": f"{r['cpu_us']:.0f}" if cpu else "",
                    "share of floor by CPU": f"{floor['cpu_us'] / r['cpu_us']:.0%}" if cpu else "",
                }
            )
    return rows


#: The essential-work server's row name (:mod:`benchmarks.essential_app`).
ESSENTIAL = "essential work only (raw ASGI, see benchmarks/essential_app.py)"

#: The monitor-ingest route measured with the others; its monitor is created by :func:`create_monitor`.
MONITOR_INGEST = "/v1/monitors/bench/observations"


def create_monitor(url: str) -> None:
    """Create (or replace) the K = 10 monitor that :data:`MONITOR_INGEST` writes to, at `url`."""
    httpx.put(url + "/v1/monitors/bench", json={"n_classes": 10}).raise_for_status()


def route_bodies(n: int = 32, k: int = 10) -> dict[str, bytes]:
    """A small JSON body for every route that takes one (calibration with its default metrics)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((n, k))
    other = rng.standard_normal((n, k))
    labels = rng.integers(0, k, n).tolist()
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    bodies = {
        "/v1/cross-entropy": {"logits": logits.tolist(), "labels": labels},
        "/v1/divergence": {"p_logits": logits.tolist(), "q_logits": other.tolist()},
        "/v1/calibration": {"probs": probs.tolist(), "labels": labels},
        "/v1/apply": {"logits": logits.tolist(), "temperature": 1.5},
        MONITOR_INGEST: {"logits": logits.tolist(), "labels": labels},
    }
    return {path: json.dumps(body).encode() for path, body in bodies.items()}


def routes(
    floor: Server, essential: Server, xent: Server, clients: int, seconds: float, rounds: int = 5
) -> list[dict[str, object]]:
    """Every small-body route under the raw generator: bare FastAPI, essential work and Xent, one worker each.

    Per route, the three servers are loaded one after the other with the route's own body (the
    bare floor answers a constant on every path), `rounds` times in turn, each for `seconds`
    / `rounds`; each column is the median of its rounds (on a shared machine one round's CPU per
    request moves by ±30 %). Xent's own layers are what Xent spends beyond parsing, checking,
    computing and printing the same answer (for monitor ingest: storing the batch durably, and
    summarising it later, in Xent's store: :mod:`benchmarks.essential_monitor`): per round, Xent's
    server CPU per request minus the essential-work server's, loaded right before or after it
    (the two swap places every round, so a drift of the machine's speed falls on both alike); the
    column is the median of those paired differences and their interquartile range.
    """
    create_monitor(xent.url)
    create_monitor(essential.url)
    rows = []
    each = seconds / rounds
    for path, body in route_bodies().items():
        ours = httpx.post(essential.url + path, content=body).json()
        theirs = httpx.post(xent.url + path, content=body).json()
        assert ours == theirs, (path, ours, theirs)  # the same answer, field for field
        runs: dict[int, list[dict[str, float]]] = {id(server): [] for server in (floor, essential, xent)}
        for round_ in range(rounds):
            for server in (floor, essential, xent) if round_ % 2 == 0 else (floor, xent, essential):
                runs[id(server)].append(_raw_load(server, body, clients, each, path))
        bare, r = _median_run(runs[id(floor)]), _median_run(runs[id(xent)])
        work = _median_run(runs[id(essential)])
        pairs = zip(runs[id(xent)], runs[id(essential)], strict=True)
        paired = [x["cpu_us"] - e["cpu_us"] for x, e in pairs]
        low, layers, high = np.percentile(paired, [25, 50, 75])
        rows.append(
            {
                "route (32×10 JSON)": path,
                "bare FastAPI µs CPU": f"{bare['cpu_us']:.0f}",
                "essential µs CPU": f"{work['cpu_us']:.0f}",
                "Xent µs CPU": f"{r['cpu_us']:.0f}",
                "Xent requests/s": f"{r['rps']:.0f}",
                "Xent p50 ms": f"{r['p50']:.2f}",
                "Xent share of bare (CPU)": f"{bare['cpu_us'] / r['cpu_us']:.0%}",
                "Xent share of essential (CPU)": f"{work['cpu_us'] / r['cpu_us']:.0%}",
                "Xent's own layers µs (paired: median, p25–p75)": f"{layers:.0f} ({low:.0f}–{high:.0f})",
            }
        )
    return rows


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure of `runs` (one dict per round) as its median over the rounds."""
    return {key: float(np.median([run[key] for run in runs])) for key in runs[0]}


def workers(clients: int, seconds: float) -> list[dict[str, object]]:
    """``xent serve`` with 1 and 2 workers, the raw generator in its own process, 32×10 cross-entropy."""
    body = route_bodies()["/v1/cross-entropy"]
    rows, base = [], 0.0
    for count in (1, 2):
        server = Server("", factory=False, workers=count, access_log=True)
        try:
            _raw_load(server, body, clients, 1.0)  # every worker warm
            r = _raw_load(server, body, clients, seconds)
        finally:
            server.stop()
        base = base or r["rps"]
        rows.append(
            {
                "xent serve": f"--workers {count}",
                "requests/s": f"{r['rps']:.0f}",
                "p50 ms": f"{r['p50']:.2f}",
                "p99 ms": f"{r['p99']:.2f}",
                "server CPU µs/request": f"{r['cpu_us']:.0f}",
                "vs 1 worker": f"{r['rps'] / base:.2f}×",
            }
        )
    return rows


def _bodies(n: int, k: int) -> dict[str, tuple[bytes, dict[str, str]]]:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((n, k)).astype(np.float32)
    labels = rng.integers(0, k, n).astype(np.int64)
    as_json = json.dumps({"logits": logits.tolist(), "labels": labels.tolist()}).encode()
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits, labels=labels)
    return {  # binary formats first: the server's peak RSS only grows, so JSON's comes last
        "OIP binary": _binary_body(logits, labels),
        "npz": (buffer.getvalue(), {"content-type": "application/x-npz"}),
        "JSON": (as_json, {"content-type": "application/json"}),
    }


def _binary_body(logits: np.ndarray, labels: np.ndarray) -> tuple[bytes, dict[str, str]]:
    """An OIP binary-extension body of float32 `logits` (N×K) and int64 `labels`, with its headers."""
    n, k = logits.shape
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "logits",
                    "shape": [n, k],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": logits.nbytes},
                },
                {
                    "name": "labels",
                    "shape": [n],
                    "datatype": "INT64",
                    "parameters": {"binary_data_size": labels.nbytes},
                },
            ]
        }
    ).encode()
    length = str(len(header))
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": length}
    return header + logits.tobytes() + labels.tobytes(), headers


def health_at_size(gigabytes: float) -> str:
    """/healthz latency while a fresh server scores one OIP binary request of about `gigabytes` GB.

    The server's body and element limits are raised to admit it (``XENT_MAX_BODY_BYTES``,
    ``XENT_MAX_ELEMENTS``); K = 10 float32 logits and int64 labels, 48 bytes a row.
    """
    n = int(gigabytes * 1e9 / 48)
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((n, 10), dtype=np.float32)
    body, headers = _binary_body(logits, rng.integers(0, 10, n))
    del logits
    limits = {
        "XENT_MAX_BODY_BYTES": str(len(body) + 2**20),
        "XENT_MAX_ELEMENTS": str(11 * n),
        "XENT_REQUEST_TIMEOUT_S": "600",
    }
    server = Server("service.app:create_app", factory=True, env=limits)
    try:
        health = asyncio.run(_health_during(server.url, body, headers))
        peak = server.peak_rss_mb()
        lag = _loop_lag(httpx.get(server.url + "/metrics").text)
    finally:
        server.stop()
    return (
        f"## /healthz while scoring {n:,}×10 (OIP binary, {len(body) / 1e9:.2f} GB, sent by another "
        f"process, answered in {health['request_s']:.1f} s): {health['probes']} probes, "
        f"p50 {health['p50']:.1f} ms, max {health['max']:.1f} ms; server peak RSS {peak:,.0f} MB; "
        f"server event-loop lag, {lag}"
    )


def _loop_lag(exposition: str) -> str:
    """The server's own ``xent_event_loop_lag_seconds``: how many checks, and the bound all were under."""
    buckets = sorted(
        (float(sample.labels["le"]), sample.value)
        for family in text_string_to_metric_families(exposition)
        if family.name == "xent_event_loop_lag_seconds"
        for sample in family.samples
        if sample.name.endswith("_bucket")
    )
    total = buckets[-1][1]
    bound = next(le for le, count in buckets if count == total)
    return f"{total:.0f} checks, every one ≤ {bound * 1e3:g} ms"


def large_batches(n: int, k: int, repeats: int) -> list[dict[str, object]]:
    """Xent per payload format, then the bare endpoint reading the binary body: the transport floor."""
    decoded_mb = (n * k * 4 + n * 8) / 2**20
    warmups = _bodies(8, k)
    rows = []
    bodies = _bodies(n, k)
    runs = [(name, "service.app:create_app", name) for name in bodies]
    runs.append(
        (
            "bare FastAPI reading the OIP binary body (transport floor)",
            "benchmarks.bare_app:app",
            "OIP binary",
        )
    )
    for label, app, name in runs:
        body, headers = bodies[name]
        server = Server(app, factory=app.startswith("service"))
        try:
            with httpx.Client(timeout=300) as client:
                warm_body, warm_headers = warmups[name]
                assert client.post(
                    server.url + "/v1/cross-entropy", content=warm_body, headers=warm_headers
                ).is_success
                idle = server.rss_mb()
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    response = client.post(server.url + "/v1/cross-entropy", content=body, headers=headers)
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
            peak = server.peak_rss_mb()
        finally:
            server.stop()
        t = float(np.median(times))
        rows.append(
            {
                "payload": f"{label}, {n:,}×{k} FP32 + labels",
                "body MB": f"{len(body) / 2**20:.1f}",
                "end-to-end ms": f"{t * 1e3:.1f}",
                "MB/s": f"{len(body) / 2**20 / t:.0f}",
                "rows/s": f"{n / t:,.0f}",
                "decoded arrays MB": f"{decoded_mb:.1f}",
                "server RSS before → peak MB": f"{idle:.0f} → {peak:.0f}",
                "peak growth / decoded": f"{(peak - idle) / decoded_mb:.1f}×",
            }
        )
    return rows


_SEND = """
import socket, sys, time
from urllib.parse import urlsplit
url, body = urlsplit(sys.argv[1]), open(sys.argv[2], "rb").read()
head = (
    f"POST {url.path} HTTP/1.1\\r\\nhost: {url.netloc}\\r\\ncontent-type: application/octet-stream\\r\\n"
    f"inference-header-content-length: {sys.argv[3]}\\r\\ncontent-length: {len(body)}\\r\\n\\r\\n"
).encode()
start = time.perf_counter()
with socket.create_connection((url.hostname, url.port)) as sock:
    sock.sendall(head)
    sock.sendall(body)  # one call: httpx took 116 s over 1 GB that this sends in ~5
    answer = b""
    while b"\\r\\n\\r\\n" not in answer:
        answer += sock.recv(65536)
    status = answer.split(b" ", 2)[1]
assert status == b"200", answer[:500]
print(f"{time.perf_counter() - start:.2f}")
"""


async def _health_during(url: str, body: bytes, headers: dict[str, str]) -> dict[str, float]:
    """Probe /healthz every 5 ms over one keep-alive connection while another process has `body` scored.

    The probe is a prebuilt request on a raw socket (:func:`benchmarks._rawload.exchange`):
    through ``httpx.AsyncClient`` each probe took ~5 ms at the median, the client's own work,
    which would hide what the server adds.
    """
    address = urlsplit(url)
    probe = f"GET /healthz HTTP/1.1\r\nhost: {address.netloc}\r\n\r\n".encode()
    with tempfile.NamedTemporaryFile(suffix=".bin") as file:
        file.write(body)
        file.flush()
        args = [url + "/v1/cross-entropy", file.name, headers["inference-header-content-length"]]
        latencies = []
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            assert await exchange(reader, writer, probe)
            sender = subprocess.Popen(
                [sys.executable, "-c", _SEND, *args], cwd=ROOT, stdout=subprocess.PIPE, text=True
            )
            while sender.poll() is None:
                start = time.perf_counter()
                assert await exchange(reader, writer, probe)
                latencies.append((time.perf_counter() - start) * 1e3)
                await asyncio.sleep(0.005)
        finally:
            writer.close()
        assert sender.wait() == 0
        assert sender.stdout is not None
        request_s = float(sender.stdout.read())
    return {
        "probes": len(latencies),
        "max": max(latencies),
        "p50": float(np.median(latencies)),
        "request_s": request_s,
    }


def compression(rows: int = 10_000, k: int = 10, repeats: int = 20) -> list[dict[str, object]]:
    """A `rows`-row per-sample cross-entropy answer, plain and gzipped: size, server and end-to-end cost.

    The compression itself is timed in this process on the answer's bytes (thread CPU, the
    levels Xent could use); end to end is one client over loopback with and without
    ``Accept-Encoding: gzip`` (httpx inflates the answer, as any client would).
    """
    from benchmarks._timing import median_ms
    from service.api.middleware import codings

    rng = np.random.default_rng(3)
    body = json.dumps(
        {
            "logits": rng.standard_normal((rows, k)).tolist(),
            "labels": rng.integers(0, k, rows).tolist(),
            "per_sample": True,
        }
    ).encode()
    server = Server("service.app:create_app", factory=True)
    out = []
    try:
        with httpx.Client(timeout=60) as client:
            for accept in ("identity", "gzip"):
                headers = {"content-type": "application/json", "accept-encoding": accept}
                times, wire = [], 0
                for _ in range(repeats + 1):
                    start = time.perf_counter()
                    request = client.build_request(
                        "POST", server.url + "/v1/cross-entropy", content=body, headers=headers
                    )
                    response = client.send(request, stream=True)
                    wire = sum(len(chunk) for chunk in response.iter_raw())
                    times.append(time.perf_counter() - start)
                    response.close()
                answer = client.post(server.url + "/v1/cross-entropy", content=body, headers=headers).content
                out.append(
                    {
                        "Accept-Encoding": accept,
                        "answer bytes": f"{len(answer):,}",
                        "bytes on the wire": f"{wire:,}",
                        "end-to-end ms (median)": f"{np.median(times[1:]) * 1e3:.1f}",
                    }
                )
    finally:
        server.stop()
    for level in (1, 6):

        def pack(level: int = level) -> bytes:
            compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
            return compressor.compress(answer) + compressor.flush()

        out.append(
            {
                "Accept-Encoding": f"gzip level {level} alone"
                + (" (Xent's)" if level == codings.GZIP_LEVEL else ""),
                "answer bytes": f"{len(answer):,}",
                "bytes on the wire": f"{len(pack()):,}",
                "end-to-end ms (median)": f"{median_ms(pack, repeats):.1f} (compression CPU)",
            }
        )
    return out


def _load() -> str:
    """The 1-minute load average now (the machine is shared: figures are ratios within one run)."""
    return f"{os.getloadavg()[0]:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs, smaller large batch")
    parser.add_argument(
        "--health-gb",
        type=float,
        metavar="GB",
        help="only: /healthz latency while one OIP binary request of about GB gigabytes is scored",
    )
    parser.add_argument(
        "--small-only", action="store_true", help="only the small-batch sections (servers, routes, workers)"
    )
    parser.add_argument(
        "--routes-only",
        action="store_true",
        help="only: every small-body route, bare FastAPI vs essential work vs Xent, and Xent's own layers",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=5,
        help="alternated rounds per route in the small-body routes' table (default 5; more on a noisy host)",
    )
    parser.add_argument(
        "--compression", action="store_true", help="only: a 10,000-row per-sample answer, plain and gzipped"
    )
    parser.add_argument(
        "--workers-compare",
        action="store_true",
        help="only: xent serve with 1 and 2 workers, the raw generator in its own process (run it on an "
        "otherwise idle machine)",
    )
    args = parser.parse_args(argv)
    if args.workers_compare:
        seconds = 3.0 if args.quick else 10.0
        sys.stdout.write(
            "## Workers (raw generator in its own process, 32 clients)\n" + table(workers(32, seconds)) + "\n"
        )
        return 0
    if args.compression:
        sys.stdout.write(
            "## Compression (10,000×10 cross-entropy, per_sample)\n" + table(compression()) + "\n"
        )
        return 0
    if args.health_gb:
        sys.stdout.write(health_at_size(args.health_gb) + "\n")
        return 0
    seconds, n, repeats = (3.0, 10_000, 2) if args.quick else (10.0, 100_000, 5)
    data_dir = tempfile.TemporaryDirectory(prefix="xent-bench-")
    essential_dir = tempfile.TemporaryDirectory(prefix="xent-bench-essential-")  # its monitor's store
    servers = {
        "bare FastAPI (constant)": Server("benchmarks.bare_app:app", factory=False),
        # `xent serve` as deployed, one worker: its JSON access log written (to /dev/null here)
        "Xent /v1/cross-entropy": Server(
            "", factory=False, workers=1, access_log=True, env={"XENT_DATA_DIR": data_dir.name}
        ),
        # on `xent serve`'s HTTP protocol, so that Xent's layers (Xent − essential) are its own code only
        ESSENTIAL: Server(
            "benchmarks.essential_app:app",
            factory=False,
            http=http_protocol(),
            env={"XENT_DATA_DIR": essential_dir.name},
        ),
    }
    xent = servers["Xent /v1/cross-entropy"]
    try:
        out = (
            []
            if args.routes_only
            else [
                "## Small batches (32×10 JSON, 16 concurrent clients, 1 worker)",
                table(small_batches(servers, 16, seconds)),
                "",
            ]
        )
        out += [
            f"## Every small-body route (raw generator, 16 clients, 1 worker; load average {_load()})",
            table(
                routes(servers["bare FastAPI (constant)"], servers[ESSENTIAL], xent, 16, seconds, args.rounds)
            ),
        ]
        if args.routes_only:
            sys.stdout.write("\n".join(out) + "\n")
            return 0
        if not args.small_only:
            body, headers = _bodies(10 * n, 10)["OIP binary"]
            health = asyncio.run(_health_during(xent.url, body, headers))
    finally:
        for server in servers.values():
            server.stop()
        data_dir.cleanup()
        essential_dir.cleanup()
    out += ["\n## Workers (raw generator in its own process, 32 clients)", table(workers(32, seconds))]
    if args.small_only:
        sys.stdout.write("\n".join(out) + "\n")
        return 0
    large = large_batches(n, 10, 3 * repeats) + ([] if args.quick else large_batches(10 * n, 10, 2))
    out += ["\n## Large batches (a fresh server per row)", table(large)]
    out += [
        f"\n## /healthz while scoring {10 * n:,}×10 (OIP binary, {len(body) / 2**20:.0f} MB, sent by another "
        f"process): {health['probes']} probes, p50 {health['p50']:.1f} ms, max {health['max']:.1f} ms"
    ]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
