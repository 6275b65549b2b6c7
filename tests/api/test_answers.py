"""Answers built as plain dicts print exactly what their result models print (issue #22).

The scoring routes write their answer without constructing the result model
(service/api/formats/answers.py). The model still documents the answer and the client reads it
with it, so the text must be the model's own: validating the answer with the model and printing
it again must give the same bytes (field order, 2 vs 2.0, "NaN"/"Infinity" strings included).
"""

import numpy as np
import pytest

from service.api.formats.inputs import validated_options
from service.api.schemas import CrossEntropyResult, DivergenceResult
from service.api.schemas.recalibration import ApplyOptions, ApplyResult
from tests.conftest import assert_problem


def _batch(rng, n=12, k=4):
    logits = 2 * rng.standard_normal((n, k))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return logits, probs, rng.integers(0, k, n)


def _same_as_model(response, model):
    assert response.status_code == 200, response.text
    text = response.content.decode()
    assert model.model_validate_json(text).model_dump_json() == text
    return response.json()


CROSS_ENTROPY = {
    "logits": {},
    "logits base 2, smoothing": {"base": 2, "label_smoothing": 0.1},
    "probs, eps auto, base 10": {"eps": "auto", "base": 10},
    "per-sample losses": {"per_sample": True, "top_k": [1, 2]},
    "reduction none": {"reduction": "none"},
    "reduction sum, class weights": {"reduction": "sum", "class_weights": [1, 2, 3, 4]},
    "sample weights": {"sample_weight": list(range(1, 13))},
    "string classes": {"classes": ["a", "b", "c", "d"]},
}


@pytest.mark.parametrize("case", CROSS_ENTROPY)
def test_cross_entropy_answers_print_as_their_model(client, rng, case):
    logits, probs, labels = _batch(rng)
    options = CROSS_ENTROPY[case]
    body = {"probs" if "probs" in case else "logits": (probs if "probs" in case else logits).tolist()}
    body["labels"] = [["a", "b", "c", "d"][y] for y in labels] if "classes" in options else labels.tolist()
    got = _same_as_model(client.post("/v1/cross-entropy", json={**body, **options}), CrossEntropyResult)
    assert got["n"] == 12


def test_cross_entropy_non_finite_answers_print_as_their_model(client, rng):
    logits, _, labels = _batch(rng)
    # Every label ignored: PyTorch's mean is 0 / 0 (NaN), accuracy and mean entropy have no sample.
    body = {"logits": logits.tolist(), "labels": [-100] * 12, "ignore_index": -100}
    got = _same_as_model(client.post("/v1/cross-entropy", json=body), CrossEntropyResult)
    assert (got["loss"], got["accuracy"], got["mean_entropy"], got["n_ignored"]) == ("NaN", "NaN", "NaN", 12)
    # A zero probability on the true class with eps 0: an infinite loss.
    probs = np.array([[1.0, 0.0], [0.5, 0.5]])
    body = {"probs": probs.tolist(), "labels": [1, 0], "eps": 0}
    got = _same_as_model(client.post("/v1/cross-entropy", json=body), CrossEntropyResult)
    assert got["loss"] == "Infinity"


def test_binary_cross_entropy_answers_print_as_their_model(client, rng):
    body = {"logits": rng.standard_normal(10).tolist(), "labels": rng.integers(0, 2, 10).tolist()}
    got = _same_as_model(client.post("/v1/cross-entropy", json={**body, "pos_weight": 3}), CrossEntropyResult)
    assert got["convention"]["pos_weight"] == 3.0
    assert got["convention"]["form"] == "binary"


@pytest.mark.parametrize("base", ["e", 2, 10])
@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum", "none"])
def test_divergence_answers_print_as_their_model(client, rng, base, reduction):
    p, q = rng.standard_normal((2, 6, 3))
    body = {"p_logits": p.tolist(), "q_logits": q.tolist(), "base": base, "reduction": reduction}
    got = _same_as_model(client.post("/v1/divergence", json=body), DivergenceResult)
    reduced = {"batchmean": "mean"}.get(reduction, reduction)
    for name in ("mean", "sum"):
        assert (got[name] is None) == (name != reduced)


def test_divergence_elementwise_broadcast_and_infinite_answers_print_as_their_model(client, rng):
    p = rng.dirichlet(np.ones(3), 5)
    body = {"p_probs": p.tolist(), "q_probs": [[0.5, 0.5, 0.0]], "eps": 0, "elementwise": True}
    got = _same_as_model(client.post("/v1/divergence", json=body), DivergenceResult)
    assert got["convention"]["broadcast"] == "q"
    assert got["mean"]["kl_pq"] == "Infinity"


@pytest.mark.parametrize("truth", [False, True])
def test_apply_answers_print_as_their_model(client, rng, truth):
    logits, _, labels = _batch(rng)
    body = {"logits": logits.tolist(), "temperature": 1.5, **({"labels": labels.tolist()} if truth else {})}
    got = _same_as_model(client.post("/v1/apply", json=body), ApplyResult)
    assert len(got["probs"]) == 12
    assert (got["metrics"] is None) == (not truth)


def test_options_are_validated_once_per_distinct_set_and_refused_every_time(client, rng):
    assert validated_options(ApplyOptions, {"temperature": 2}) is validated_options(
        ApplyOptions, {"temperature": 2}
    )
    # 2 and 2.0 are different JSON, kept apart (a strict field could tell them apart).
    assert validated_options(ApplyOptions, {"temperature": 2}) is not validated_options(
        ApplyOptions, {"temperature": 2.0}
    )
    logits, _, _ = _batch(rng)
    for _ in range(2):  # an invalid set is never kept: the second request is refused as the first
        response = client.post("/v1/apply", json={"logits": logits.tolist(), "temperature": "hot"})
        assert_problem(response, 422, "#/temperature")
