"""A monitor's small JSON write is served whole by the direct layer, as a small scoring request is.

Its answers, its statistics and its errors are those of the general path: a plain body
(``{"logits", "labels"}`` and nothing else) is compared with the same body plus an option set to
its default (``"normalize": false``), which the general reader serves; its deadline is a timer
on the request's task, and a write stopped by it answers 503 and writes nothing.
"""

import asyncio
import json
import time

import numpy as np
import pytest

from service.api.deps import INLINE_BYTES
from service.api.middleware.limits import LimitsMiddleware
from service.api.routes import monitor_observations
from tests.conftest import assert_problem

from .monitoring import monitor_client

K = 3
PLAIN_BODIES = [
    {"logits": [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1e4, -1e4, 0.0]], "labels": [0, 2, 1]},
    {"logits": [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]], "labels": [-1, 2]},  # one not known yet
    {"logits": [[2.0, 0.5, -1.0]], "labels": [1.0]},  # an integral float
    {"logits": [[2.0, 0.5, -1.0]], "labels": [1.5]},
    {"logits": [[2.0, 0.5, -1.0]], "labels": [3]},  # out of range
    {"logits": [[2.0, 0.5, -1.0]], "labels": [-2]},
    {"logits": [[2.0, 0.5, -1.0]], "labels": [[0]]},
    {"logits": [[2.0, 0.5, -1.0]], "labels": [0, 1]},  # one label too many
    {"logits": [[2.0, 0.5]], "labels": [0]},  # N×2 for a K = 3 monitor
    {"logits": [[2, 0, 1]], "labels": [0]},  # integers: the general reader's
    {"logits": [[2.0, 0.5, -1.0], [1.0, 2.0]], "labels": [0, 1]},  # ragged
    {"logits": [[2.0, 0.5, -1.0]], "labels": [True]},
    {"logits": [[2.0, 0.5, -1.0]], "labels": ["a"]},  # a class name: the monitor has none
    {"logits": [[2.0, 0.5, -1.0]], "labels": None},
    {"logits": [], "labels": []},
    {"logits": [[1e308, -1e308, 0.0]], "labels": [0]},
]


def _same_text(response, name: str) -> str:
    """The answer's JSON with the monitor's name replaced (the two monitors differ only in it)."""
    return response.text.replace(name, "NAME")


def plain_and_general(client, body: dict) -> tuple[object, str]:
    """`body` to monitor "plain" as it is and to "general" with a default option (the general reader's).

    Both answers (status, type, text) and both monitors' last hour must be the same; returns the
    plain answer and its series' text.
    """
    plain = client.post("/v1/monitors/plain/observations", json=body)
    general = client.post("/v1/monitors/general/observations", json={**body, "normalize": False})
    assert plain.status_code == general.status_code
    assert plain.headers["content-type"] == general.headers["content-type"]
    assert _same_text(plain, "plain") == _same_text(general, "general")
    series = [
        _same_text(client.get(f"/v1/monitors/{name}/metrics", params={"window": "1h"}), name)
        for name in ("plain", "general")
    ]
    assert series[0] == series[1]
    return plain, series[0]


@pytest.mark.parametrize("body", PLAIN_BODIES, ids=range(len(PLAIN_BODIES)))
def test_a_plain_body_answers_and_records_as_the_general_reader_does(tmp_path, body):
    with monitor_client(tmp_path) as client:
        for name in ("plain", "general"):
            assert client.put(f"/v1/monitors/{name}", json={"n_classes": K}).status_code == 201
        plain, series = plain_and_general(client, body)
    if plain.status_code == 200:
        labelled = sum(1 for y in body["labels"] or () if y != -1)
        assert plain.json()["n_labelled"] == labelled
        assert json.loads(series)["points"][-1]["n_labelled"] == labelled


