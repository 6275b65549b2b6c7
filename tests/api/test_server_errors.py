"""Issue 6: a bug in a route is a problem+json 500 that carries X-Request-ID, is logged once
with its traceback, counted once as ``internal``, and never reaches the server as an exception."""

import json
import logging

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem


def boom() -> None:
    raise RuntimeError("a bug, with a secret-looking value 0xdeadbeef")


def app_with_a_bug() -> FastAPI:
    app = create_app(Settings())
    app.add_api_route("/v1/test/boom", boom, methods=["POST"], include_in_schema=False)
    app.add_api_route("/test/boom", boom, methods=["GET"], include_in_schema=False)
    return app


@pytest.mark.parametrize(("method", "path"), [("POST", "/v1/test/boom"), ("GET", "/test/boom")])
def test_an_unhandled_error_is_a_problem_500_with_the_request_id(caplog, method, path):
    caplog.set_level(logging.INFO)
    # raise_server_exceptions=True (the default): the test fails if the exception reaches the server.
    with TestClient(app_with_a_bug()) as client:
        response = client.request(method, path, headers={"X-Request-ID": "trace-500"})
        assert_problem(response, 500, match="internal error; the request was not scored")
        assert response.headers["x-request-id"] == "trace-500"
        assert "deadbeef" not in response.text  # internals are not leaked
        assert client.app.state.gate.in_flight == 0
        metrics = client.get("/metrics").text
    assert f'xent_http_requests_total{{method="{method}",route="{path}",status="500"}} 1.0' in metrics
    assert f'xent_errors_total{{route="{path}",type="internal"}} 1.0' in metrics
    access = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    lines = [line for line in access if line["path"] == path]
    assert len(lines) == 1
    assert (lines[0]["request_id"], lines[0]["status"], lines[0]["error"]) == ("trace-500", 500, "internal")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "xent.error"
    assert "trace-500" in errors[0].getMessage()
    assert errors[0].exc_info is not None and errors[0].exc_info[0] is RuntimeError


def test_a_generated_request_id_is_echoed_on_a_500_too():
    with TestClient(app_with_a_bug()) as client:
        response = client.post("/v1/test/boom")
    assert response.status_code == 500
    assert len(response.headers["x-request-id"]) == 32
