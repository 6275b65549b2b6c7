"""Monitor CRUD, and every bad input or unavailable store as problem+json."""

import sqlite3
import time

import numpy as np
import pytest

from service.store import DATABASE_FILE

from ..conftest import assert_problem
from .monitoring import monitor_client, observe


@pytest.fixture
def client(tmp_path):
    with monitor_client(tmp_path, max_monitors=3, max_query_points=100) as test_client:
        yield test_client


def test_put_creates_then_updates_and_get_lists_it(client):
    created = client.put("/v1/monitors/fraud.v2", json={"class_names": ["ok", "fraud", "review"]})
    assert created.status_code == 201 and created.headers["location"] == "/v1/monitors/fraud.v2"
    config = created.json()
    assert (config["n_classes"], config["bucket_s"], config["retention_s"]) == (3, 60, 30 * 86400)
    updated = client.put("/v1/monitors/fraud.v2", json={"n_classes": 3, "retention_s": 86400})
    assert updated.status_code == 200 and updated.json()["retention_s"] == 86400
    assert updated.json()["created_at"] == config["created_at"]
    assert [m["name"] for m in client.get("/v1/monitors").json()["monitors"]] == ["fraud.v2"]
    detail = client.get("/v1/monitors/fraud.v2").json()
    assert detail["totals"] == {
        "n": 0,
        "n_labelled": 0,
        "cross_entropy": None,
        "accuracy": None,
        "first_bucket": None,
        "last_bucket": None,
        "segments": [],
        "language_model": None,
    }


def test_totals_count_every_row(client, rng):
    client.put("/v1/monitors/m", json={"n_classes": 3, "class_names": ["a", "b", "c"]})
    logits = rng.standard_normal((10, 3))
    labels = ["a", "c", None, "b", "b", None, "a", "c", "c", "a"]
    assert observe(client, "m", {"logits": logits, "labels": labels, "segment": "v1"}).status_code == 200
    totals = client.get("/v1/monitors/m").json()["totals"]
    assert (totals["n"], totals["n_labelled"], totals["segments"]) == (10, 8, ["v1"])
    index = {"a": 0, "b": 1, "c": 2}
    known = [i for i, y in enumerate(labels) if y is not None]
    y = np.array([index[labels[i]] for i in known])
    z = logits[known]
    expected = np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(known)), y])
    assert totals["cross_entropy"] == pytest.approx(expected, rel=1e-12)


def test_put_refuses_a_change_of_k(client):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    assert_problem(client.put("/v1/monitors/m", json={"n_classes": 4}), 409, "#/n_classes", "cannot change")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"n_classes": 3, "class_names": ["a", "b"]}, "class_names"),
        ({"class_names": ["a", "a"]}, "distinct"),
        ({"binary": True, "n_classes": 3}, "n_classes"),
        ({}, "required"),
        ({"n_classes": 1}, "n_classes"),
        ({"n_classes": 3, "bucket_s": 600, "retention_s": 300}, "retention_s"),
        ({"n_classes": 3, "colour": "red"}, "colour"),
    ],
)
def test_put_rejects_disagreeing_or_bad_fields(client, spec, match):
    assert_problem(client.put("/v1/monitors/m", json=spec), 422, match=match)


def test_put_rejects_a_bad_name(client):
    assert_problem(client.put("/v1/monitors/-bad!", json={"n_classes": 2}), 422, match="name")


def test_caps_on_monitors_and_reservoir_are_4xx_naming_the_setting(client):
    for i in range(3):
        client.put(f"/v1/monitors/m{i}", json={"n_classes": 2})
    assert_problem(client.put("/v1/monitors/m3", json={"n_classes": 2}), 409, "#/name", "XENT_MAX_MONITORS")
    too_big = {"n_classes": 2, "reservoir_size": 10**9}
    assert_problem(client.put("/v1/monitors/m0", json=too_big), 422, "#/reservoir_size", "XENT_MAX_RESERVOIR")


def test_delete_then_everything_is_404(client, rng):
    client.put("/v1/monitors/m", json={"n_classes": 2})
    assert client.delete("/v1/monitors/m").status_code == 204
    logits = {"logits": rng.standard_normal((3, 2)).tolist()}
    for method, path, kwargs in [
        ("DELETE", "", {}),
        ("GET", "", {}),
        ("POST", "/observations", {"json": logits}),
        ("POST", "/labels", {"json": {"ids": ["a"], "labels": [0]}}),
        ("GET", "/metrics", {}),
        ("GET", "/reliability-diagram", {}),
        ("POST", "/temperature", {}),
        ("GET", "/drift", {}),
    ]:
        answer = client.request(method, f"/v1/monitors/m{path}", **kwargs)
        assert_problem(answer, 404, "#/name", "no monitor named 'm'")


