"""Monitors under a real server (``python -m service serve``, 2 workers): concurrent writers, kill -9."""

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import scipy.special

from tests.serving.server import ROOT, free_port

WRITERS = 8
BATCHES = 500
ROWS = 4
K = 3


class Served:
    """``python -m service serve`` in a session of its own, so kill -9 takes every worker with it."""

    def __init__(
        self, data_dir: Path, port: int, workers: int = 2, extra: dict[str, str] | None = None
    ) -> None:
        self.url = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("XENT_")}
        env.update(
            XENT_PORT=str(port),
            XENT_WORKERS=str(workers),
            XENT_DATA_DIR=str(data_dir),
            XENT_ACCESS_LOG="false",
            XENT_MAX_CONCURRENCY="256",
        )
        env.update(extra or {})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "serve"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.process.poll() is None, "server exited"
            assert time.monotonic() < deadline, "server did not become ready"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the server and its workers at once."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def served(tmp_path):
    servers: list[Served] = []

    def start(port: int) -> Served:
        server = Served(tmp_path, port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def kill_during_writes(
    server: Served,
    write: Callable[[int], None],
    writers: int,
    enough: Callable[[], bool],
    stop: threading.Event,
) -> None:
    """Run `write(w)` in `writers` threads, kill -9 `server` once `enough()`, then `stop` and join them.

    The kill waits at most 60 s for `enough()`, however loaded the machine is; requests are in
    flight when it comes. Each `write` returns once `stop` is set or the server is gone.
    """
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while not enough() and time.monotonic() < deadline:
        time.sleep(0.02)
    server.kill()
    stop.set()
    for thread in threads:
        thread.join()


def _batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((ROWS, K)), rng.integers(0, K, size=ROWS)


def test_concurrent_writers_totals_are_exact(served):
    server = served(free_port())
    httpx.put(f"{server.url}/v1/monitors/load", json={"n_classes": K}).raise_for_status()
    failures: list[str] = []

    def write(writer: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for b in range(BATCHES):
                logits, labels = _batch(writer * BATCHES + b)
                body = {"logits": logits.tolist(), "labels": labels.tolist(), "segment": f"w{writer % 2}"}
                answer = client.post("/v1/monitors/load/observations", json=body)
                if answer.status_code != 200:
                    failures.append(answer.text)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    totals = httpx.get(f"{server.url}/v1/monitors/load").json()["totals"]
    assert totals["n"] == totals["n_labelled"] == WRITERS * BATCHES * ROWS
    batches = [_batch(seed) for seed in range(WRITERS * BATCHES)]
    logits = np.concatenate([z for z, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    nll = -scipy.special.log_softmax(logits, axis=1)[np.arange(labels.size), labels]
    assert totals["cross_entropy"] == pytest.approx(nll.mean(), rel=1e-12)
    assert totals["segments"] == ["w0", "w1"]


def test_kill_9_during_writes_keeps_every_acknowledged_batch(served):
    port = free_port()
    server = served(port)
    httpx.put(f"{server.url}/v1/monitors/crash", json={"n_classes": K}).raise_for_status()
    acknowledged: list[list[str]] = [[] for _ in range(WRITERS)]
    attempted = [0] * WRITERS
    stop = threading.Event()

    def write(writer: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for b in range(10**6):
                if stop.is_set():
                    return
                logits, _ = _batch(b)
                ids = [f"{writer}-{b}-{i}" for i in range(ROWS)]
                attempted[writer] += 1
                try:
                    answer = client.post(
                        "/v1/monitors/crash/observations", json={"logits": logits.tolist(), "ids": ids}
                    )
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    acknowledged[writer] += ids

    kill_during_writes(server, write, WRITERS, lambda: sum(map(len, acknowledged)) >= 60 * ROWS, stop)
    acked = [i for ids in acknowledged for i in ids]
    assert len(acked) >= 10 * ROWS, "too few batches went through before the kill to test anything"
    restarted = served(port)
    totals = httpx.get(f"{restarted.url}/v1/monitors/crash").json()["totals"]
    in_flight = sum(attempted) * ROWS - len(acked)
    assert len(acked) <= totals["n"] <= len(acked) + in_flight
    labels = [0] * len(acked)
    joined = httpx.post(
        f"{restarted.url}/v1/monitors/crash/labels", json={"ids": acked, "labels": labels}, timeout=60
    ).json()
    assert joined["joined"] == len(acked), joined  # every acknowledged row is there, waiting for its label


def test_retries_with_idempotency_keys_after_kill_9_count_every_batch_exactly_once(served):
    """Writers send keyed batches; kill -9 mid-write; after the restart each writer re-sends every
    batch it attempted (answered or not) with the same key: each counts once, none is lost."""
    port = free_port()
    server = served(port)
    httpx.put(f"{server.url}/v1/monitors/retry", json={"n_classes": K}).raise_for_status()
    attempted: list[list[int]] = [[] for _ in range(WRITERS)]
    acknowledged = [0] * WRITERS
    stop = threading.Event()

    def send(client: httpx.Client, writer: int, b: int) -> httpx.Response:
        logits, labels = _batch(writer * 10**5 + b)
        body = {"logits": logits.tolist(), "labels": labels.tolist()}
        headers = {"Idempotency-Key": f"writer-{writer}-batch-{b}"}
        return client.post("/v1/monitors/retry/observations", json=body, headers=headers)

    def write(writer: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            for b in range(10**5):
                if stop.is_set():
                    return
                attempted[writer].append(b)
                try:
                    if send(client, writer, b).status_code == 200:
                        acknowledged[writer] += 1
                except httpx.TransportError:
                    return  # the server is gone

    kill_during_writes(server, write, WRITERS, lambda: sum(acknowledged) >= 40, stop)
    assert sum(acknowledged) >= 10, "too few batches went through before the kill to test anything"
    restarted = served(port)
    replayed = 0
    with httpx.Client(base_url=restarted.url, timeout=30) as client:
        for writer, batches in enumerate(attempted):
            for b in batches:
                answer = send(client, writer, b)
                assert answer.status_code == 200, answer.text
                replayed += answer.headers.get("idempotent-replayed") == "true"
    assert replayed >= sum(acknowledged)  # every acknowledged batch was found committed
    totals = httpx.get(f"{restarted.url}/v1/monitors/retry").json()["totals"]
    every = [_batch(writer * 10**5 + b) for writer, batches in enumerate(attempted) for b in batches]
    assert totals["n"] == totals["n_labelled"] == len(every) * ROWS
    logits = np.concatenate([z for z, _ in every])
    labels = np.concatenate([y for _, y in every])
    nll = -scipy.special.log_softmax(logits, axis=1)[np.arange(labels.size), labels]
    assert totals["cross_entropy"] == pytest.approx(nll.mean(), rel=1e-12)
