"""A monitor's writes (``POST /v1/monitors/{name}/observations`` and ``/labels``) enter by the scoring
dispatch; a name FastAPI would refuse, and every other method or path, still go FastAPI's way."""

import json

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

from .test_dispatch import _counting, _passed_on

BATCH = {"logits": [[2.0, 0.0, -1.0], [0.0, 1.0, 0.5]], "labels": [0, -1], "ids": ["a", "b"]}


def _writes(client: TestClient, name: str) -> list[tuple[int, dict[str, object] | None, dict[str, str]]]:
    """Create `name`, write a batch (twice with one idempotency key), a late label, and bad writes."""
    answers = []

    def note(response):
        body = response.json() if response.content else None
        keep = {k: v for k, v in response.headers.items() if k in ("content-type", "idempotent-replayed")}
        answers.append((response.status_code, body, keep))

    assert client.put(f"/v1/monitors/{name}", json={"n_classes": 3}).status_code == 201
    note(client.post(f"/v1/monitors/{name}/observations", json=BATCH, headers={"Idempotency-Key": "k-1"}))
    note(client.post(f"/v1/monitors/{name}/observations", json=BATCH, headers={"Idempotency-Key": "k-1"}))
    note(client.post(f"/v1/monitors/{name}/observations", json={**BATCH, "ids": None}))
    note(client.post(f"/v1/monitors/{name}/labels", json={"ids": ["b", "c"], "labels": [2, 1]}))
    note(client.post(f"/v1/monitors/{name}/observations", json={"logits": [[1.0, 2.0]]}))  # N×2, not N×3
    note(client.post(f"/v1/monitors/{name}/observations", json=BATCH, headers={"Idempotency-Key": "k" * 256}))
    note(client.post("/v1/monitors/nobody/observations", json=BATCH))
    note(client.post("/v1/monitors/nobody/labels", json={"ids": ["a"], "labels": [0]}))
    note(
        client.post(
            f"/v1/monitors/{name}/observations", content=b"{", headers={"content-type": "application/json"}
        )
    )
    return answers


def test_monitor_writes_are_dispatched_and_answer_as_fastapi_s_way_does(tmp_path):
    app = create_app(Settings(data_dir=tmp_path / "direct"))
    passed: list[tuple[str, str]] = _passed_on(app)  # past the dispatch, to FastAPI's router
    entered: list[tuple[str, str]] = []  # into FastAPI's own outer layers
    app.middleware_stack = _counting(app.middleware_stack, entered)
    with TestClient(app) as client:
        direct = _writes(client, "m1")
        metrics = client.get("/metrics").text
    assert [method for method, _ in passed] == [method for method, _ in entered] == ["PUT", "GET"]
    route = 'route="/v1/monitors/{name}/observations"'
    assert f'xent_http_requests_total{{method="POST",{route},status="200"}} 3.0' in metrics
    assert 'route="/v1/monitors/{name}/labels",status="404"} 1.0' in metrics
    assert f'xent_http_requests_total{{method="POST",{route},status="422"}} 2.0' in metrics

    with TestClient(create_app(Settings(data_dir=tmp_path / "router")), root_path="/xent") as client:
        routed = _writes(client, "m1")  # under a root path FastAPI's router and parameters serve
    assert direct == routed
    assert [status for status, _, _ in direct] == [200, 200, 200, 200, 422, 422, 404, 404, 400]
    assert direct[1][2]["idempotent-replayed"] == "true" and direct[0][1] == direct[1][1]
    assert direct[3][1] == {"monitor": "m1", "joined": 1, "unknown": 1, "duplicate": 0, "expired": 0}


@pytest.mark.parametrize("name", ["-lead", "x" * 129, "a b", "é"])
def test_a_name_fastapi_refuses_goes_to_fastapi_and_is_its_422(tmp_path, name):
    app = create_app(Settings(data_dir=tmp_path))
    passed = _passed_on(app)
    with TestClient(app) as client:
        response = client.post(f"/v1/monitors/{name}/observations", json=BATCH)
    assert_problem(response, 422, match="name")
    assert passed == [("POST", f"/v1/monitors/{name}/observations")]


def test_other_monitor_paths_and_methods_still_take_fastapi_s_way(tmp_path):
    app = create_app(Settings(data_dir=tmp_path))
    passed = _passed_on(app)
    with TestClient(app) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": 2}).status_code == 201
        assert_problem(client.get("/v1/monitors/m/observations"), 405)
        assert_problem(client.post("/v1/monitors/m/observations/x", json=BATCH), 404)
        assert_problem(client.post("/v1/monitors/a/b/observations", json=BATCH), 404)
        assert client.post("/v1/monitors/m/observations", content=json.dumps(BATCH)).status_code == 422
    assert [method for method, _ in passed] == ["PUT", "GET", "POST", "POST"]


def test_named_posts_remember_each_path_s_match_and_start_again_past_their_bound(tmp_path, monkeypatch):
    posts = create_app(Settings(data_dir=tmp_path)).named_posts
    from service.api.middleware import dispatch

    calls: list[str] = []
    real = dispatch.match_named
    monkeypatch.setattr(dispatch, "match_named", lambda p, path: calls.append(path) or real(p, path))
    post, name = posts.match("/v1/monitors/m-1/observations")
    assert (post.route.path, name) == ("/v1/monitors/{name}/observations", "m-1")
    assert posts.match("/v1/monitors/m-1/observations") == (post, "m-1")
    assert posts.match("/v1/monitors/bad name/observations") is None  # FastAPI's pattern refuses it
    assert posts.match("/v1/monitors/bad name/observations") is None
    assert calls == ["/v1/monitors/m-1/observations", "/v1/monitors/bad name/observations"]  # once each
    monkeypatch.setattr(type(posts), "SEEN_PATHS", 3)
    for i in range(5):
        assert posts.match(f"/v1/monitors/m{i}/labels")[1] == f"m{i}"
    assert len(posts._seen) <= 3  # cleared when full: names are the clients'
    assert posts.match("/v1/monitors/m4/labels")[1] == "m4"
