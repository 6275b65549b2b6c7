"""A monitor's perplexity over time: random partitions of documents posted at different times.

The merged series' total equals one POST /v1/logprobs answer on every document, and each step's
point equals /v1/logprobs on that step's documents (rel. 1e-12), on SQLite and on PostgreSQL.
"""

import math
import time

import numpy as np
import pytest
import scipy.special

from ..conftest import assert_problem
from .monitoring import monitor_client

BUCKET = 60
N_DOCS = 30
N_STEPS = 4


def _chat(rng: np.random.Generator) -> dict:
    """One chat completion: 1–8 tokens, each with its bytes and one alternative (top-1 or not)."""
    content = []
    for _ in range(int(rng.integers(1, 9))):
        lp, alt = rng.uniform(-4.0, -0.7, size=2)
        n_bytes = int(rng.integers(1, 6))
        content.append(
            {
                "token": "t" * n_bytes,
                "logprob": float(lp),
                "bytes": [116] * n_bytes,
                "top_logprobs": [
                    {"token": "t" * n_bytes, "logprob": float(lp), "bytes": [116] * n_bytes},
                    {"token": "alt", "logprob": float(alt), "bytes": [97, 108, 116]},
                ],
            }
        )
    return {"choices": [{"index": 0, "logprobs": {"content": content}}]}


def _check(point: dict, metrics: dict) -> None:
    for key, expected in metrics.items():
        if expected is None:
            assert point[key] is None, key
        else:
            assert point[key] == pytest.approx(expected, rel=1e-12), key


@pytest.fixture(params=["sqlite", "postgresql"])
def client(request, tmp_path):
    extra = {}
    if request.param == "postgresql":
        extra["database_url"] = request.getfixturevalue("postgres_url")
    with monitor_client(tmp_path, max_query_points=100, **extra) as test_client:
        yield test_client


