"""A monitor's small write runs in the request's own task, as a scoring route's small body does.

The limits layer gives a request whose route may handle it on the event loop no task of its
own (the deadline is a timer on the caller's task); for a monitor's writes the route says so
per request (:func:`service.api.routes.monitor_writes.loop_bytes`): only while the store
commits without blocking (SQLite with ``synchronous=NORMAL``) and for bodies within its bound.
"""

import asyncio

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.api.deps import INLINE_BYTES
from service.api.middleware.dispatch import DirectEntry, NamedPost
from service.api.middleware.limits import Gate, LimitsMiddleware
from service.api.routes.monitor_writes import loop_bytes
from service.app import create_app
from service.settings import Settings

PATH = "/v1/monitors/{name}/observations"


async def _endpoint() -> None:  # (never called: the middleware's app below answers)
    raise AssertionError


def _post(bound: int) -> NamedPost:
    return NamedPost(
        APIRoute(PATH, _endpoint, methods=["POST"]), DirectEntry(_endpoint, "^[a-z]+$", lambda s: bound)
    )


def _task_of(path: str, length: int, posts: list[NamedPost]) -> bool:
    """Whether a request to `path` declaring `length` bytes ran in the caller's own task."""
    ran_in: list[asyncio.Task[None] | None] = []

    async def app(scope, receive, send):
        ran_in.append(asyncio.current_task())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    middleware = LimitsMiddleware(app, settings=Settings(), gate=Gate(), inline_named=posts)

    async def run() -> bool:
        async def send(message):
            pass

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        scope = {"type": "http", "path": path, "headers": [(b"content-length", str(length).encode())]}
        await middleware.limit(scope, receive, send, length)
        return ran_in == [asyncio.current_task()]

    return asyncio.run(run())


def test_a_named_write_within_its_bound_runs_in_the_caller_s_task():
    assert _task_of("/v1/monitors/abc/observations", 100, [_post(100)])


@pytest.mark.parametrize(
    ("path", "length", "bound"),
    [
        ("/v1/monitors/abc/observations", 101, 100),  # over the route's bound
        ("/v1/monitors/abc/observations", 10, 0),  # the route says no (its store would block)
        ("/v1/monitors/ABC/observations", 10, 100),  # a name the route does not take
        ("/v1/monitors/abc/labels", 10, 100),  # another route
    ],
)
def test_any_other_request_gets_a_task_of_its_own(path, length, bound):
    assert not _task_of(path, length, [_post(bound)])


@pytest.mark.parametrize(("synchronous", "expected"), [("NORMAL", INLINE_BYTES), ("FULL", 0)])
def test_loop_bytes_follows_the_store(tmp_path, synchronous, expected):
    app = create_app(Settings(data_dir=tmp_path, sqlite_synchronous=synchronous))
    scope = {"app": app}
    assert loop_bytes(scope) == 0  # the store not open (before the start-up): a task of its own
    with TestClient(app) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": 2}).status_code == 201
        write = client.post("/v1/monitors/m/observations", json={"logits": [[0.0, 1.0]], "labels": [1]})
        assert write.status_code == 200
        assert write.json()["n_labelled"] == 1
        assert loop_bytes(scope) == expected
