"""`sample_weight` on /v1/temperature (and /v1/recalibrate method temperature, /v1/apply) (#20)."""

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from tests.conftest import assert_problem


@pytest.fixture
def batch(rng):
    logits = 2 * rng.standard_normal((500, 4))
    labels = (softmax(0.6 * logits, axis=1).cumsum(axis=1) > rng.random((500, 1))).argmax(axis=1)
    return logits, labels, rng.uniform(0, 3, size=500)


def _weighted_nll(logits, labels, s, t):
    return -(s * log_softmax(logits / t, axis=1)[np.arange(len(labels)), labels]).sum() / s.sum()


def test_temperature_minimises_the_weighted_nll(client, batch):
    logits, labels, s = batch
    body = {"logits": logits.tolist(), "labels": labels.tolist(), "sample_weight": s.tolist()}
    response = client.post("/v1/temperature", json=body | {"return_probs": True})
    assert response.status_code == 200, response.text
    got = response.json()
    expected = minimize_scalar(
        lambda t: _weighted_nll(logits, labels, s, t),
        bounds=(0.05, 20),
        method="bounded",
        options={"xatol": 1e-10},
    ).x
    assert got["temperature"] == pytest.approx(expected, rel=1e-5)
    probs = np.array(got["probs"])
    assert got["after"]["nll"] == pytest.approx(log_loss(labels, probs, sample_weight=s), rel=1e-9)
    assert got["after"]["accuracy"] == pytest.approx(accuracy_score(labels, probs.argmax(1), sample_weight=s))
    brier = brier_score_loss(labels, probs, sample_weight=s, labels=[0, 1, 2, 3])
    assert got["after"]["brier"] == pytest.approx(brier, rel=1e-9)
    assert got["convention"]["sample_weight"]
    unweighted = client.post(
        "/v1/temperature", json={"logits": logits.tolist(), "labels": labels.tolist()}
    ).json()
    assert abs(unweighted["temperature"] - got["temperature"]) > 1e-4  # the weights matter
    applied = client.post(
        "/v1/apply",
        json={
            "logits": logits.tolist(),
            "labels": labels.tolist(),
            "sample_weight": s.tolist(),
            "parameters": got["parameters"],
        },
    ).json()
    assert applied["metrics"] == got["after"]


def test_integer_weights_equal_repeated_rows_and_recalibrate_agrees(client, batch, rng):
    logits, labels, _ = batch
    s = rng.integers(0, 3, size=500)
    weighted = client.post(
        "/v1/recalibrate",
        json={
            "logits": logits.tolist(),
            "labels": labels.tolist(),
            "sample_weight": s.tolist(),
            "method": "temperature",
        },
    ).json()
    repeated = client.post(
        "/v1/temperature",
        json={"logits": np.repeat(logits, s, 0).tolist(), "labels": np.repeat(labels, s).tolist()},
    ).json()
    assert weighted["parameters"]["temperature"] == pytest.approx(repeated["temperature"], rel=1e-9)
    assert weighted["after"] == pytest.approx(repeated["after"], rel=1e-9)


@pytest.mark.parametrize(
    "method", ["temperature", "vector", "matrix", "platt", "beta", "isotonic", "histogram"]
)
def test_all_zero_weights_are_a_problem_naming_sample_weight(client, method):
    body = {
        "logits": [[0.0, 1.0], [1.0, 0.0]],
        "labels": [0, 1],
        "sample_weight": [0.0, 0.0],
        "method": method,
    }
    assert_problem(client.post("/v1/recalibrate", json=body), 422, "#/sample_weight", "positive sum")
    body.pop("method")
    assert_problem(client.post("/v1/temperature", json=body), 422, "#/sample_weight", "positive sum")
    apply = {**body, "temperature": 1.0}
    assert_problem(client.post("/v1/apply", json=apply), 422, "#/sample_weight", "positive sum")


def test_bad_sample_weight_is_a_problem(client):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": [0, 1], "sample_weight": [1.0, -2.0]}
    assert_problem(client.post("/v1/temperature", json=body), 422, "#/sample_weight/1", "non-negative")
