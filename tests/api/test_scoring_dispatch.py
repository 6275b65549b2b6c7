"""The scoring decorator (small bodies scored on the event loop, large ones in the threadpool)
and the boolean-literal scan that guards NumPy's list conversion."""

import json
import threading
import time

import anyio
import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse, Response

from service.api.deps import INLINE_BYTES, scoring
from service.api.formats.inputs import Body
from service.api.formats.payload import has_boolean_elements
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (b'{"labels": [0, 1], "per_sample": true}', False),  # an option, not an element
        (b'{"labels": [true, 1]}', True),
        (b'{"labels": [0,false]}', True),
        (b'{"labels": [0,\n\t  true]}', True),
        (b'{"labels": [0,' + b" " * 500 + b"true]}", True),  # whitespace longer than the scan window
        (b'{"note": "a,true", "labels": [0]}', True),  # inside a string: a harmless false alarm
        (b'{"truex": [1], "false_alarm": [0]}', False),
        (b'{"logits": [[1e-05, -2.5]], "labels": [0]}', False),  # no "u" or "f" byte: two memchr scans
        (b'{"reduction": "sum", "labels": [0]}', False),  # a "u" in a key: the words are looked for
    ],
)
def test_boolean_scan_matches_the_regular_expression(text: bytes, expected: bool) -> None:
    assert has_boolean_elements(text) is expected


def test_boolean_scan_stops_at_end() -> None:
    text = b'{"labels": [0, 1]}' + b"[true]"
    assert has_boolean_elements(text, len(text) - 6) is False
    assert has_boolean_elements(text) is True


def _app(inline_bytes: int) -> FastAPI:
    app = FastAPI()
    app.state.settings = Settings()

    @scoring(inline_bytes=inline_bytes)
    def where(body: Body) -> Response:
        """Report the thread that scored the body."""
        rows = len(body.array("labels"))
        return JSONResponse({"thread": threading.get_ident(), "rows": rows})

    app.post("/where")(where)
    return app


@pytest.mark.parametrize("n", [10, 20_000])
def test_small_bodies_are_scored_on_the_event_loop_and_large_ones_in_a_thread(n: int) -> None:
    body = json.dumps({"labels": list(range(n))}).encode()
    with TestClient(_app(INLINE_BYTES)) as client:
        loop_thread = client.portal.call(threading.get_ident)  # type: ignore[union-attr]
        answer = client.post("/where", content=body, headers={"content-type": "application/json"}).json()
    assert answer["rows"] == n
    inline = len(body) <= INLINE_BYTES
    assert inline is (n == 10)
    assert (answer["thread"] == loop_thread) is inline


def test_decorated_route_keeps_its_name_and_doc_and_takes_only_the_request() -> None:
    route = next(r for r in _app(0).routes if getattr(r, "path", "") == "/where")
    assert route.name == "where"
    assert route.description == "Report the thread that scored the body."
    assert route.dependant.body_params == [] and route.dependant.query_params == []


@pytest.mark.parametrize("n", [4, 30_000])
def test_bad_input_is_a_problem_inline_and_in_the_threadpool(n: int) -> None:
    logits = np.zeros((n, 2)).tolist()
    logits[-1][1] = True
    with TestClient(create_app(Settings())) as client:
        response = client.post("/v1/cross-entropy", json={"logits": logits, "labels": [0] * n})
    assert_problem(response, 422, f"#/logits/{n - 1}/1", "boolean")


def test_at_most_scoring_threads_bodies_are_scored_at_once() -> None:
    app = FastAPI()
    app.state.settings = Settings()
    app.state.scoring_limiter = anyio.CapacityLimiter(2)
    running, peak, lock = 0, 0, threading.Lock()

    @scoring(inline_bytes=0)
    def slow(body: Body) -> Response:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return JSONResponse({"rows": len(body.array("labels"))})

    app.post("/slow")(slow)

    async def burst() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        statuses: list[int] = []
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            anyio.create_task_group() as group,
        ):

            async def one() -> None:
                response = await client.post("/slow", json={"labels": [0, 1, 2]})
                statuses.append(response.status_code)

            for _ in range(6):
                group.start_soon(one)
        return statuses

    assert anyio.run(burst) == [200] * 6
    assert peak == 2  # six requests, two threads at a time: the others waited their turn


def test_scoring_threads_setting_sizes_the_app_limiter() -> None:
    assert create_app(Settings(scoring_threads=3)).state.scoring_limiter.total_tokens == 3
