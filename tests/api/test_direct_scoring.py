"""Small JSON scoring POSTs served whole by DirectScoring: the same answers, errors, limits, metrics
and log lines as the general layer, which serves everything else (issue #22)."""

import asyncio
import json
import logging
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.middleware.deadline_watch import DeadlineWatch
from service.api.middleware.exchange import ExchangeMiddleware
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

GENERAL = {"content-encoding": "identity"}  # a coded body (even identity) goes the general way
JSON = {"content-type": "application/json"}


def _scope(length: int) -> dict:
    """An ASGI scope of a JSON POST to /v1/cross-entropy declaring `length` body bytes."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/cross-entropy",
        "raw_path": b"/v1/cross-entropy",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }


def _bodies(rng: np.random.Generator) -> dict[str, dict]:
    logits = rng.standard_normal((8, 4))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 8).tolist()
    return {
        "/v1/cross-entropy": {"logits": logits.tolist(), "labels": labels},
        "/v1/divergence": {"p_logits": logits.tolist(), "q_logits": logits[::-1].tolist()},
        "/v1/calibration": {"probs": probs.tolist(), "labels": labels},
        "/v1/apply": {"logits": logits.tolist(), "temperature": 1.5},
    }


@pytest.fixture
def general_calls(monkeypatch) -> list[str]:
    """The paths the general layer served."""
    calls: list[str] = []
    original = ExchangeMiddleware.__call__

    async def counting(self, scope, receive, send):
        if scope["type"] == "http":
            calls.append(scope["path"])
        await original(self, scope, receive, send)

    monkeypatch.setattr(ExchangeMiddleware, "__call__", counting)
    return calls


def _series(client: TestClient, route: str) -> dict[str, float]:
    """The request, error and scored-row counters of `route` from /metrics."""
    found = {}
    for line in client.get("/metrics").text.splitlines():
        if f'route="{route}"' in line and not line.startswith("#") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            if name.startswith(("xent_http_requests_total", "xent_errors_total", "xent_scored_")):
                found[name] = float(value)
    return found


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


CASES = [
    ("valid", None),
    ("option", {"reduction": "sum"}),
    ("unknown field", {"nonsense": 1}),
    ("bad labels", {"labels": [9] * 8}),
    ("malformed", "{not json"),
    ("repeated key", '{"labels": [0], "labels": [1]}'),
    # keys as a plain cross-entropy request's once the repeat is dropped: the plain reader must not take it
    ("repeated plain key", '{"labels": [0], "labels": [1], "logits": [[0.0, 1.0]]}'),
    ("booleans", {"labels": [True] * 8}),
]


@pytest.mark.parametrize(("case", "change"), CASES)
@pytest.mark.parametrize("path", ["/v1/cross-entropy", "/v1/divergence", "/v1/calibration", "/v1/apply"])
def test_the_direct_way_answers_as_the_general_one(rng, general_calls, path, case, change):
    """Status, body, headers and every metric series: equal whichever way the request went."""
    body = _bodies(rng)[path]
    if isinstance(change, dict):
        body = {**body, **change}
    content = change.encode() if isinstance(change, str) else json.dumps(body).encode()
    with TestClient(create_app(Settings())) as client:
        answers, deltas = [], []
        for extra in ({}, GENERAL):
            before = _series(client, path)
            general_calls.clear()
            answer = client.post(path, content=content, headers={"content-type": "application/json", **extra})
            assert general_calls == ([path] if extra else [])  # which way it went
            answers.append(answer)
            deltas.append(_delta(before, _series(client, path)))
    direct, general = answers
    assert direct.status_code == general.status_code
    assert direct.content == general.content
    assert direct.headers["content-type"] == general.headers["content-type"]
    assert re.fullmatch(r"[0-9a-f]{32}", direct.headers["x-request-id"])
    assert deltas[0] == deltas[1] and deltas[0]  # the same series counted once each way
    if case == "valid":
        assert direct.status_code == 200


def test_request_ids_are_echoed_and_logged_once(rng, caplog):
    body = _bodies(rng)["/v1/cross-entropy"]
    with TestClient(create_app(Settings())) as client, caplog.at_level(logging.INFO, logger="xent.access"):
        content = json.dumps(body).encode()
        headers = {"x-request-id": "abc-123", "content-type": "application/json"}
        answer = client.post("/v1/cross-entropy", content=content, headers=headers)
    assert answer.headers["x-request-id"] == "abc-123"
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    line = next(x for x in lines if x["path"] == "/v1/cross-entropy")
    assert sum(x["path"] == "/v1/cross-entropy" for x in lines) == 1
    assert line["request_id"] == "abc-123" and line["status"] == 200 and line["rows"] == 8
    assert line["route"] == "/v1/cross-entropy" and line["bytes_in"] == len(content)
    assert line["bytes_out"] == len(answer.content)


def test_a_body_in_pieces_is_replayed_to_the_general_layer(rng, general_calls):
    """A body that did not come in one message is served by the general layer, from its first byte."""
    content = json.dumps(_bodies(rng)["/v1/cross-entropy"]).encode()
    app = create_app(Settings())
    with TestClient(app) as client:
        whole = client.post("/v1/cross-entropy", content=content, headers=JSON)

    async def run() -> tuple[int, bytes]:
        pieces = [content[:100], content[100:]]
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": pieces.pop(0), "more_body": bool(pieces)}

        async def send(message):
            sent.append(message)

        scope = _scope(len(content))
        general_calls.clear()
        await app(scope, receive, send)
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    status, answer = asyncio.run(run())
    assert general_calls == ["/v1/cross-entropy"]
    assert (status, answer) == (200, whole.content)


def test_answers_are_gzipped_when_accepted_and_counted_as_sent(rng, caplog):
    from service.api.middleware.codings import _gzip

    logits = rng.standard_normal((64, 4))
    body = {"logits": logits.tolist(), "labels": rng.integers(0, 4, 64).tolist(), "per_sample": True}
    with TestClient(create_app(Settings())) as client, caplog.at_level(logging.INFO, logger="xent.access"):
        plain = client.post("/v1/cross-entropy", json=body, headers={"accept-encoding": "identity"})
        zipped = client.post(
            "/v1/cross-entropy", json=body, headers={"accept-encoding": "gzip"}, extensions={"raw": True}
        )
    assert len(plain.content) > 1024
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.content == plain.content  # httpx decoded it
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    sent = [x["bytes_out"] for x in lines if x["path"] == "/v1/cross-entropy"]
    assert sent[0] == len(plain.content)
    assert sent[1] == len(_gzip(plain.content)) < len(plain.content)


def test_keys_limits_and_errors_hold_on_the_direct_way(rng, general_calls):
    key = "k" * 32
    body = _bodies(rng)["/v1/cross-entropy"]
    app = create_app(Settings(api_keys=SecretStr(key), max_concurrency=1))
    with TestClient(app) as client:
        general_calls.clear()
        refused = client.post("/v1/cross-entropy", json=body)
        allowed = client.post("/v1/cross-entropy", json=body, headers={"authorization": f"Bearer {key}"})
        app.state.gate.in_flight += 1  # every slot taken
        try:
            busy = client.post("/v1/cross-entropy", json=body, headers={"x-api-key": key})
        finally:
            app.state.gate.in_flight -= 1
        assert general_calls == []
        assert_problem(refused, 401)
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert allowed.status_code == 200
        assert_problem(busy, 503, match="in flight")
        assert busy.headers["retry-after"]
        assert app.state.gate.in_flight == 0


def test_an_unexpected_error_is_a_logged_500_with_the_request_id(rng, monkeypatch, caplog):
    from service.api.routes import cross_entropy

    def broken(value):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cross_entropy, "json_float", broken)  # the plain and the general answer use it
    with TestClient(create_app(Settings()), raise_server_exceptions=False) as client:
        with caplog.at_level(logging.ERROR, logger="xent.error"):
            answer = client.post("/v1/cross-entropy", json=_bodies(rng)["/v1/cross-entropy"])
        assert_problem(answer, 500)
        assert answer.headers["x-request-id"]
        assert any("a bug" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
        assert client.app.state.gate.in_flight == 0


def test_a_bootstrap_goes_to_a_thread_by_the_general_layer(rng, general_calls):
    body = {**_bodies(rng)["/v1/calibration"], "bootstrap": {"n": 20, "seed": 1}}
    with TestClient(create_app(Settings())) as client:
        general_calls.clear()
        direct = client.post("/v1/calibration", json=body)
        general = client.post("/v1/calibration", json=body, headers=GENERAL)
    assert general_calls == ["/v1/calibration", "/v1/calibration"]  # replayed, then sent that way
    assert direct.status_code == 200 and direct.content == general.content


def _watch_run(timeout: float, receive, cancel_after: float | None = None):
    async def run():
        watch = DeadlineWatch(timeout)
        task = asyncio.ensure_future(watch.first_message(receive))
        if cancel_after is not None:
            await asyncio.sleep(cancel_after)
            task.cancel()
        try:
            return await task, watch
        except asyncio.CancelledError:
            return "cancelled", watch

    return asyncio.run(run())


def test_the_body_watch_stops_a_slow_upload_within_a_period_of_its_deadline():
    async def never():
        await asyncio.sleep(3600)

    async def timed():
        loop = asyncio.get_running_loop()
        start = loop.time()
        watch = DeadlineWatch(0.2)
        assert await watch.first_message(never) is None
        return loop.time() - start, watch

    took, watch = asyncio.run(timed())
    assert 0.2 <= took <= 0.2 + watch.period + 0.05
    assert not watch.waiting and not watch.expired


def test_the_watch_cancels_a_noted_wait_at_its_deadline_and_tells_it_from_an_outside_cancel():
    """As ``DirectScoring._written`` uses it for a monitor's write awaiting its commit."""

    async def waited(watch: DeadlineWatch, due_in: float, cancel_after: float | None) -> tuple[str, float]:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        start, cancelling = loop.time(), task.cancelling()
        if cancel_after is not None:
            loop.call_later(cancel_after, task.cancel)
        watch.watch(task, start + due_in)
        try:
            await asyncio.sleep(3600)
            outcome = "done"
        except asyncio.CancelledError:
            outcome = "deadline" if watch.cancelled(task, cancelling) else "outside"
        finally:
            watch.unwatch(task)
        return outcome, loop.time() - start

    async def run():
        watch = DeadlineWatch(0.5)
        both = await asyncio.gather(waited(watch, 0.2, None), waited(watch, 30.0, 0.1))
        return both, watch

    ((deadline, took), (outside, _)), watch = asyncio.run(run())
    assert (deadline, outside) == ("deadline", "outside")
    assert 0.2 <= took <= 0.2 + watch.period + 0.05
    assert not watch.waiting and not watch.expired


