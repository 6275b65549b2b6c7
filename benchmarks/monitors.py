"""Monitor benchmarks: ingestion beside scoring the same data, and a 30-day time-series query.

    python -m benchmarks.monitors [--quick]

One ``python -m service serve`` worker (XENT_WORKERS=1) on a scratch XENT_DATA_DIR, measured once
it is idle (its start-up roll-up of the 30-day monitor below takes seconds of CPU, which would
otherwise count in whichever load round ran beside it):

- small batches (32×10 JSON logits and labels): requests per second and the server's CPU per
  request (steadier than the rate on a shared machine) of
  ``POST /v1/monitors/{name}/observations`` (``bench``: a 10,000-row reservoir of labelled rows
  for temperature refits; ``bench0``: none) and of ``POST /v1/cross-entropy`` with the same body,
  driven by the raw keep-alive load generator (``benchmarks._rawload``, its own process), in
  alternating rounds;
- a 10,000×10 float32 batch with labels in the OIP binary tensor extension: median wall time and
  the server's CPU per request of each route, in alternating rounds of 20 requests (10 rounds,
  3 with ``--quick``), after the small batches (so ``bench``'s reservoir has seen many rows, as a
  monitor in service has);
- a query over 30 days of minute buckets (43,200 stats rows written straight into the store, then
  the same after the background compaction merged those older than a day into hours):
  median wall time of ``GET …/metrics?window=30d&step=1h`` (720 points).
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks._timing import table
from benchmarks.http import _cpu_seconds, cpu_between, task_cpu, wait_settled
from benchmarks.monitor_query import fill
from service.client.encoding import encode_binary
from service.monitors.holder import merge_blobs
from service.store import DATABASE_FILE, SqliteStore

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    """``python -m service serve`` with one worker on `data_dir`."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("XENT_")}
        env.update(
            XENT_PORT=str(self.port),
            XENT_WORKERS="1",
            XENT_DATA_DIR=data_dir,
            XENT_ACCESS_LOG="false",
            XENT_MAX_BODY_BYTES=str(512 * 2**20),
            XENT_MAX_PENDING_ROWS="10000000",
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"], cwd=ROOT, env=env, start_new_session=True
        )
        self.url = f"http://127.0.0.1:{self.port}"
        for _ in range(300):
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(30)


#: Scoring, then ingestion into a monitor with the default 10,000-row reservoir and one without.
PATHS = ("/v1/cross-entropy", "/v1/monitors/bench/observations", "/v1/monitors/bench0/observations")


def wait_idle(server: Serve, timeout_s: float = 300.0) -> float:
    """Wait until the server spends < 5% of a CPU (its start-up roll-up of the 30-day monitor done).

    Otherwise that background work lands in whichever load round runs beside it. Returns seconds waited.
    """
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        before = _cpu_seconds(server.process.pid)
        time.sleep(0.5)
        if _cpu_seconds(server.process.pid) - before < 0.025:
            break
    return time.monotonic() - start


def _raw_load(server: Serve, path: str, body: bytes, clients: int, seconds: float) -> dict[str, float]:
    """Requests/s and latency from the load generator, and the server's CPU µs per request."""
    with tempfile.NamedTemporaryFile(suffix=".json") as file:
        file.write(body)
        file.flush()
        args = [str(server.port), path, str(clients), str(seconds), file.name, "application/json"]
        before = _cpu_seconds(server.process.pid)
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks._rawload", *args], cwd=ROOT, capture_output=True, check=True
        )
        wait_settled(server.data_dir)  # the round's small writes summarised: their CPU is this round's
        spent = _cpu_seconds(server.process.pid) - before
    result: dict[str, float] = json.loads(out.stdout)
    assert result["non_200"] == 0, result
    result["cpu_us"] = spent / max(result["rps"] * seconds, 1) * 1e6
    return result


def small_batches(server: Serve, rounds: int, seconds: float) -> list[dict[str, object]]:
    rng = np.random.default_rng(0)
    body = json.dumps(
        {"logits": rng.standard_normal((32, 10)).tolist(), "labels": rng.integers(0, 10, 32).tolist()}
    ).encode()
    paths: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
    for _ in range(rounds):
        for path, runs in paths.items():
            runs.append(_raw_load(server, path, body, clients=8, seconds=seconds))
    rows: list[dict[str, object]] = []
    scoring = float(np.median([r["cpu_us"] for r in paths[PATHS[0]]]))
    for path, runs in paths.items():
        rps = float(np.median([r["rps"] for r in runs]))
        p50 = float(np.median([r["p50"] for r in runs]))
        cpu = float(np.median([r["cpu_us"] for r in runs]))
        rows.append(
            {
                "route (32×10 JSON)": path,
                "req/s per worker": f"{rps:.0f}",
                "p50 ms": f"{p50:.2f}",
                "server CPU µs/request": f"{cpu:.0f}",
                "× scoring (CPU)": f"{cpu / scoring:.2f}",
            }
        )
    return rows