def test_a_small_write_skips_the_general_layer_and_a_large_one_takes_it(tmp_path, monkeypatch):
    limited: list[str] = []
    general = LimitsMiddleware.limit

    async def limit(self, scope, receive, send, length):
        limited.append(scope["path"])
        await general(self, scope, receive, send, length)

    monkeypatch.setattr(LimitsMiddleware, "limit", limit)
    rng = np.random.default_rng(3)
    small = {"logits": rng.standard_normal((32, K)).tolist(), "labels": rng.integers(0, K, 32).tolist()}
    n = INLINE_BYTES // 40  # ~60 bytes a row: over the on-loop bound
    large = {"logits": rng.standard_normal((n, K)).tolist(), "labels": rng.integers(0, K, n).tolist()}
    with monitor_client(tmp_path) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        headers = {"content-type": "application/json"}
        small_bytes, large_bytes = json.dumps(small).encode(), json.dumps(large).encode()
        answer = client.post(
            "/v1/monitors/m/observations", content=small_bytes, headers={**headers, "X-Request-ID": "abc-1"}
        )
        assert answer.status_code == 200 and answer.json()["n_labelled"] == 32
        assert answer.headers["x-request-id"] == "abc-1"
        assert limited == ["/v1/monitors/m"]  # the PUT only
        large_answer = client.post("/v1/monitors/m/observations", content=large_bytes, headers=headers)
        assert large_answer.json()["n_labelled"] == n
        assert limited == ["/v1/monitors/m", "/v1/monitors/m/observations"]
        metrics = client.get("/metrics").text
    route = 'route="/v1/monitors/{name}/observations"'
    assert f'xent_http_requests_total{{method="POST",{route},status="200"}} 2.0' in metrics
    sent = len(small_bytes) + len(large_bytes)
    assert f"xent_scored_bytes_total{{{route}}} {float(sent)}" in metrics
    assert f"xent_scored_rows_total{{{route}}} {float(32 + n)}" in metrics


def test_a_direct_write_past_its_deadline_answers_503_and_writes_nothing(tmp_path, monkeypatch):
    async def stuck(*args, **kwargs):  # a write that never reaches its commit
        await asyncio.sleep(30)

    monkeypatch.setattr(monitor_observations, "write_prepared_soon", stuck)
    body = {"logits": [[2.0, 0.5, -1.0]], "labels": [0]}
    with monitor_client(tmp_path, request_timeout_s=0.3) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        start = time.monotonic()
        answer = client.post("/v1/monitors/m/observations", json=body)
        assert time.monotonic() - start < 5
        assert_problem(answer, 503, match="did not finish")
        assert answer.headers["retry-after"]
        monkeypatch.undo()
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0
        assert client.post("/v1/monitors/m/observations", json=body).json()["n_labelled"] == 1
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 1


@pytest.mark.parametrize(
    "text",
    [
        # the survivors look plain: the plain reader must not take it
        '{"labels": [0], "labels": [1], "logits": [[2.0, 0.5, -1.0]]}',
        '{"logits": [[2.0, 0.5, -1.0]], "labels": [0], "segment": "a", "segment": "b"}',
    ],
)
def test_a_repeated_key_is_refused_and_nothing_written(tmp_path, text):
    with monitor_client(tmp_path) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        answer = client.post(
            "/v1/monitors/m/observations", content=text, headers={"content-type": "application/json"}
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "repeats" in answer.json()["detail"] or "duplicate" in answer.json()["detail"]
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0


def test_a_direct_write_is_stored_under_the_deadline_from_its_arrival(tmp_path, monkeypatch):
    """The write's store sees the request's deadline: its arrival plus ``request_timeout_s``."""
    from service.core.cancel import current_deadline
    from service.store import group_commit, raw_appends, sql_base

    seen: list[float | None] = []

    def noted():
        seen.append(current_deadline())
        return seen[-1]

    for module in (group_commit, raw_appends, sql_base):  # wherever this store takes the write
        monkeypatch.setattr(module, "current_deadline", noted)
    body = {"logits": [[2.0, 0.5, -1.0]], "labels": [0]}
    with monitor_client(tmp_path, request_timeout_s=7.0) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": K}).status_code == 201
        seen.clear()
        before = time.monotonic()
        assert client.post("/v1/monitors/m/observations", json=body).status_code == 200
        after = time.monotonic()
    assert seen and all(s is not None and before + 7.0 <= s <= after + 7.0 for s in seen)
