"""The deadline of a small body scored on the event loop: one timer handle that cancels the request's task.

LimitsMiddleware runs such a request in the server's own task (no task of its own), so the
timer cancels that task; these tests check that it cancels only what it should (issue #22).
"""

import asyncio

import pytest

from service.api.middleware.limits import Gate, LimitsMiddleware
from service.settings import Settings

PATH = "/v1/cross-entropy"


def _middleware(app, timeout=0.05):
    gate = Gate()
    settings = Settings(request_timeout_s=timeout)
    return LimitsMiddleware(app, settings=settings, gate=gate, inline_bytes={PATH: 100}), gate


def _scope():
    return {"type": "http", "path": PATH, "headers": [(b"content-length", b"50")]}


async def _receive():
    return {"type": "http.request", "body": b"{}", "more_body": False}


def test_a_request_done_in_time_leaves_no_timer_behind():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware, gate = _middleware(app)
    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        await middleware(_scope(), _receive, send)
        await asyncio.sleep(0.15)  # three deadlines later: the caller's task is not cancelled
        return asyncio.current_task().cancelling()

    assert asyncio.run(run()) == 0
    assert [m.get("status") for m in sent] == [200, None]
    assert gate.in_flight == 0


def test_a_cancellation_from_outside_is_not_taken_for_the_deadline():
    async def app(scope, receive, send):
        await asyncio.sleep(3600)

    middleware, gate = _middleware(app, timeout=30)
    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        task = asyncio.ensure_future(middleware(_scope(), _receive, send))
        await asyncio.sleep(0.01)
        task.cancel()  # the client left, or the server stops
        with pytest.raises(asyncio.CancelledError):
            await task
        return task

    task = asyncio.run(run())
    assert task.cancelled()
    assert sent == []  # no 503: nobody is waiting for one
    assert gate.in_flight == 0


def test_the_deadline_after_the_response_started_raises_timeout():
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await asyncio.sleep(3600)  # the body never comes

    middleware, gate = _middleware(app)
    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        with pytest.raises(TimeoutError):
            await middleware(_scope(), _receive, send)
        return asyncio.current_task().cancelling()

    assert asyncio.run(run()) == 0  # the timer's own cancellation is taken back
    assert [m["status"] for m in sent] == [200]  # too late for a 503
    assert gate.in_flight == 0


def test_the_deadline_before_the_response_answers_503():
    async def app(scope, receive, send):
        await asyncio.sleep(3600)

    middleware, gate = _middleware(app)
    sent = []

    async def send(message):
        sent.append(message)

    async def run():
        await middleware(_scope(), _receive, send)
        return asyncio.current_task().cancelling()

    assert asyncio.run(run()) == 0
    assert sent[0]["status"] == 503
    assert gate.in_flight == 0
