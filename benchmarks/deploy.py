"""Throughput of the service by worker count, through the Python client, on loopback.

    python -m benchmarks.deploy [--requests 3000] [--concurrency 32]

For each worker count it starts ``python -m service serve`` (the image's CMD) on a free
loopback port, warms it up, then sends small batches (32×10 float32 logits) from
`concurrency` concurrent AsyncXentClient calls and reports requests/s and p50/p99
latency; then one large batch (100,000×10 float32) several times, as JSON tensors and as
the OIP binary tensor extension. The load generator
runs on the same machine, so on 2 cores it competes with the workers for CPU.
It also times the client's request encoding (ndarray → tensor JSON) against
``ndarray.tolist()`` + orjson.
"""

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time

import numpy as np
import orjson

from service.client import AsyncXentClient, XentClient
from service.client.encoding import encode_json


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(workers: int) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "XENT_HOST": "127.0.0.1", "XENT_PORT": str(port), "XENT_WORKERS": str(workers)}
    env["XENT_LOG_LEVEL"] = "warning"
    process = subprocess.Popen([sys.executable, "-m", "service", "serve"], env=env)
    url = f"http://127.0.0.1:{port}"
    with XentClient(url) as client:
        deadline = time.monotonic() + 60
        while not client.ready():
            if time.monotonic() > deadline:
                process.kill()
                raise SystemExit("server did not start")
            time.sleep(0.1)
    return process, url


async def small_batches(url: str, requests: int, concurrency: int) -> tuple[float, list[float]]:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((32, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=32)
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker(client: AsyncXentClient) -> None:
        for _ in queue:
            started = time.perf_counter()
            await client.cross_entropy(logits=logits, labels=labels)
            latencies.append(time.perf_counter() - started)

    async with AsyncXentClient(url) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))  # warm-up
        queue = iter(range(requests))
        latencies.clear()
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, latencies


def large_batch(url: str, repeats: int, payload: str) -> list[float]:
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((100_000, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=100_000)
    times = []
    with XentClient(url, timeout=60, payload=payload) as client:  # type: ignore[arg-type]
        for _ in range(repeats + 1):
            started = time.perf_counter()
            client.cross_entropy(logits=logits, labels=labels)
            times.append(time.perf_counter() - started)
    return times[1:]


def encoding() -> tuple[float, float]:
    logits = np.random.default_rng(2).standard_normal((100_000, 10)).astype(np.float32)
    tensor = min(_timed(lambda: encode_json({"logits": logits})) for _ in range(5))
    lists = min(_timed(lambda: orjson.dumps({"logits": logits.tolist()})) for _ in range(5))
    return tensor, lists


def _timed(call) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    tensor, lists = encoding()
    print(f"client encoding of 1M float32: tensor {tensor * 1e3:.1f} ms, tolist+orjson {lists * 1e3:.1f} ms")
    print("workers  req/s  p50 ms  p99 ms  1M float32 as JSON ms  as binary ms  (medians)")
    for workers in map(int, args.workers.split(",")):
        process, url = start(workers)
        try:
            rate, latencies = asyncio.run(small_batches(url, args.requests, args.concurrency))
            big = {payload: large_batch(url, 5, payload) for payload in ("json", "binary")}
        finally:
            process.terminate()
            process.wait(timeout=30)
        q = np.quantile(latencies, [0.5, 0.99]) * 1e3
        json_ms, binary_ms = (statistics.median(big[p]) * 1e3 for p in ("json", "binary"))
        print(f"{workers:>7}  {rate:>5.0f}  {q[0]:>6.1f}  {q[1]:>6.1f}  {json_ms:>20.1f}  {binary_ms:>12.1f}")


if __name__ == "__main__":
    main()