def test_the_body_watch_passes_a_prompt_body_and_an_outside_cancellation():
    async def prompt():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def never():
        await asyncio.sleep(3600)

    message, watch = _watch_run(0.2, prompt)
    assert message["body"] == b"{}" and not watch.waiting
    result, watch = _watch_run(30.0, never, cancel_after=0.3)  # long before the deadline
    assert result == "cancelled" and not watch.waiting and not watch.expired


def test_the_body_watch_arms_one_timer_for_many_prompt_bodies():
    """Each request is noted while it awaits its body, on the one shared timer: never a timer of its own."""

    async def prompt():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def run():
        loop = asyncio.get_running_loop()
        armed: list[float] = []
        call_later = loop.call_later

        def counted(delay, callback, *args, **kwargs):
            armed.append(delay)
            return call_later(delay, callback, *args, **kwargs)

        loop.call_later = counted  # type: ignore[method-assign]
        watch = DeadlineWatch(0.2)
        messages = [await watch.first_message(prompt) for _ in range(1_000)]
        return messages, watch, armed

    messages, watch, armed = asyncio.run(run())
    assert all(m["body"] == b"{}" for m in messages)
    assert armed == [watch.period] and not watch.waiting and not watch.expired


def test_the_body_watch_resumes_a_receive_that_had_to_wait():
    """A body that comes later is the message ``receive`` returns, its waits resumed as ``await`` would."""
    steps: list[str] = []

    async def later():
        steps.append("asked")
        await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # a second suspension: resumed again
        steps.append("came")
        return {"type": "http.request", "body": b"[1]", "more_body": False}

    message, watch = _watch_run(5.0, later)
    assert message == {"type": "http.request", "body": b"[1]", "more_body": False}
    assert steps == ["asked", "came"] and not watch.waiting and not watch.expired


