"""A plain small write after the first is stored in one pass (``monitor_plain_write``): the same answer,
statistics and errors as the general reader's; anything it does not take is served the general way,
nothing written twice."""

import json

import numpy as np
import pytest

from service.api.routes import monitor_observations

from .monitoring import monitor_client
from .test_monitor_direct_writes import PLAIN_BODIES, K, plain_and_general

WARM_UP = {"logits": [[0.5, 0.25, -0.5]], "labels": [2]}
#: The bodies of PLAIN_BODIES the one pass stores itself (the others, refused or summarised at once
#: like the last, beyond the raw rows' bound: the general way).
TAKEN = {0, 1, 2}


@pytest.fixture
def taken(monkeypatch) -> list[bool]:
    """Whether each call of the one pass answered (True) or left the request to the general way."""
    seen: list[bool] = []
    one_pass = monitor_observations.plain_write

    async def noted(request, name):
        answer = await one_pass(request, name)
        seen.append(answer is not None)
        return answer

    monkeypatch.setattr(monitor_observations, "plain_write", noted)
    return seen


@pytest.mark.parametrize("at", range(len(PLAIN_BODIES)))
def test_a_plain_write_answers_and_records_as_the_general_reader_does(tmp_path, taken, at):
    body = PLAIN_BODIES[at]
    with monitor_client(tmp_path) as client:
        for name in ("plain", "general"):
            assert client.put(f"/v1/monitors/{name}", json={"n_classes": K}).status_code == 201
            assert client.post(f"/v1/monitors/{name}/observations", json=WARM_UP).status_code == 200
        assert taken == [False, False]  # a first write adds its segment's row: the general way
        plain, series = plain_and_general(client, body)
        assert taken == [False, False, at in TAKEN, False]  # (the general body has an option)
        metrics = client.get("/metrics").text
    if at in TAKEN:
        labelled = sum(1 for y in body["labels"] if y != -1)
        assert plain.json() == {
            "monitor": "plain",
            "n": len(body["labels"]),
            "n_labelled": labelled,
            "n_pending": 0,
            "n_duplicate_ids": 0,
            "buckets": 1,
            "segment": "",
        }
        assert json.loads(series)["points"][-1]["n_labelled"] == labelled + 1
        route = 'route="/v1/monitors/{name}/observations"'
        rows = 1 + len(body["labels"]) + 1 + len(body["labels"])  # both monitors' writes
        assert f"xent_scored_rows_total{{{route}}} {float(rows)}" in metrics


def test_a_write_made_with_a_stale_config_is_made_the_general_way_once(tmp_path, taken):
    rng = np.random.default_rng(5)
    batch = {"logits": rng.standard_normal((8, K)).tolist(), "labels": rng.integers(0, K, 8).tolist()}
    with monitor_client(tmp_path) as client, monitor_client(tmp_path) as other:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        assert client.post("/v1/monitors/m/observations", json=batch).status_code == 200
        assert client.post("/v1/monitors/m/observations", json=batch).status_code == 200
        assert taken == [False, True]
        # another process changes the monitor: this one's cached config is stale
        assert other.put("/v1/monitors/m", json={"n_classes": K, "reservoir_size": 7}).status_code == 200
        answer = client.post("/v1/monitors/m/observations", json=batch)
        assert answer.status_code == 200 and answer.json()["n"] == 8
        assert taken == [False, True, False]  # refused by the store, then written the general way
        assert client.post("/v1/monitors/m/observations", json=batch).status_code == 200
        assert taken == [False, True, False, True]  # the fresh config cached: one pass again
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 4 * 8  # none lost, none twice
        assert client.get("/v1/monitors/m").json()["reservoir_size"] == 7


def test_a_write_to_a_monitor_deleted_meanwhile_is_answered_404(tmp_path, taken):
    batch = {"logits": [[1.0, 0.0, -1.0]], "labels": [0]}
    with monitor_client(tmp_path) as client, monitor_client(tmp_path) as other:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        assert client.post("/v1/monitors/m/observations", json=batch).status_code == 200
        assert client.post("/v1/monitors/m/observations", json=batch).status_code == 200
        assert other.delete("/v1/monitors/m").status_code == 204
        answer = client.post("/v1/monitors/m/observations", json=batch)
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/problem+json"
        assert taken == [False, True, False]
