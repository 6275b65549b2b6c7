"""Scoring POSTs go straight to their endpoints (api.middleware.dispatch); all else through FastAPI."""

import json
import logging

from fastapi.testclient import TestClient

from service.api.middleware import dispatch
from service.api.routes import cross_entropy
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

BODY = {"logits": [[2.0, 0.0], [0.0, 1.0]], "labels": [0, 1]}


def _dispatch_of(app) -> dispatch.ScoringDispatch:
    """Build `app`'s middleware stack (kept for its requests) and return its dispatch layer."""
    app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, dispatch.ScoringDispatch):
        layer = layer.app
    return layer


def _counting(inner, calls: list[tuple[str, str]]):
    """An ASGI app that notes each HTTP request's (method, path) in `calls`, then runs `inner`."""

    async def counting(scope, receive, send):
        if scope["type"] == "http":
            calls.append((scope["method"], scope["path"]))
        await inner(scope, receive, send)

    return counting


def _passed_on(app) -> list[tuple[str, str]]:
    """The (method, path) list `app`'s dispatch passes on to FastAPI, filled as requests come."""
    layer = _dispatch_of(app)
    passed: list[tuple[str, str]] = []
    layer.app = _counting(layer.app, passed)
    return passed


def test_every_scoring_route_is_dispatched_and_nothing_else():
    assert sorted(_dispatch_of(create_app(Settings())).routes) == [
        "/v1/apply",
        "/v1/calibration",
        "/v1/cross-entropy",
        "/v1/divergence",
        "/v1/logprobs",
        "/v1/recalibrate",
        "/v1/reliability-diagram",
        "/v1/temperature",
        *(f"/v2/models/{name}/infer" for name in ("apply", "calibration", "cross-entropy", "divergence")),
        *(f"/v2/models/{name}/infer" for name in ("recalibrate", "temperature")),
    ]


def test_a_dispatched_request_is_scored_counted_and_logged_like_any_other(caplog):
    caplog.set_level(logging.INFO)
    with TestClient(create_app(Settings())) as client:
        response = client.post("/v1/cross-entropy", json=BODY, headers={"X-Request-ID": "fast-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "fast-1"
        metrics = client.get("/metrics").text
    assert 'xent_http_requests_total{method="POST",route="/v1/cross-entropy",status="200"} 1.0' in metrics
    assert 'xent_scored_rows_total{route="/v1/cross-entropy"} 2.0' in metrics
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    line = next(line for line in access if line["request_id"] == "fast-1")
    assert (line["route"], line["status"], line["rows"]) == ("/v1/cross-entropy", 200, 2)


def test_errors_of_a_dispatched_request_are_the_app_s_problems():
    with TestClient(create_app(Settings())) as client:
        assert_problem(client.post("/v1/cross-entropy", json={"logits": [[1.0]], "labels": [3]}), 422)
        csv = client.post("/v1/cross-entropy", content=b"{", headers={"content-type": "text/csv"})
        assert_problem(csv, 415)
        assert_problem(client.post("/v1/cross-entropy", json={**BODY, "reduction": "median"}), 422)


def test_a_bug_in_a_dispatched_route_is_one_logged_500(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in scoring")

    # Used by the plain answer (middleware/direct.py) and the general one alike.
    monkeypatch.setattr(cross_entropy, "json_float", broken)
    with TestClient(create_app(Settings())) as client:
        response = client.post("/v1/cross-entropy", json=BODY, headers={"X-Request-ID": "bug-1"})
        assert_problem(response, 500, match="internal error")
        metrics = client.get("/metrics").text
    assert 'xent_errors_total{route="/v1/cross-entropy",type="internal"} 1.0' in metrics
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].name == "xent.error" and "bug-1" in errors[0].getMessage()


def test_other_methods_paths_and_mounts_go_through_fastapi():
    app = create_app(Settings())
    passed = _passed_on(app)
    with TestClient(app) as client:
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200
        assert passed == []  # dispatched
        assert_problem(client.get("/v1/cross-entropy"), 405)
        assert_problem(client.post("/v1/cross-entropy/x", json=BODY), 404)
        assert client.get("/healthz").status_code == 200
    assert passed == [("GET", "/v1/cross-entropy"), ("POST", "/v1/cross-entropy/x"), ("GET", "/healthz")]
    app = create_app(Settings())
    passed = _passed_on(app)
    with TestClient(app, root_path="/xent") as client:
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200
    assert [method for method, _ in passed] == ["POST"]  # under a root path FastAPI's router matches


def _outer_calls(app) -> list[tuple[str, str]]:
    """The (method, path) of each request that enters FastAPI's own outer middleware."""
    calls: list[tuple[str, str]] = []
    app.middleware_stack = _counting(app.build_middleware_stack(), calls)
    return calls


def test_scoring_posts_enter_at_xent_s_own_middleware():
    app = create_app(Settings())
    calls = _outer_calls(app)
    with TestClient(app) as client:
        response = client.post("/v1/cross-entropy", json=BODY, headers={"X-Request-ID": "front-1"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "front-1"
        assert_problem(client.post("/v1/cross-entropy", json={"logits": [[1.0]], "labels": [3]}), 422)
        assert client.get("/healthz").status_code == 200
        assert_problem(client.get("/v1/cross-entropy"), 405)
    assert calls == [("GET", "/healthz"), ("GET", "/v1/cross-entropy")]  # FastAPI's outer layers: not
    # for the scoring POSTs, which still passed the request id, metrics and limits layers above.


def test_with_fastapi_telemetry_or_a_root_path_every_request_takes_fastapi_s_way(monkeypatch):
    app = create_app(Settings())
    telemetry = getattr(app, "_native_telemetry", None)
    if telemetry is not None:
        monkeypatch.setattr(telemetry, "enabled", lambda: True)
        monkeypatch.setattr(type(app).__mro__[1], "__call__", _plain_starlette_call)
        calls = _outer_calls(app)
        with TestClient(app) as client:
            assert client.post("/v1/cross-entropy", json=BODY).status_code == 200
        assert calls == [("POST", "/v1/cross-entropy")]
        monkeypatch.undo()
    app = create_app(Settings())
    calls = _outer_calls(app)
    with TestClient(app, root_path="/xent") as client:
        assert client.post("/v1/cross-entropy", json=BODY).status_code == 200
    assert calls == [("POST", "/v1/cross-entropy")]


async def _plain_starlette_call(self, scope, receive, send):
    """FastAPI's ``__call__`` without the OpenTelemetry wrapping (no provider in the tests)."""
    scope["app"] = self
    await self.middleware_stack(scope, receive, send)
