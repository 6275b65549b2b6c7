"""Idempotency keys of observations, labels and events: a retry counts once and answers like the first."""

import json
import threading

import numpy as np
import pytest

from service.core import Distribution, MonitorStats

from ..conftest import assert_problem
from .monitoring import body, monitor_client

KEY = "Idempotency-Key"


@pytest.fixture
def client(tmp_path):
    with monitor_client(tmp_path) as test_client:
        test_client.put("/v1/monitors/m", json={"n_classes": 4})
        yield test_client


def batch(rng, n=32, k=4, ids=None, labelled=True):
    fields = {"logits": rng.standard_normal((n, k))}
    if labelled:
        fields["labels"] = rng.integers(0, k, n)
    if ids is not None:
        fields["ids"] = ids
    return fields


def post(client, fields, key=None, fmt="json"):
    content, headers = body(fields, fmt)
    if key is not None:
        headers = {**headers, KEY: key}
    return client.post("/v1/monitors/m/observations", content=content, headers=headers)


def totals(client):
    return client.get("/v1/monitors/m").json()["totals"]


def reference_ce(batches):
    """Cross-entropy of all the rows at once, from the core (not through the store)."""
    logits = np.concatenate([b["logits"] for b in batches])
    labels = np.concatenate([b["labels"] for b in batches])
    return MonitorStats.summarise(Distribution.from_logits(logits), labels).cross_entropy()


@pytest.mark.parametrize("fmt", ["json", "binary"])
def test_the_same_key_twice_counts_once_and_replays_the_answer(client, rng, fmt):
    first_batch, second_batch = batch(rng), batch(rng)
    first = post(client, first_batch, "k-1", fmt)
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    again = post(client, first_batch, "k-1", fmt)
    assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
    assert again.content == first.content
    assert post(client, second_batch, "k-2", fmt).status_code == 200
    got = totals(client)
    assert (got["n"], got["n_labelled"]) == (64, 64)
    assert got["cross_entropy"] == pytest.approx(reference_ce([first_batch, second_batch]), rel=1e-12)


def test_the_same_key_with_another_body_is_a_422_and_writes_nothing(client, rng):
    assert post(client, batch(rng), "k").status_code == 200
    answer = post(client, batch(rng), "k")
    assert_problem(answer, 422, "#/Idempotency-Key", "different request")
    assert totals(client)["n"] == 32
    # the same key on another route is another request too
    labels = client.post("/v1/monitors/m/labels", json={"ids": ["x"], "labels": [0]}, headers={KEY: "k"})
    assert_problem(labels, 422, "#/Idempotency-Key")


@pytest.mark.parametrize("value", ["", "x" * 256, "tab\there", "é"])
def test_a_malformed_key_is_a_4xx_naming_the_header(client, rng, value):
    content, headers = body(batch(rng), "json")
    answer = client.post(
        "/v1/monitors/m/observations", content=content, headers={**headers, KEY: value.encode("utf-8")}
    )
    assert 400 <= answer.status_code < 500 and answer.headers["content-type"] == "application/problem+json"
    assert KEY in answer.text
    assert totals(client)["n"] == 0


def test_late_labels_with_a_key_join_once(client, rng):
    ids = [f"r{i}" for i in range(8)]
    fields = batch(rng, n=8, ids=ids, labelled=False)
    assert post(client, fields).json()["n_pending"] == 8
    labels = rng.integers(0, 4, 8)
    send = {"ids": ids, "labels": labels.tolist()}
    first = client.post("/v1/monitors/m/labels", json=send, headers={KEY: "labels-1"})
    again = client.post("/v1/monitors/m/labels", json=send, headers={KEY: "labels-1"})
    assert first.json()["joined"] == 8 and again.content == first.content  # not "8 unknown"
    assert again.headers["idempotent-replayed"] == "true"
    got = totals(client)
    assert (got["n"], got["n_labelled"]) == (8, 8)
    assert got["cross_entropy"] == pytest.approx(reference_ce([{**fields, "labels": labels}]), rel=1e-12)


def test_a_kserve_event_sent_twice_counts_once_without_a_key(client):
    headers = {
        "content-type": "application/json",
        "ce-specversion": "1.0",
        "ce-id": "req-1",
        "ce-source": "http://localhost:9081/",
        "ce-type": "org.kubeflow.serving.inference.response",
    }
    data = json.dumps({"predictions": [[0.1, 0.2, 0.3, 0.4], [0.7, 0.1, 0.1, 0.1]]}).encode()
    first = client.post("/v1/monitors/m/events", content=data, headers=headers)
    again = client.post("/v1/monitors/m/events", content=data, headers=headers)
    assert first.status_code == 200 and again.content == first.content
    assert again.headers["idempotent-replayed"] == "true"
    assert totals(client)["n"] == 2
    other = json.dumps({"predictions": [[0.4, 0.3, 0.2, 0.1]]}).encode()  # the id reused with other data
    assert client.post("/v1/monitors/m/events", content=other, headers=headers).json()["n"] == 1
    assert totals(client)["n"] == 3


def test_a_key_survives_a_server_restart(tmp_path, rng):
    fields = batch(rng)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 4})
        first = post(client, fields, "before-restart")
    with monitor_client(tmp_path) as client:
        again = post(client, fields, "before-restart")
        assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
        assert totals(client)["n"] == 32


def test_concurrent_retries_of_the_same_keys_count_each_batch_once(client, rng):
    """8 threads send the same 24 keyed batches in their own orders: each batch counts once."""
    batches = [batch(rng, n=5) for _ in range(24)]
    answers: list[list[bytes]] = [[b""] * len(batches) for _ in range(8)]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in np.random.default_rng(t).permutation(len(batches)).tolist():
                response = post(client, batches[i], f"batch-{i}")
                assert response.status_code == 200, response.text
                answers[t][i] = response.content
        except BaseException as error:  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert all(answers[t] == answers[0] for t in range(8))
    got = totals(client)
    assert (got["n"], got["n_labelled"]) == (120, 120)
    assert got["cross_entropy"] == pytest.approx(reference_ce(batches), rel=1e-12)