def test_series_of_random_partitions_equals_logprobs_on_the_documents(client, rng):
    client.put("/v1/monitors/lm", json={"n_classes": 2, "bucket_s": BUCKET}).raise_for_status()
    docs = [_chat(rng) for _ in range(N_DOCS)]
    base = math.floor(time.time() / BUCKET) * BUCKET - 10 * BUCKET
    step_of = rng.integers(0, N_STEPS, size=N_DOCS)
    times = base + step_of * BUCKET + rng.uniform(0, BUCKET, size=N_DOCS)
    order = rng.permutation(N_DOCS)
    cuts = np.sort(rng.choice(np.arange(1, N_DOCS), size=5, replace=False))
    for batch in np.split(order, cuts):
        body = {"responses": [docs[i] for i in batch], "timestamps": times[batch].tolist(), "segment": "v1"}
        answer = client.post("/v1/monitors/lm/sequences", json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["n_sequences"] == len(batch)
        assert answer.json()["buckets"] == len(set(step_of[batch].tolist()))
    end = base + N_STEPS * BUCKET
    series = client.get("/v1/monitors/lm/perplexity", params={"from": base, "to": end, "step": "1m"})
    assert series.status_code == 200, series.text
    got = series.json()
    whole = client.post("/v1/logprobs", json={"responses": docs}).json()
    assert whole["metrics"]["byte_perplexity"] is not None and whole["metrics"]["accuracy"] is not None
    _check(got["total"], whole["metrics"])
    assert got["total"]["n_tokens"] == whole["n_tokens"] and got["total"]["n_sequences"] == N_DOCS
    assert got["total"]["nll"] == pytest.approx(whole["nll"], rel=1e-12)
    assert [p["start"] for p in got["points"]] == [base + s * BUCKET for s in range(N_STEPS)]
    for s, point in enumerate(got["points"]):
        members = [docs[i] for i in np.flatnonzero(step_of == s)]
        if not members:
            assert point["n_sequences"] == 0 and point["token_perplexity"] is None
            continue
        _check(point, client.post("/v1/logprobs", json={"responses": members}).json()["metrics"])
    # a segment filter: all were sent as "v1"; another segment has nothing
    other = client.get("/v1/monitors/lm/perplexity", params={"from": base, "to": end, "segment": "v2"})
    assert other.json()["total"]["n_sequences"] == 0
    # GET /v1/monitors/{name}: everything held, as /v1/logprobs on every document
    held = client.get("/v1/monitors/lm").json()["totals"]
    assert held["segments"] == ["v1"] and held["n"] == 0
    lm = held["language_model"]
    assert (lm["n_sequences"], lm["n_tokens"]) == (N_DOCS, whole["n_tokens"])
    _check(lm, whole["metrics"])
    logprobs = [t["logprob"] for d in docs for t in d["choices"][0]["logprobs"]["content"]]
    n_bytes = sum(len(t["bytes"]) for d in docs for t in d["choices"][0]["logprobs"]["content"])
    assert lm["token_perplexity"] == pytest.approx(math.exp(-math.fsum(logprobs) / len(logprobs)), rel=1e-12)
    assert lm["bits_per_byte"] == pytest.approx(-math.fsum(logprobs) / n_bytes / math.log(2), rel=1e-12)


def test_unknown_monitor_and_bad_payloads(client):
    doc = {"choices": [{"logprobs": {"content": [{"token": "a", "logprob": -1.0, "top_logprobs": []}]}}]}
    assert_problem(client.post("/v1/monitors/none/sequences", json={"response": doc}), 404)
    assert_problem(client.get("/v1/monitors/none/perplexity"), 404)
    client.put("/v1/monitors/lm", json={"n_classes": 2})
    bad_times = {"response": doc, "timestamps": [1.0, 2.0]}
    assert_problem(client.post("/v1/monitors/lm/sequences", json=bad_times), 422, "#/timestamps")
    old = {"response": doc, "timestamps": [1.0]}
    assert_problem(client.post("/v1/monitors/lm/sequences", json=old), 422, "#/timestamps/0", "retention")
    assert_problem(client.post("/v1/monitors/lm/sequences", json={"timestamps": [1.0]}), 422, "#/responses")
    assert_problem(
        client.post("/v1/monitors/lm/sequences", json={"response": doc, "segment": 3}), 422, "#/segment"
    )
    assert_problem(client.get("/v1/monitors/lm/perplexity", params={"step": "90"}), 422, "#/step")
    assert client.get("/v1/monitors/lm/perplexity").json()["total"]["n_sequences"] == 0
    assert client.get("/v1/monitors/lm").json()["totals"]["language_model"] is None


def test_sequence_logits_over_time_equal_cross_entropy_on_them(client, rng):
    """B×T×K logits with B×T labels (padding at -100, bytes per sequence) as /v1/cross-entropy takes them."""
    client.put("/v1/monitors/lm", json={"n_classes": 2, "bucket_s": BUCKET}).raise_for_status()
    b, t, k = 8, 6, 11
    logits = rng.standard_normal((b, t, k)) * 2
    labels = rng.integers(0, k, size=(b, t))
    labels[rng.random((b, t)) < 0.25] = -100
    labels[:, 0] = rng.integers(0, k, size=b)  # every sequence keeps a token
    n_bytes = rng.integers(1, 40, size=b)
    base = math.floor(time.time() / BUCKET) * BUCKET - 5 * BUCKET
    minute = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    times = base + minute * BUCKET + 1.0
    for batch in (np.array([0, 5, 2]), np.array([1, 3, 4, 6, 7])):
        body = {
            "logits": logits[batch].tolist(),
            "labels": labels[batch].tolist(),
            "bytes": n_bytes[batch].tolist(),
            "ignore_index": -100,
            "timestamps": times[batch].tolist(),
        }
        answer = client.post("/v1/monitors/lm/sequences", json=body)
        assert answer.status_code == 200, answer.text
    got = client.get("/v1/monitors/lm/perplexity", params={"from": base, "to": base + 180, "step": 60}).json()

    def reference(rows: np.ndarray) -> dict:
        body = {
            "logits": logits[rows].tolist(),
            "labels": labels[rows].tolist(),
            "bytes": n_bytes[rows].tolist(),
            "ignore_index": -100,
        }
        return client.post("/v1/cross-entropy", json=body).json()["language_model"]["metrics"]

    expected = reference(np.arange(b))
    assert expected["bits_per_byte"] is not None and expected["accuracy"] is not None
    _check(got["total"], {k: v for k, v in expected.items() if k != "top_5_accuracy"})
    for s, point in enumerate(got["points"]):
        want = reference(np.flatnonzero(minute == s))
        _check(point, {k: v for k, v in want.items() if k != "top_5_accuracy"})
    # the monitor's totals against scipy: -log_softmax at the labels, padding left out
    held = client.get("/v1/monitors/lm").json()["totals"]["language_model"]
    scored = labels != -100
    nll = -scipy.special.log_softmax(logits, axis=-1)[scored, labels[scored]]
    assert held["n_sequences"] == b and held["n_tokens"] == scored.sum()
    assert held["nll"] == pytest.approx(nll.sum(), rel=1e-12)
    assert held["token_perplexity"] == pytest.approx(np.exp(nll.mean()), rel=1e-12)
    assert held["bits_per_byte"] == pytest.approx(nll.sum() / n_bytes.sum() / np.log(2), rel=1e-12)
    bad = {"logits": logits[0].tolist(), "labels": labels[0].tolist()}
    assert_problem(client.post("/v1/monitors/lm/sequences", json=bad), 422, "#/logits", "B×T×K")
    assert_problem(
        client.post("/v1/monitors/lm/sequences", json={"logits": logits.tolist()}), 422, "#/labels"
    )


@pytest.mark.parametrize("ignore_index", [-100.0, True, -100.5, "-100"])
def test_ignore_index_is_an_integer_as_json_schema_reads_it(client, rng, ignore_index):
    """An integral JSON number (``-100.0``) is that integer (the OpenAPI `integer`); a boolean, a
    fraction or a string is refused."""
    client.put("/v1/monitors/lm", json={"n_classes": 2}).raise_for_status()
    logits, labels = rng.standard_normal((2, 4, 5)), rng.integers(0, 5, (2, 4))
    labels[:, 2:] = -100
    body = {"logits": logits.tolist(), "labels": labels.tolist(), "ignore_index": ignore_index}
    written = client.post("/v1/monitors/lm/sequences", json=body)
    if type(ignore_index) is float and ignore_index.is_integer():
        assert written.status_code == 200, written.text
        scored = client.post("/v1/cross-entropy", json={**body, "ignore_index": int(ignore_index)}).json()
        held = client.get("/v1/monitors/lm").json()["totals"]["language_model"]
        assert held["n_tokens"] == scored["language_model"]["totals"]["tokens"] == 4
        assert held["nll"] == scored["language_model"]["totals"]["nll"]
    else:
        assert_problem(written, 422, "#/ignore_index")


def test_a_retried_write_with_its_idempotency_key_counts_once(client, rng):
    client.put("/v1/monitors/lm", json={"n_classes": 2, "bucket_s": BUCKET}).raise_for_status()
    docs = [_chat(rng) for _ in range(3)]
    headers = {"Idempotency-Key": "lm-1"}
    first = client.post("/v1/monitors/lm/sequences", json={"responses": docs}, headers=headers)
    assert first.status_code == 200 and "idempotent-replayed" not in first.headers
    again = client.post("/v1/monitors/lm/sequences", json={"responses": docs}, headers=headers)
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    other = client.post("/v1/monitors/lm/sequences", json={"responses": docs[:1]}, headers=headers)
    assert_problem(other, 422)
    total = client.get("/v1/monitors/lm/perplexity", params={"window": "10m"}).json()["total"]
    whole = client.post("/v1/logprobs", json={"responses": docs}).json()
    assert total["n_sequences"] == 3 and total["nll"] == pytest.approx(whole["nll"], rel=1e-12)
