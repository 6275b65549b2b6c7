"""Issue 6: concurrency cap, compute deadline and draining answer 503 problem+json with Retry-After."""

import json
import logging
import threading
import time

import numpy as np
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


def test_deadline_answers_503_at_once_and_a_call_without_checkpoints_holds_the_slot_until_it_returns():
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


def wait_for_free_slot(client: TestClient, timeout: float) -> float:
    """Seconds until no request holds a slot (or `timeout`)."""
    started = time.monotonic()
    while client.app.state.gate.in_flight and time.monotonic() - started < timeout:
        time.sleep(0.01)
    return time.monotonic() - started


def test_deadline_stops_the_work_at_a_checkpoint_and_frees_the_slot(caplog):
    caplog.set_level(logging.INFO)
    slow_app.SPUN.clear()
    with make_client(request_timeout_s=0.3, max_concurrency=1) as client:
        started = time.monotonic()
        response = client.post("/v1/test/spin", params={"seconds": 30})
        assert_problem(response, 503, match="did not finish within 0.3 s; it was stopped")
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-request-id"]
        assert time.monotonic() - started < 5
        assert wait_for_free_slot(client, 10) < 5  # not the 30 s the work would have taken
        assert [kind for kind, _ in slow_app.SPUN] == ["stopped"]
        assert slow_app.SPUN[0][1] - started < 5
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200  # the slot is free
        metrics = client.get("/metrics").text
    assert 'xent_errors_total{route="/v1/test/spin",type="timeout"} 1.0' in metrics
    assert 'type="internal"' not in metrics
    assert 'status="500"' not in metrics
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    spins = [line for line in lines if line["path"] == "/v1/test/spin"]
    assert [(line["status"], line["error"]) for line in spins] == [(503, "timeout")]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records


def test_deadline_stops_a_real_bootstrap_that_would_run_for_many_seconds(rng):
    n = 20_000  # 10,000 resamples of 20,000 × 10: tens of seconds of NumPy on this machine
    probs = rng.dirichlet(np.ones(10), size=n)
    body = {
        "probs": {"shape": [n, 10], "datatype": "FP64", "data": probs.ravel().tolist()},
        "labels": rng.integers(0, 10, n).tolist(),
        "bootstrap": {"n": 10_000},
    }
    with make_client(request_timeout_s=1.0, max_concurrency=1) as client:
        response = client.post("/v1/calibration", json=body)
        assert_problem(response, 503, match="did not finish within 1 s")
        assert wait_for_free_slot(client, 20) < 3
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


def test_small_inline_requests_skip_the_task_and_still_time_out_on_a_slow_upload():
    """A small cross-entropy body is scored on the loop; a client that never finishes its body gets 503."""
    import asyncio

    from service.api.middleware.limits import Gate, LimitsMiddleware

    calls = []

    async def app(scope, receive, send):
        calls.append(asyncio.current_task())
        await receive()  # waits forever: the body never arrives

    gate = Gate()
    settings = Settings(request_timeout_s=0.05)
    middleware = LimitsMiddleware(app, settings=settings, gate=gate, inline_bytes={"/v1/cross-entropy": 100})
    sent = []

    async def receive():
        await asyncio.sleep(3600)

    async def send(message):
        sent.append(message)

    async def run(length: int):
        scope = {
            "type": "http",
            "path": "/v1/cross-entropy",
            "headers": [(b"content-length", str(length).encode())],
        }
        outer = asyncio.current_task()
        await middleware(scope, receive, send)
        return outer

    outer = asyncio.run(run(50))
    assert calls[-1] is outer  # no task of its own
    assert sent[0]["status"] == 503 and gate.in_flight == 0
    sent.clear()
    outer = asyncio.run(run(500))  # too large to score inline: a task of its own
    assert calls[-1] is not outer
    assert sent[0]["status"] == 503


def _abandoned(error: Exception, caplog) -> tuple[list, list]:
    """Run a /v1 request that raises `error` 0.1 s in, past its 0.02 s deadline.

    Returns the messages sent and the ``xent.error`` records; the gate must be empty again.
    """
    import asyncio

    from service.api.middleware.limits import Gate, LimitsMiddleware

    async def app(scope, receive, send):
        await asyncio.sleep(0.1)
        raise error

    gate = Gate()
    middleware = LimitsMiddleware(app, settings=Settings(request_timeout_s=0.02), gate=gate)
    sent: list = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def run():
        await middleware({"type": "http", "path": "/v1/calibration", "headers": []}, receive, send)
        await asyncio.sleep(0.3)

    with caplog.at_level(logging.ERROR, logger="xent.error"):
        asyncio.run(run())
    assert sent[0]["status"] == 503 and gate.in_flight == 0
    return sent, [r for r in caplog.records if r.name == "xent.error"]


