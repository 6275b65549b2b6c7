"""Issue 6, end to end against ``python -m service serve`` with 2 uvicorn workers on loopback:
metrics summed over workers, a worker killed mid-request, graceful shutdown on SIGTERM."""

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import assert_problem

from .server import Server

BODY = {"logits": [[2.0, 0.0], [0.0, 1.0]], "labels": [0, 1]}


def worker_pids(server: Server, want: int = 2, tries: int = 300) -> set[int]:
    """Pids of the workers that answer, from fresh connections (each may land on any worker)."""
    pids: set[int] = set()
    for _ in range(tries):
        pids.add(int(httpx.post(f"{server.url}/v1/test/sleep", timeout=10).json()["pid"]))
        if len(pids) >= want:
            break
    return pids


def total(server: Server, name: str, **labels: str) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def wait_for_mark(marks: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        entered = list(marks.glob("entered-*"))
        if entered:
            return int(entered[0].name.removeprefix("entered-"))
        time.sleep(0.02)
    raise TimeoutError("the slow request never reached a worker")


def test_metrics_are_summed_over_workers(tmp_path):
    with Server(workers=2, log=tmp_path / "server.log") as server:
        assert len(worker_pids(server)) == 2, "both workers should answer"
        for _ in range(30):
            assert httpx.post(f"{server.url}/v1/cross-entropy", json=BODY, timeout=10).status_code == 200
        for _ in range(5):  # whichever worker answers /metrics reports the same totals
            labels = {"route": "/v1/cross-entropy", "status": "200"}
            assert total(server, "xent_http_requests_total", **labels) == 30
            assert total(server, "xent_scored_rows_total", route="/v1/cross-entropy") == 60
    log = (tmp_path / "server.log").read_text()
    assert '"route":"/v1/cross-entropy","status":200' in log


def test_killed_worker_is_replaced_and_later_requests_succeed(tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    with Server(workers=2, env={"XENT_TEST_MARK_DIR": str(marks)}) as server:
        before = worker_pids(server)
        assert len(before) == 2
        for path in marks.iterdir():
            path.unlink()
        outcome: list[object] = []

        def slow_request() -> None:
            try:
                outcome.append(httpx.post(f"{server.url}/v1/test/sleep", params={"seconds": 5}, timeout=30))
            except httpx.HTTPError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=slow_request)
        thread.start()
        victim = wait_for_mark(marks)
        os.kill(victim, signal.SIGKILL)
        thread.join(30)
        assert isinstance(outcome[0], httpx.HTTPError), outcome  # the request in flight is lost, not hung
        # The supervisor starts a replacement; every later request succeeds.
        statuses = [
            httpx.post(f"{server.url}/v1/cross-entropy", json=BODY, timeout=10).status_code for _ in range(40)
        ]
        assert statuses == [200] * 40
        deadline = time.monotonic() + 20
        after: set[int] = set()
        while time.monotonic() < deadline and len(after - {victim}) < 2:
            after |= worker_pids(server, tries=20)
        assert victim not in after
        assert len(after) == 2
        # Counters of the dead worker are kept: nothing goes backwards.
        assert total(server, "xent_http_requests_total", route="/v1/test/sleep") >= len(before)


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_answers_503_to_new_connections_while_requests_in_flight_finish(tmp_path, workers):
    marks = tmp_path / "marks"
    marks.mkdir()
    server = Server(workers=workers, env={"XENT_TEST_MARK_DIR": str(marks), "XENT_DRAIN_S": "2"})
    with server:
        outcome: list[httpx.Response] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                httpx.post(f"{server.url}/v1/test/sleep", params={"seconds": 5}, timeout=30)
            )
        )
        thread.start()
        wait_for_mark(marks)
        server.process.send_signal(signal.SIGTERM)
        # No keep-alive: every request below opens a new connection.
        fresh = httpx.Client(
            base_url=server.url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0)
        )
        with fresh:
            # The supervisor of 2 workers passes SIGTERM on within ~0.5 s; until then 200s are fine.
            deadline = time.monotonic() + 10
            while (response := fresh.post("/v1/cross-entropy", json=BODY)).status_code == 200:
                assert time.monotonic() < deadline, "never started draining"
                time.sleep(0.05)
            time.sleep(0.2)  # every worker has had the signal by now
            for _ in range(6):  # new connections are accepted and answered 503, by any worker
                assert_problem(response, 503, match="shutting down")
                assert response.headers["retry-after"] == "1"
                assert response.headers["connection"] == "close"
                response = fresh.post("/v1/cross-entropy", json=BODY)
            assert_problem(fresh.get("/readyz"), 503, match="shutting down")
        assert thread.is_alive(), "the slow request ended before the checks: the machine is too slow"
        thread.join(30)
        finished = time.monotonic()
        assert outcome[0].status_code == 200
        assert outcome[0].json()["slept"] == 5
        assert server.process.wait(15) == 0
        assert time.monotonic() - finished < 10
