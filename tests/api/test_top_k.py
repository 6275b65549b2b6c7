"""`top_k` on /v1/cross-entropy and /v1/calibration against scikit-learn and torchmetrics (issue #20)."""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import top_k_accuracy_score
from torchmetrics.functional.classification import multiclass_accuracy

from tests.conftest import assert_problem


def _batch(rng, n=300, k=8):
    logits = 2 * rng.standard_normal((n, k))
    return logits, rng.integers(0, k, size=n)


def _sklearn(labels, scores, k):
    return top_k_accuracy_score(labels, scores, k=k, labels=np.arange(scores.shape[1]))


@pytest.mark.parametrize("field", ["logits", "probs"])
def test_cross_entropy_top_k_matches_sklearn_and_torchmetrics(client, rng, field):
    logits, labels = _batch(rng)
    scores = logits if field == "logits" else softmax(logits, axis=1)
    body = {field: scores.tolist(), "labels": labels.tolist(), "top_k": [1, 3, 5]}
    response = client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["convention"]["top_k"] == [1, 3, 5]
    assert set(got["top_k_accuracy"]) == {"1", "3", "5"}
    assert got["top_k_accuracy"]["1"] == got["accuracy"]
    for k in (1, 3, 5):
        assert got["top_k_accuracy"][str(k)] == pytest.approx(_sklearn(labels, scores, k), abs=1e-15)
        by_torch = multiclass_accuracy(
            torch.from_numpy(scores), torch.from_numpy(labels), num_classes=8, top_k=k, average="micro"
        ).item()
        assert got["top_k_accuracy"][str(k)] == pytest.approx(by_torch, abs=1e-6)


def test_cross_entropy_top_k_leaves_ignored_samples_out(client, rng):
    logits, labels = _batch(rng)
    labels[::4] = -100
    body = {"logits": logits.tolist(), "labels": labels.tolist(), "ignore_index": -100, "top_k": [2]}
    got = client.post("/v1/cross-entropy", json=body).json()
    kept = labels != -100
    assert got["top_k_accuracy"]["2"] == pytest.approx(_sklearn(labels[kept], logits[kept], 2), abs=1e-15)


def test_cross_entropy_top_k_of_soft_targets_and_binary_input(client, rng):
    logits, labels = _batch(rng, k=4)
    targets = softmax(3 * rng.standard_normal((300, 4)), axis=1)
    body = {"logits": logits.tolist(), "targets": targets.tolist(), "top_k": [2]}
    got = client.post("/v1/cross-entropy", json=body).json()
    expected = _sklearn(targets.argmax(axis=1), logits, 2)
    assert got["top_k_accuracy"]["2"] == pytest.approx(expected, abs=1e-15)
    z = rng.standard_normal(50)
    y = rng.integers(0, 2, size=50)
    got = client.post("/v1/cross-entropy", json={"logits": z.tolist(), "labels": y.tolist(), "top_k": [1, 2]})
    top = got.json()["top_k_accuracy"]
    assert top == {"1": np.mean((z > 0) == y), "2": 1.0}


def test_calibration_top_k_matches_sklearn(client, rng):
    logits, labels = _batch(rng)
    probs = softmax(logits, axis=1)
    body = {"probs": probs.tolist(), "labels": labels.tolist(), "top_k": [1, 5], "metrics": ["accuracy"]}
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    assert got["convention"]["top_k"] == [1, 5]
    assert got["top_k_accuracy"]["1"] == got["metrics"]["accuracy"]
    assert got["top_k_accuracy"]["5"] == pytest.approx(_sklearn(labels, probs, 5), abs=1e-15)


def test_top_k_is_absent_unless_asked(client, rng):
    logits, labels = _batch(rng, n=10)
    got = client.post("/v1/cross-entropy", json={"logits": logits.tolist(), "labels": labels.tolist()}).json()
    assert got["top_k_accuracy"] is None and got["convention"]["top_k"] is None


@pytest.mark.parametrize("route", ["/v1/cross-entropy", "/v1/calibration"])
@pytest.mark.parametrize(
    ("top_k", "pointer"), [([0], "#/top_k/0"), ([], "#/top_k"), (3, "#/top_k"), (["a"], "#/top_k/0")]
)
def test_bad_top_k_is_a_problem_naming_it(client, route, top_k, pointer):
    body = {"probs": [[0.2, 0.8], [0.6, 0.4]], "labels": [1, 0], "top_k": top_k}
    assert_problem(client.post(route, json=body), 422, pointer)