def large_batch(server: Serve, rounds: int, per_round: int = 20) -> list[dict[str, object]]:
    """The 10,000×10 float32 batch to each path, `per_round` requests a round: wall ms and server CPU ms.

    Paths alternate round by round (the first round is a warm-up), so load that comes and goes
    falls on all of them. CPU is all the server's threads, in nanoseconds (:func:`task_cpu`):
    each path's rounds are added up and divided by their requests.
    """
    rng = np.random.default_rng(1)
    fields = {
        "logits": rng.standard_normal((10_000, 10)).astype(np.float32),
        "labels": rng.integers(0, 10, 10_000),
    }
    encoded = encode_binary(fields)
    wall: dict[str, list[float]] = {path: [] for path in PATHS}
    cpu: dict[str, list[float]] = {path: [] for path in PATHS}
    with httpx.Client(base_url=server.url, timeout=60) as client:
        for round_ in range(rounds + 1):
            for path in PATHS:
                before, times = task_cpu(server.process.pid), []
                for _ in range(per_round):
                    start = time.perf_counter()
                    answer = client.post(path, content=encoded.content, headers=encoded.headers)
                    times.append(time.perf_counter() - start)
                    assert answer.status_code == 200, answer.text
                if round_:
                    cpu[path].append(cpu_between(before, task_cpu(server.process.pid)) / per_round)
                    wall[path] += times
    cpu_per = {path: float(np.sum(cpu[path])) / len(cpu[path]) for path in PATHS}
    scoring_wall, scoring_cpu = float(np.median(wall[PATHS[0]])), cpu_per[PATHS[0]]
    return [
        {
            "route (10,000×10 float32 binary)": path,
            "median ms": f"{np.median(wall[path]) * 1e3:.2f}",
            "× scoring": f"{np.median(wall[path]) / scoring_wall:.2f}",
            "server CPU ms/request": f"{cpu_per[path] * 1e3:.2f}",
            "× scoring (CPU)": f"{cpu_per[path] / scoring_cpu:.2f}",
        }
        for path in PATHS
    ]


def fill_30_days(data_dir: str, now: float) -> None:
    """43,200 minute buckets of one monitor (K = 10), each its own 32-row batch, written into the store."""
    store = SqliteStore(Path(data_dir) / DATABASE_FILE, merge=merge_blobs)
    fill(store, now)  # distinct blobs: the query's cache of decoded blobs sees each once
    store.close()


def compact(data_dir: str, now: float) -> int:
    store = SqliteStore(Path(data_dir) / DATABASE_FILE, merge=merge_blobs)
    merged = store.compact(now)
    store.close()
    return merged


def query(server: Serve, repeats: int) -> float:
    times = []
    with httpx.Client(base_url=server.url, timeout=120) as client:
        for _ in range(repeats + 1):
            start = time.perf_counter()
            answer = client.get("/v1/monitors/month/metrics", params={"window": "30d", "step": "1h"})
            times.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            assert sum(p["n"] for p in answer.json()["points"]) >= 32 * 43_000
    return float(np.median(times[1:]) * 1e3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    rounds, seconds, repeats = (1, 2.0, 3) if args.quick else (3, 4.0, 7)
    large_rounds = 3 if args.quick else 10
    with tempfile.TemporaryDirectory() as data_dir:
        now = time.time()
        fill_30_days(data_dir, now)
        server = Serve(data_dir)
        try:
            httpx.put(f"{server.url}/v1/monitors/bench", json={"n_classes": 10}).raise_for_status()
            spec = {"n_classes": 10, "reservoir_size": 0}
            httpx.put(f"{server.url}/v1/monitors/bench0", json=spec).raise_for_status()
            waited = wait_idle(server)
            print(table(small_batches(server, rounds, seconds)), end="\n\n")
            wait_idle(server)  # the small batches' roll-up and compaction done, not charged to these rounds
            print(table(large_batch(server, large_rounds)), end="\n\n")
            raw_ms = query(server, repeats)
        finally:
            server.stop()
        merged = compact(data_dir, time.time())
        server = Serve(data_dir)
        try:
            compacted_ms = query(server, repeats)
        finally:
            server.stop()
    label = "30 days of minute buckets, step=1h (720 points)"
    rows: list[dict[str, object]] = [
        {label: "43,200 rows", "median ms": f"{raw_ms:.0f}"},
        {label: f"compacted ({merged} rows merged away)", "median ms": f"{compacted_ms:.0f}"},
    ]
    print(table(rows))
    print(
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; waited {waited:.1f} s for start-up"
    )


if __name__ == "__main__":
    main()
