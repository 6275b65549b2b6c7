"""Load and soak test: many concurrent clients, mixed request sizes, against a local server.

Starts ``python -m service serve`` on a free loopback port (2 workers by default), runs
`clients` concurrent keep-alive clients posting a mix of small and large cross-entropy
and divergence requests until `duration` seconds pass or `max_requests` are sent
(whichever comes first), then stops the server. Only 127.0.0.1 is ever contacted.

Reports requests served, status counts, 5xx, dropped connections (transport errors),
p50/p99 latency overall and per size, and the workers' summed RSS after the first
1,000 requests, every 5,000, after 20,000, and at the end. RSS is sampled at rest: at each
mark the clients stop sending, the requests in flight finish, and the server is left idle
for ``SETTLE_S`` (longer than its idle trim, ``XENT_IDLE_TRIM_S``) before the sample, so
the figures compare the memory a worker keeps, not whichever requests happen to be in
flight at that instant. Pauses do not count towards the duration or the throughput.

    python -m benchmarks.load                      # 60 s, 64 clients, 2 workers
    python -m benchmarks.load --duration 10 --json # short run, machine-readable
"""

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RSS_MARKS = (1_000, 20_000)
RSS_EVERY = 5_000  # also sample the workers' RSS every this many requests, to show the curve
SETTLE_S = 2.0  # idle time before each RSS sample: above the server's default 1 s idle trim


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _bodies(seed: int = 0) -> dict[str, tuple[str, bytes, float]]:
    """Request kinds: name -> (path, encoded body, share of the traffic)."""
    rng = np.random.default_rng(seed)

    def logits(n: int, k: int) -> list[list[float]]:
        return np.round(rng.standard_normal((n, k)) * 3, 4).tolist()

    def probs(n: int, k: int) -> list[list[float]]:
        p = rng.dirichlet(np.ones(k), size=n)
        return (p / p.sum(axis=1, keepdims=True)).tolist()

    def dump(value: dict[str, object]) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    return {
        "small-ce": ("/v1/cross-entropy", dump({"logits": logits(8, 4), "labels": [0, 1, 2, 3] * 2}), 0.55),
        "small-div": ("/v1/divergence", dump({"p_probs": probs(8, 4), "q_probs": probs(8, 4)}), 0.20),
        "medium-ce": (
            "/v1/cross-entropy",
            dump({"logits": logits(1_000, 10), "labels": rng.integers(0, 10, 1_000).tolist()}),
            0.20,
        ),
        "large-ce": (
            "/v1/cross-entropy",
            dump(
                {
                    "logits": logits(4_000, 50),
                    "labels": rng.integers(0, 50, 4_000).tolist(),
                    "per_sample": True,
                }
            ),
            0.05,
        ),
    }


def _worker_pids(parent: int) -> list[int]:
    try:
        children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    except OSError:
        return []
    pids = []
    for child in map(int, children):
        try:
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                pids.append(child)
        except OSError:
            continue
    return pids


