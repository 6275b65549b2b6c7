"""Issue 6: concurrency cap, compute deadline and draining answer 503 problem+json with Retry-After."""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from tests.conftest import assert_problem
from tests.serving import slow_app

BODY = {"logits": [[2.0, 0.0]], "labels": [0]}


def make_client(**settings) -> TestClient:
    slow_app.ENTERED.clear()
    return TestClient(slow_app.create_app(Settings(**settings)))


def in_background(client: TestClient, seconds: float) -> tuple[threading.Thread, list]:
    out: list = []
    thread = threading.Thread(
        target=lambda: out.append(client.post("/v1/test/sleep", params={"seconds": seconds}))
    )
    thread.start()
    assert slow_app.ENTERED.wait(5)
    return thread, out


def test_concurrency_cap_refuses_with_503_and_retry_after():
    with make_client(max_concurrency=1, retry_after_s=2) as client:
        thread, out = in_background(client, 0.5)
        response = client.post("/v1/cross-entropy", json=BODY)
        assert_problem(response, 503, match="1 requests are in flight, the limit is 1")
        assert response.headers["retry-after"] == "2"
        assert client.get("/healthz").status_code == 200  # probes are not capped
        thread.join()
        assert out[0].status_code == 200
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200
        assert client.app.state.gate.in_flight == 0


def test_requests_under_the_cap_run_concurrently():
    with make_client(max_concurrency=4) as client:
        started = time.perf_counter()
        threads = [
            threading.Thread(
                target=client.post, args=("/v1/test/sleep",), kwargs={"params": {"seconds": 0.3}}
            )
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert time.perf_counter() - started < 1.1  # 4 × 0.3 s in series would be 1.2 s


def test_deadline_answers_503_at_once_and_holds_the_slot_until_the_thread_ends():
    with make_client(request_timeout_s=0.2, max_concurrency=1) as client:
        started = time.perf_counter()
        response = client.post("/v1/test/sleep", params={"seconds": 1.0})
        elapsed = time.perf_counter() - started
        assert_problem(response, 503, match="did not finish within 0.2 s")
        assert response.headers["retry-after"] == "1"
        assert elapsed < 0.9
        # The abandoned kernel still occupies its thread: the cap still counts it.
        assert_problem(client.post("/v1/cross-entropy", json=BODY), 503, match="in flight")
        deadline = time.monotonic() + 5
        while client.app.state.gate.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.app.state.gate.in_flight == 0
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200


def test_fast_requests_are_untouched_by_the_deadline():
    with make_client(request_timeout_s=5) as client:
        assert client.post("/v1/test/sleep", params={"seconds": 0.05}).json()["slept"] == 0.05


def test_draining_refuses_new_scoring_requests_but_not_probes():
    with make_client() as client:
        client.app.state.gate.draining = True
        response = client.post("/v1/cross-entropy", json=BODY)
        assert_problem(response, 503, match="shutting down")
        assert response.headers["retry-after"] == "1"
        assert response.headers["connection"] == "close"
        assert client.get("/healthz").status_code == 200
        assert_problem(client.get("/readyz"), 503, match="shutting down")


@pytest.mark.parametrize("field", ["max_concurrency", "request_timeout_s"])
def test_limits_refuse_nonsense_settings(field):
    with pytest.raises(ValueError):
        Settings(**{field: 0})
