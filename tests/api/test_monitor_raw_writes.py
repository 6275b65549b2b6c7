"""Small writes stored raw: read at once as their statistics, settled soon, counted once, kept by kill -9."""

import sqlite3
import threading
import time

import httpx
import numpy as np
import pytest
import scipy.special

from tests.api.monitoring import monitor_client, observe
from tests.api.test_monitors_server import Served, kill_during_writes
from tests.serving.server import free_port

K = 5


def raw_rows(data_dir) -> int:
    with sqlite3.connect(data_dir / "monitors.sqlite3") as db:
        return int(db.execute("SELECT count(*) FROM stats WHERE raw = 1").fetchone()[0])


def wait_settled(data_dir, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while raw_rows(data_dir):
        assert time.monotonic() < deadline, "raw rows were not settled"
        time.sleep(0.02)


def reference_ce(batches) -> float:
    logits = np.concatenate([z for z, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    nll = -scipy.special.log_softmax(logits, axis=1)[np.arange(labels.size), labels]
    return float(nll.mean())


def counter(text: str, family: str, monitor: str) -> float:
    prefix = f'{family}{{monitor="{monitor}",segment=""}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def test_a_small_write_is_read_at_once_and_counted_once_settled(tmp_path):
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, K)), rng.integers(0, K, 8)) for _ in range(6)]
    with monitor_client(tmp_path) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        for i, (logits, labels) in enumerate(batches):
            fmt = "json" if i % 2 else "binary"  # a plain body and the general reader alike
            answer = observe(client, "m", {"logits": logits, "labels": labels}, fmt)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {
                "monitor": "m", "n": 8, "n_labelled": 8, "n_pending": 0, "n_duplicate_ids": 0,
                "buckets": 1, "segment": "",
            }  # fmt: skip
        stored_raw = raw_rows(tmp_path)
        totals = client.get("/v1/monitors/m").json()["totals"]  # raw or settled, the same answer
        assert totals["n"] == totals["n_labelled"] == 48
        assert totals["cross_entropy"] == pytest.approx(reference_ce(batches), rel=1e-12)
        wait_settled(tmp_path)
        settled = client.get("/v1/monitors/m").json()["totals"]
        assert settled["cross_entropy"] == pytest.approx(totals["cross_entropy"], rel=1e-12)
        metrics = client.get("/metrics").text
    assert stored_raw > 0  # (unless the settler was quicker than the test)
    assert counter(metrics, "xent_monitor_samples_total", "m") == 48
    assert counter(metrics, "xent_monitor_labelled_total", "m") == 48
    nll = counter(metrics, "xent_monitor_nll_nats_total", "m")
    assert nll == pytest.approx(48 * reference_ce(batches), rel=1e-12)


def test_a_monitor_with_a_temperature_summarises_its_writes_at_once(tmp_path):
    rng = np.random.default_rng(1)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/t", json={"n_classes": K})
        logits, labels = 2 * rng.standard_normal((200, K)), rng.integers(0, K, 200)
        assert observe(client, "t", {"logits": logits, "labels": labels}).status_code == 200
        fit = client.post("/v1/monitors/t/temperature").json()  # reads the reservoir: settles first
        assert fit["n"] == 200
        assert observe(client, "t", {"logits": logits[:8], "labels": labels[:8]}).status_code == 200
        with sqlite3.connect(tmp_path / "monitors.sqlite3") as db:
            segments = {row[0] for row in db.execute("SELECT segment FROM stats WHERE raw = 0")}
        assert raw_rows(tmp_path) == 0
        assert "\x1ftemperature" in segments  # the expected accuracy after the fitted temperature


def test_kill_9_keeps_every_acknowledged_raw_write_and_settles_it_after_the_restart(tmp_path):
    port = free_port()
    extra = {"XENT_COMPACTION_INTERVAL_S": "86400"}
    server = Served(tmp_path, port, extra=extra)
    httpx.put(f"{server.url}/v1/monitors/crash", json={"n_classes": K}).raise_for_status()
    acknowledged = [0] * 4
    stop = threading.Event()

    def write(writer: int) -> None:
        rng = np.random.default_rng(writer)
        with httpx.Client(base_url=server.url, timeout=10) as client:
            while not stop.is_set():
                body = {
                    "logits": rng.standard_normal((4, K)).tolist(),
                    "labels": rng.integers(0, K, 4).tolist(),
                }
                try:
                    answer = client.post("/v1/monitors/crash/observations", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                if answer.status_code == 200:
                    acknowledged[writer] += 4

    kill_during_writes(server, write, len(acknowledged), lambda: sum(acknowledged) >= 400, stop)
    acked = sum(acknowledged)
    assert acked >= 40
    restarted = Served(tmp_path, port, extra=extra)
    try:
        totals = httpx.get(f"{restarted.url}/v1/monitors/crash").json()["totals"]
        assert (
            acked <= totals["n"] <= acked + 4 * len(acknowledged)
        )  # at most each writer's request in flight
        wait_settled(tmp_path)  # rows left raw by the kill: settled by the restarted workers
        after = httpx.get(f"{restarted.url}/v1/monitors/crash").json()["totals"]
        assert after["n"] == totals["n"]
        assert after["cross_entropy"] == pytest.approx(totals["cross_entropy"], rel=1e-12)
    finally:
        restarted.stop()