@pytest.mark.parametrize(
    ("fields", "pointer", "match"),
    [
        ({"logits": np.zeros((2, 4))}, "#/logits", "N×3"),
        ({"logits": np.zeros(2)}, "#/logits", "N×3"),
        ({"logits": np.zeros((2, 3)), "labels": [0, 3]}, "#/labels/1", r"\[0, 3\)"),
        ({"logits": np.zeros((2, 3)), "labels": [0]}, None, "labels"),
        ({"logits": np.zeros((2, 3)), "ids": ["a"]}, "#/ids", "one id"),
        ({"logits": np.zeros((2, 3)), "ids": ["a", 7]}, "#/ids/1", "string"),
        ({"logits": np.zeros((2, 3)), "segment": "x" * 65}, None, "segment"),
        ({"logits": np.zeros((2, 3)), "labels": ["a", "b"]}, "#/labels/0", "class name"),
        ({"logits": np.zeros((2, 3)), "colour": 1}, None, "colour"),
        ({"probs": np.full((2, 3), 0.5)}, "#/probs/0", "sum"),
    ],
)
def test_observations_reject_bad_fields(client, fields, pointer, match):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    assert_problem(observe(client, "m", fields), 422, pointer, match)


def test_timestamps_outside_retention_or_future_are_422_naming_the_row(client):
    client.put("/v1/monitors/m", json={"n_classes": 2, "retention_s": 3600})
    now = time.time()
    old = {"logits": np.zeros((3, 2)), "timestamps": [now, now - 7200, now]}
    assert_problem(observe(client, "m", old), 422, "#/timestamps/1", "retention")
    ahead = {"logits": np.zeros((3, 2)), "timestamps": [now, now, now + 600]}
    assert_problem(observe(client, "m", ahead), 422, "#/timestamps/2", "300 s ahead")
    assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0  # nothing half-written


def test_labels_reject_mismatched_lengths_and_bad_classes(client):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    assert_problem(client.post("/v1/monitors/m/labels", json={"ids": ["a", "b"], "labels": [0]}), 422)
    assert_problem(
        client.post("/v1/monitors/m/labels", json={"ids": ["a"], "labels": [5]}), 422, match="labels"
    )
    assert_problem(client.post("/v1/monitors/m/labels", content=b"[1]"), 400)


@pytest.mark.parametrize(
    ("params", "pointer", "match"),
    [
        ({"window": "1h", "step": "7"}, "#/step", "multiple of the bucket width"),
        ({"window": "30d", "step": "1m"}, "#/step", "XENT_MAX_QUERY_POINTS=100"),
        ({"window": "soon"}, "#/window", "duration"),
        ({"from": "yesterday"}, "#/from", "ISO 8601"),
        ({"from": "100", "window": "1h"}, "#/window", "one of them"),
        ({"n_bins": "16"}, "#/n_bins", "divide 2520"),
    ],
)
def test_metrics_query_errors_name_the_parameter(client, params, pointer, match):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    assert_problem(client.get("/v1/monitors/m/metrics", params=params), 422, pointer, match)


def test_refit_without_labelled_rows_is_422(client):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    assert_problem(client.post("/v1/monitors/m/temperature"), 422, "#/window", "no reservoir rows")
    assert_problem(client.get("/v1/monitors/m/reliability-diagram"), 422, "#/window", "no labelled rows")


def test_unopenable_data_dir_is_503_with_retry_after(tmp_path):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with monitor_client(blocker / "sub") as client:
        assert client.get("/healthz").status_code == 200  # scoring still serves
        answer = client.put("/v1/monitors/m", json={"n_classes": 2})
        assert_problem(answer, 503, match="monitor store unavailable")
        assert answer.headers["retry-after"] == "1"


def test_locked_database_is_503_and_nothing_is_written(tmp_path, rng):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 2})
        store = client.app.state.monitors.get()
        store.busy_timeout_s = 0.05  # wait 50 ms for the lock, not 5 s: connections made from now on
        for connection in store._connections:  # and those the app's threads made already
            connection.execute("PRAGMA busy_timeout=50")
        locker = sqlite3.connect(tmp_path / DATABASE_FILE, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            fields = {"logits": rng.standard_normal((4, 2)), "labels": [0, 1, 1, 0]}
            answer = observe(client, "m", fields)
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert_problem(answer, 503, match="database is locked")
        assert answer.headers["retry-after"] == "1"
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0


def test_monitor_routes_need_the_api_key_when_keys_are_set(tmp_path):
    with monitor_client(tmp_path, api_keys="k1") as client:
        assert_problem(client.get("/v1/monitors"), 401)
        assert_problem(client.put("/v1/monitors/m", json={"n_classes": 2}), 401)
        headers = {"Authorization": "Bearer k1"}
        assert client.put("/v1/monitors/m", json={"n_classes": 2}, headers=headers).status_code == 201
        assert client.get("/v1/monitors/m/metrics", headers={"X-API-Key": "k1"}).status_code == 200


def test_a_body_over_the_size_limit_is_413(tmp_path):
    with monitor_client(tmp_path, max_body_bytes=1000) as client:
        client.put("/v1/monitors/m", json={"n_classes": 2})
        assert_problem(observe(client, "m", {"logits": np.zeros((200, 2))}), 413)