def _rss_mib(pids: list[int], field: str = "VmRSS") -> float:
    """Summed ``/proc/<pid>/status`` `field` (kB) of `pids`, in MiB (``Threads``: a plain count)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return float(total) if field == "Threads" else round(total / 1024, 1)


@dataclass
class Report:
    """What a load run measured."""

    workers: int
    clients: int
    duration_s: float = 0.0
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    dropped: int = 0
    throughput_rps: float = 0.0
    paused_s: float = 0.0  # time spent at rest for the RSS samples, not in duration_s
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_mib: dict[str, float] = field(default_factory=dict)
    #: RSS by kind (anonymous, file-backed, shared memory) and thread count, at the same marks
    rss_parts: dict[str, dict[str, float]] = field(default_factory=dict)
    rss_growth: float | None = None
    rss_growth_second_half: float | None = None
    errors: list[str] = field(default_factory=list)


async def _drive(
    url: str, clients: int, duration: float, max_requests: int, server_pid: int, report: Report
) -> None:
    kinds = _bodies()
    names = list(kinds)
    shares = np.array([kinds[name][2] for name in names])
    plan = np.random.default_rng(1).choice(len(names), size=max_requests, p=shares / shares.sum())
    latencies: dict[str, list[float]] = {name: [] for name in names}
    statuses: dict[str, int] = {}
    next_index = 0
    done = 0
    in_flight = 0
    running = asyncio.Event()  # cleared while the clients rest for an RSS sample
    running.set()
    samplers: list[asyncio.Task[None]] = []
    started = time.perf_counter()
    headers = {"content-type": "application/json"}
    # Idle connections are retired by the client well before uvicorn's 5 s keep-alive timeout, so
    # a request never races the server closing an idle connection (that race is a client bug).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0)

    def sample_rss(label: str) -> None:
        pids = _worker_pids(server_pid)
        report.rss_mib[label] = _rss_mib(pids)
        report.rss_parts[label] = {
            kind: _rss_mib(pids, kind) for kind in ("RssAnon", "RssFile", "RssShmem", "Threads")
        }

    async def sample_at_rest(label: str) -> None:
        """Let the requests in flight finish and the server idle, sample, and let the clients go on."""
        paused = time.perf_counter()
        while in_flight:
            await asyncio.sleep(0.01)
        await asyncio.sleep(SETTLE_S)
        sample_rss(label)
        report.paused_s += time.perf_counter() - paused
        running.set()

    def active_s() -> float:
        return time.perf_counter() - started - report.paused_s

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one_client() -> None:
            nonlocal next_index, done, in_flight
            while True:
                await running.wait()
                if active_s() >= duration or next_index >= max_requests:
                    return
                name = names[plan[next_index]]
                next_index += 1
                path, body, _ = kinds[name]
                sent = time.perf_counter()
                in_flight += 1
                try:
                    response = await client.post(path, content=body, headers=headers)
                except httpx.TransportError as exc:
                    report.dropped += 1
                    if len(report.errors) < 5:
                        report.errors.append(f"{name}: {exc!r} after {time.perf_counter() - sent:.2f} s")
                    continue
                finally:
                    in_flight -= 1
                latencies[name].append(time.perf_counter() - sent)
                key = str(response.status_code)
                statuses[key] = statuses.get(key, 0) + 1
                done += 1
                if done in RSS_MARKS or done % RSS_EVERY == 0:
                    running.clear()
                    samplers.append(asyncio.create_task(sample_at_rest(f"after_{done}")))

        await asyncio.gather(*(one_client() for _ in range(clients)))
        await asyncio.gather(*samplers)
        report.duration_s = round(active_s(), 2)
        report.paused_s = round(report.paused_s, 2)
    await asyncio.sleep(SETTLE_S)
    sample_rss("at_end")
    everything = np.concatenate([np.asarray(v) for v in latencies.values()]) * 1000
    report.requests = done
    report.statuses = dict(sorted(statuses.items()))
    report.server_errors = sum(n for status, n in statuses.items() if status.startswith("5"))
    report.throughput_rps = round(done / report.duration_s, 1)
    if everything.size:
        report.p50_ms = round(float(np.percentile(everything, 50)), 2)
        report.p99_ms = round(float(np.percentile(everything, 99)), 2)
    for name, values in latencies.items():
        if values:
            ms = np.asarray(values) * 1000
            report.by_kind[name] = {
                "n": len(values),
                "bytes": len(kinds[name][1]),
                "p50_ms": round(float(np.percentile(ms, 50)), 2),
                "p99_ms": round(float(np.percentile(ms, 99)), 2),
            }
    first, last = report.rss_mib.get("after_1000"), report.rss_mib.get("after_20000")
    if first and last:
        report.rss_growth = round(last / first - 1, 4)
    middle = report.rss_mib.get("after_10000")
    if middle and last:
        report.rss_growth_second_half = round(last / middle - 1, 4)


def run_load(
    *, workers: int = 2, clients: int = 64, duration: float = 60.0, max_requests: int = 200_000
) -> Report:
    """Start a server, drive it, stop it; never contacts anything but 127.0.0.1."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XENT_", "PROMETHEUS_"))}
    env.update(
        {
            "XENT_HOST": "127.0.0.1",
            "XENT_PORT": str(port),
            "XENT_WORKERS": str(workers),
            "XENT_ACCESS_LOG": "false",
            "XENT_MAX_CONCURRENCY": str(clients),
        }
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "serve"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    report = Report(workers=workers, clients=clients)
    try:
        ready_by = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"server exited with {server.returncode}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > ready_by:
                raise TimeoutError("server did not become ready")
            time.sleep(0.1)
        while len(_worker_pids(server.pid)) < workers and time.monotonic() < ready_by:
            time.sleep(0.1)
        asyncio.run(_drive(url, clients, duration, max_requests, server.pid, report))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds (upper bound)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="requests (upper bound)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = run_load(
        workers=args.workers, clients=args.clients, duration=args.duration, max_requests=args.max_requests
    )
    if args.json:
        print(json.dumps(asdict(report), indent=2))
    else:
        print(
            f"{report.requests} requests in {report.duration_s} s ({report.throughput_rps}/s), "
            f"{report.workers} workers, {report.clients} clients"
        )
        print(f"statuses {report.statuses}; 5xx {report.server_errors}; dropped connections {report.dropped}")
        print(f"latency p50 {report.p50_ms} ms, p99 {report.p99_ms} ms")
        for name, stats in report.by_kind.items():
            print(
                f"  {name:10} {stats['bytes']:>9} B  n={stats['n']:<6} "
                f"p50 {stats['p50_ms']} ms  p99 {stats['p99_ms']} ms"
            )
        print(
            f"worker RSS (MiB): {report.rss_mib}; growth 1k→20k: {report.rss_growth}, "
            f"10k→20k: {report.rss_growth_second_half}"
        )
        for error in report.errors:
            print(f"  error: {error}")
    ok = report.server_errors == 0 and report.dropped == 0
    if report.rss_growth is not None:
        ok = ok and report.rss_growth <= 0.10
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
