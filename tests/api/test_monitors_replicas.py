"""Two replicas (``python -m service serve`` × 2 workers each) on one PostgreSQL database.

No coordination between them but the database: 8 writers spread their batches over both, both
compact in the background every second, one is killed with SIGKILL mid-write, a label sent to one
joins a prediction the other stored.
"""

import threading
import time

import httpx
import numpy as np
import pytest
import scipy.special

from tests.api.test_monitors_server import ROWS, Served, _batch
from tests.serving.server import free_port

pytest.importorskip("psycopg", reason="the replica tests need the postgres extra (psycopg)")

WRITERS = 8
BATCHES = 500
K = 3


@pytest.fixture
def replicas(tmp_path, postgres_url):
    servers: list[Served] = []

    def start(port: int | None = None) -> Served:
        extra = {"XENT_DATABASE_URL": postgres_url, "XENT_COMPACTION_INTERVAL_S": "1"}
        server = Served(tmp_path / f"unused-{len(servers)}", port or free_port(), extra=extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_two_replicas_8_writers_500_batches_totals_exact(replicas):
    servers = [replicas(), replicas()]
    httpx.put(f"{servers[0].url}/v1/monitors/load", json={"n_classes": K}).raise_for_status()
    failures: list[str] = []

    def write(writer: int) -> None:
        clients = [httpx.Client(base_url=s.url, timeout=30) for s in servers]
        for b in range(BATCHES):
            logits, labels = _batch(writer * BATCHES + b)
            body = {"logits": logits.tolist(), "labels": labels.tolist(), "segment": f"w{writer % 2}"}
            answer = clients[(writer + b) % 2].post("/v1/monitors/load/observations", json=body)
            if answer.status_code != 200:
                failures.append(answer.text)
        for client in clients:
            client.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:3]
    batches = [_batch(seed) for seed in range(WRITERS * BATCHES)]
    logits = np.concatenate([z for z, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    nll = -scipy.special.log_softmax(logits, axis=1)[np.arange(labels.size), labels]
    for server in servers:  # each replica reads every row, whichever stored it
        totals = httpx.get(f"{server.url}/v1/monitors/load").json()["totals"]
        assert totals["n"] == totals["n_labelled"] == WRITERS * BATCHES * ROWS
        assert totals["cross_entropy"] == pytest.approx(nll.mean(), rel=1e-12)
        assert totals["segments"] == ["w0", "w1"]


def test_kill_9_of_one_replica_loses_no_acknowledged_batch_and_b_joins_a_s_rows(replicas):
    a, b = replicas(), replicas()
    httpx.put(f"{a.url}/v1/monitors/crash", json={"n_classes": K}).raise_for_status()
    acknowledged: dict[str, list[str]] = {"a": [], "b": []}
    attempted = [0] * WRITERS
    killed, stop = threading.Event(), threading.Event()
    after_kill = [0]

    def write(writer: int) -> None:
        clients = {name: httpx.Client(base_url=s.url, timeout=10) for name, s in (("a", a), ("b", b))}
        for n in range(10**6):
            if stop.is_set():
                break
            name = "b" if killed.is_set() or n % 2 else "a"
            logits, _ = _batch(n)
            ids = [f"{writer}-{n}-{i}" for i in range(ROWS)]
            attempted[writer] += 1
            try:
                answer = clients[name].post(
                    "/v1/monitors/crash/observations", json={"logits": logits.tolist(), "ids": ids}
                )
            except httpx.TransportError:
                continue  # replica a is gone: the next batch goes to b
            if answer.status_code == 200:
                acknowledged[name] += ids
                if killed.is_set():
                    after_kill[0] += 1
        for client in clients.values():
            client.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged["a"]) < 60 * ROWS and time.monotonic() < deadline:
        time.sleep(0.05)
    a.kill()  # mid-write: requests to it are in flight
    killed.set()
    deadline = time.monotonic() + 30
    while after_kill[0] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged["a"]) >= 60 * ROWS, "too few batches reached replica a before the kill"
    assert after_kill[0] >= 100, "replica b did not keep serving after a was killed"
    acked = acknowledged["a"] + acknowledged["b"]
    totals = httpx.get(f"{b.url}/v1/monitors/crash").json()["totals"]
    in_flight = sum(attempted) * ROWS - len(acked)
    assert len(acked) <= totals["n"] <= len(acked) + in_flight
    for name in ("a", "b"):  # labels posted to b join the predictions a stored (and its own)
        ids = acknowledged[name]
        joined = httpx.post(
            f"{b.url}/v1/monitors/crash/labels", json={"ids": ids, "labels": [0] * len(ids)}, timeout=60
        ).json()
        assert joined["joined"] == len(ids), (name, joined)
    totals = httpx.get(f"{b.url}/v1/monitors/crash").json()["totals"]
    assert totals["n_labelled"] == len(acked)