def test_a_cancellation_while_waiting_reaches_receive_itself():
    """Cancelled from outside while ``receive`` waits: ``receive`` sees the cancellation and cleans up."""
    cleaned: list[bool] = []

    async def waits():
        try:
            await asyncio.sleep(3600)
        finally:
            cleaned.append(True)

    result, watch = _watch_run(30.0, waits, cancel_after=0.05)
    assert result == "cancelled" and cleaned == [True]
    assert not watch.waiting and not watch.expired


def test_a_receive_that_swallows_the_deadline_is_still_served_what_it_returns():
    """A ``receive`` that catches the cancellation and answers anyway: its answer, as ``await`` would give."""

    async def stubborn():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0)  # waits once more after the cancellation
            return {"type": "http.disconnect"}

    result, watch = _watch_run(0.1, stubborn)
    assert result == {"type": "http.disconnect"}
    assert not watch.waiting and not watch.expired


async def _served(app, length: int, receive) -> list[dict]:
    """What `app` sends for one POST of `length` bytes to cross-entropy, its lifespan run around it."""
    inbox: asyncio.Queue = asyncio.Queue()
    outbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "lifespan.startup"})
    life = asyncio.ensure_future(
        app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put)
    )
    await outbox.get()
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(app(_scope(length), receive, send), 2)
    await inbox.put({"type": "lifespan.shutdown"})
    await life
    return sent


