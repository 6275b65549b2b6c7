"""Issue 6: API keys (off by default), 401 problem+json with a challenge, keys never echoed or logged."""

import logging

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.middleware.auth import load_api_keys
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

KEY = "k3y-Secret_0123456789"
OTHER = "second-key"
BODY = {"logits": [[2.0, 0.0]], "labels": [0]}


def make_client(**settings) -> TestClient:
    return TestClient(create_app(Settings(**settings)))


@pytest.fixture(scope="module")
def guarded() -> TestClient:
    return make_client(api_keys=SecretStr(f"{KEY}, {OTHER}"))


def test_auth_is_off_by_default(client):
    assert client.post("/v1/cross-entropy", json=BODY).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {KEY}"},
        {"Authorization": f"bearer {OTHER}"},
        {"X-API-Key": KEY},
        {"X-API-Key": "wrong", "Authorization": f"Bearer {KEY}"},
    ],
)
def test_valid_key_is_let_in(guarded, headers):
    assert guarded.post("/v1/cross-entropy", json=BODY, headers=headers).status_code == 200


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ({}, "an API key is required"),
        ({"Authorization": f"Basic {KEY}"}, "an API key is required"),
        ({"Authorization": "Bearer "}, "an API key is required"),
        ({"Authorization": "Bearer wrong"}, "not valid"),
        ({"Authorization": f"Bearer {KEY}x"}, "not valid"),
        ({"X-API-Key": KEY[:-1]}, "not valid"),
        ({"X-API-Key": f"{KEY},{OTHER}"}, "not valid"),
    ],
)
def test_missing_or_wrong_key_is_401_with_challenge(guarded, headers, match):
    response = guarded.post("/v1/cross-entropy", json=BODY, headers=headers)
    assert_problem(response, 401, match=match)
    assert response.headers["www-authenticate"] == 'Bearer realm="xent"'


def test_every_v1_path_is_guarded_even_unknown_ones(guarded):
    assert_problem(guarded.post("/v1/no-such-route", json=BODY), 401)
    assert_problem(guarded.get("/v1/cross-entropy"), 401)


def test_health_docs_and_metrics_stay_open(guarded):
    for path in ("/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"):
        assert guarded.get(path).status_code == 200, path


def test_protect_metrics_guards_metrics_but_not_health():
    client = make_client(api_keys=SecretStr(KEY), protect_metrics=True)
    assert_problem(client.get("/metrics"), 401)
    assert client.get("/metrics", headers={"X-API-Key": KEY}).status_code == 200
    assert client.get("/healthz").status_code == 200


def test_keys_are_read_from_a_file(tmp_path):
    path = tmp_path / "keys"
    path.write_text(f"# production\n{KEY}\n\n  {OTHER}  \n")
    settings = Settings(api_keys=SecretStr(str(path)))
    assert load_api_keys(settings) == [KEY.encode(), OTHER.encode()]
    client = TestClient(create_app(settings))
    assert client.post("/v1/cross-entropy", json=BODY, headers={"X-API-Key": OTHER}).status_code == 200
    assert_problem(client.post("/v1/cross-entropy", json=BODY, headers={"X-API-Key": "# production"}), 401)


def test_keys_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("XENT_API_KEYS", f"{KEY},{OTHER}")
    assert load_api_keys(Settings()) == [KEY.encode(), OTHER.encode()]


@pytest.mark.parametrize("value", ["", " , ,"])
def test_empty_key_list_fails_closed_at_startup(value):
    with pytest.raises(ValueError, match="holds no API key"):
        create_app(Settings(api_keys=SecretStr(value)))


def test_keys_are_never_echoed_nor_logged(guarded, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-but-secret-looking-key"
    responses = [
        guarded.post("/v1/cross-entropy", json=BODY, headers={"Authorization": f"Bearer {wrong}"}),
        guarded.post("/v1/cross-entropy", json=BODY, headers={"X-API-Key": KEY}),
        guarded.post("/v1/cross-entropy", json={"labels": [0]}, headers={"X-API-Key": KEY}),
    ]
    assert [r.status_code for r in responses] == [401, 200, 422]
    for response in responses:
        assert wrong not in response.text and KEY not in response.text
        assert wrong not in str(response.headers) and KEY not in str(response.headers)
    assert any(record.name == "xent.access" for record in caplog.records)
    assert wrong not in caplog.text and KEY not in caplog.text
    assert KEY not in repr(Settings(api_keys=SecretStr(KEY)))


def test_cors_is_off_by_default(client):
    response = client.options(
        "/v1/cross-entropy",
        headers={"Origin": "https://dash.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_configured_origins_before_auth():
    client = make_client(api_keys=SecretStr(KEY), cors_origins="https://dash.example, https://b.example")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    allowed = client.options("/v1/cross-entropy", headers={"Origin": "https://dash.example", **preflight})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://dash.example"
    refused = client.options("/v1/cross-entropy", headers={"Origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in refused.headers
    response = client.post(
        "/v1/cross-entropy", json=BODY, headers={"Origin": "https://b.example", "X-API-Key": KEY}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://b.example"
    assert "x-request-id" in response.headers["access-control-expose-headers"].lower()