def test_an_abandoned_request_that_fails_later_is_logged_once(caplog):
    """Past its deadline a request is answered 503; if it then raises, the error reaches xent.error."""
    _, records = _abandoned(RuntimeError("broke after the deadline"), caplog)
    assert len(records) == 1 and "broke after the deadline" in str(records[0].exc_info[1])


def test_a_client_leaving_after_its_timeout_503_is_not_logged_as_an_error(caplog):
    """A slow upload past the deadline gets its 503; the client then hangs up mid-body: no traceback."""
    from starlette.requests import ClientDisconnect

    _, records = _abandoned(ClientDisconnect(), caplog)  # what Starlette raises once the client has gone
    assert not records


def _idle_run(script) -> list[float]:
    """Run `script(gate)` on a loop with a 0.05 s idle hook; return when (loop time) it fired."""
    import asyncio

    from service.api.middleware.limits import Gate

    fired: list[float] = []

    async def run():
        loop = asyncio.get_running_loop()
        gate = Gate(on_idle=lambda: fired.append(loop.time()), idle_s=0.05)
        await script(gate, loop)
        await asyncio.sleep(0.2)
        assert gate.in_flight == 0

    asyncio.run(run())
    return fired


def test_the_idle_hook_fires_once_idle_s_after_the_last_request_left():
    import asyncio

    left = []

    async def script(gate, loop):
        for _ in range(3):  # three requests back to back: one idle period after the last
            gate.enter()
            await asyncio.sleep(0.01)
            gate.leave()
        left.append(loop.time())

    fired = _idle_run(script)
    assert len(fired) == 1
    assert 0.05 <= fired[0] - left[0] < 0.15


def test_the_idle_hook_waits_while_requests_are_in_flight_and_after_one_that_came_and_went():
    import asyncio

    marks = {}

    async def script(gate, loop):
        gate.enter()
        gate.leave()  # arms the timer for t0 + 0.05
        await asyncio.sleep(0.03)
        gate.enter()  # in flight when the timer comes due: no call
        await asyncio.sleep(0.05)
        gate.leave()
        await asyncio.sleep(0.02)
        gate.enter()
        gate.leave()  # came and went: the wait restarts from here
        marks["last"] = loop.time()

    fired = _idle_run(script)
    assert len(fired) == 1
    assert fired[0] - marks["last"] >= 0.05


def test_no_idle_hook_no_timer():
    import asyncio

    from service.api.middleware.limits import Gate

    async def run():
        gate = Gate()
        gate.enter()
        gate.leave()
        return gate._timer

    assert asyncio.run(run()) is None


def _limits_of(app):
    from service.api.middleware.limits import LimitsMiddleware

    layer = app.middleware_stack
    while not isinstance(layer, LimitsMiddleware):
        layer = layer.app
    return layer


def test_the_app_trims_malloc_when_idle_unless_turned_off():
    from service.api.serving import trim_malloc
    from service.app import create_app

    with TestClient(create_app(Settings(idle_trim_s=0.5))) as client:
        gate = _limits_of(client.app).gate
        assert gate.on_idle is trim_malloc and gate.idle_s == 0.5
    with TestClient(create_app(Settings(idle_trim_s=0))) as client:
        assert _limits_of(client.app).gate.on_idle is None
    with pytest.raises(ValueError):
        Settings(idle_trim_s=-1)


def test_the_app_runs_small_bodies_of_its_linear_routes_without_a_task_of_their_own():
    """The limits know which routes score small bodies on the loop (FastAPI 0.165 hid them once)."""
    from service.api.deps import INLINE_BYTES
    from service.app import create_app

    with TestClient(create_app(Settings())) as client:
        inline = _limits_of(client.app).inline_bytes
        for path in ("/v1/cross-entropy", "/v1/divergence", "/v1/apply"):
            assert inline[path] == INLINE_BYTES
        for path in ("/v1/calibration", "/v1/temperature", "/v1/recalibrate"):  # fits and bootstraps
            assert path not in inline
        response = client.post("/v1/cross-entropy", json={"logits": [[2.0, 0.0]], "labels": [0]})
        assert response.status_code == 200