def test_a_slow_upload_on_the_direct_way_is_answered_503(rng):
    """The client sends its headers and never its body: 503 at the deadline, the slot free."""
    app = create_app(Settings(request_timeout_s=0.1))

    async def receive():
        await asyncio.sleep(3600)

    sent = asyncio.run(_served(app, 200, receive))
    assert sent[0]["status"] == 503
    assert b"did not finish within" in sent[1]["body"]
    assert app.state.gate.in_flight == 0


def test_the_deadline_runs_from_the_request_s_arrival(rng, monkeypatch):
    """A body that comes late leaves its scoring the rest of the deadline only: 503 at a checkpoint."""
    import time

    from service.api.routes import cross_entropy
    from service.core.cancel import checkpoint

    slept: list[bool] = []

    def slow(value):
        if not slept:  # once: the body came at 0.15 s, so 0.25 s is past the 0.2 s deadline, not 0.15 + 0.2
            slept.append(True)
            time.sleep(0.1)
        checkpoint()
        return value

    monkeypatch.setattr(cross_entropy, "json_float", slow)
    content = json.dumps(_bodies(rng)["/v1/cross-entropy"]).encode()
    app = create_app(Settings(request_timeout_s=0.2))

    async def receive():
        await asyncio.sleep(0.15)
        return {"type": "http.request", "body": content, "more_body": False}

    sent = asyncio.run(_served(app, len(content), receive))
    assert sent[0]["status"] == 503
    assert b"did not finish within" in sent[1]["body"]


def test_a_repeated_header_sends_the_request_the_general_way(rng, general_calls):
    """The direct layer reads the headers as one dict: a repeated one is left to the general layer."""
    body = json.dumps(_bodies(rng)["/v1/cross-entropy"]).encode()
    repeated = [("content-type", "application/json"), ("x-request-id", "first"), ("x-request-id", "second")]
    with TestClient(create_app(Settings())) as client:
        general_calls.clear()
        twice = client.post("/v1/cross-entropy", content=body, headers=repeated)
        assert general_calls == ["/v1/cross-entropy"]
        once = client.post("/v1/cross-entropy", content=body, headers={**JSON, "x-request-id": "second"})
        assert general_calls == ["/v1/cross-entropy"]  # served directly
    assert twice.status_code == once.status_code == 200 and twice.content == once.content
    assert twice.headers["x-request-id"] == once.headers["x-request-id"] == "second"


@pytest.mark.parametrize("labels", ["valid", "out of range"])
def test_the_request_s_deadline_is_set_while_it_is_scored_and_restored_after(rng, monkeypatch, labels):
    """The plain way sets the deadline it computed on arrival, and leaves the caller's context as it was."""
    from service.api.routes import cross_entropy
    from service.core.cancel import current_deadline

    seen: list[float | None] = []

    def noted(value):
        seen.append(current_deadline())
        return value

    monkeypatch.setattr(cross_entropy, "json_float", noted)
    body = _bodies(rng)["/v1/cross-entropy"]
    if labels != "valid":
        body["labels"][0] = 99  # refused: the general path answers 422
    content = json.dumps(body).encode()
    app = create_app(Settings(request_timeout_s=7.0))

    async def receive():
        return {"type": "http.request", "body": content, "more_body": False}

    async def run():
        start = asyncio.get_running_loop().time()
        sent = await _served(app, len(content), receive)
        return sent, start, current_deadline()

    sent, start, after = asyncio.run(run())
    assert after is None  # restored in the caller's context
    if labels == "valid":
        assert sent[0]["status"] == 200 and len(seen) == 2
        assert all(start + 7.0 <= s <= start + 7.0 + 1.0 for s in seen)  # from its arrival, not reset
    else:
        assert sent[0]["status"] == 422 and seen == []
