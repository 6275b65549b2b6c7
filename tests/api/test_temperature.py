import numpy as np
import pytest
from scipy.special import log_softmax

from service.core import fit_temperature
from tests.conftest import assert_problem


def batch(rng, n=400, k=4, true_t=2.0):
    z = 2 * rng.standard_normal((n, k))
    p = np.exp(log_softmax(z, axis=1))
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z * true_t, labels


def test_temperature_matches_the_core_and_reports_metrics(client, rng):
    logits, labels = batch(rng)
    response = client.post("/v1/temperature", json={"logits": logits.tolist(), "labels": labels.tolist()})
    assert response.status_code == 200, response.text
    body = response.json()
    fit = fit_temperature(logits, labels=labels)
    assert body["temperature"] == pytest.approx(fit.temperature, rel=1e-12)
    assert (body["converged"], body["reason"]) == (True, "optimum")
    assert body["after"]["nll"] == pytest.approx(fit.nll, rel=1e-12)
    assert body["after"]["nll"] <= body["before"]["nll"]
    assert body["parameters"] == {"method": "temperature", "temperature": body["temperature"]}
    assert body["convention"]["ece_bins"] == 15


def test_apply_reproduces_the_after_metrics_exactly(client, rng):
    logits, labels = batch(rng)
    payload = {"logits": logits.tolist(), "labels": labels.tolist()}
    fitted = client.post("/v1/temperature", json=payload | {"return_probs": True}).json()
    applied = client.post("/v1/apply", json=payload | {"parameters": fitted["parameters"]}).json()
    assert applied["metrics"] == fitted["after"]
    assert applied["probs"] == fitted["probs"]
    bare = client.post(
        "/v1/apply", json={"logits": logits.tolist(), "temperature": fitted["temperature"]}
    ).json()
    assert bare["probs"] == fitted["probs"]
    assert bare["metrics"] is None


def test_temperature_of_probabilities_fits_their_logs(client, rng):
    logits, labels = batch(rng, k=3)
    probs = np.exp(log_softmax(logits, axis=1))
    body = client.post("/v1/temperature", json={"probs": probs.tolist(), "labels": labels.tolist()}).json()
    assert body["temperature"] == pytest.approx(
        fit_temperature(np.log(probs), labels=labels).temperature, rel=1e-9
    )
    assert body["convention"]["input"] == "probs"


def test_temperature_binary_returns_positive_class_probs(client, rng):
    z = 3 * rng.standard_normal(300)
    labels = (rng.random(300) < 1 / (1 + np.exp(-z / 3))).astype(int)
    body = client.post(
        "/v1/temperature", json={"logits": z.tolist(), "labels": labels.tolist(), "return_probs": True}
    ).json()
    t = fit_temperature(z, labels=labels).temperature
    assert body["temperature"] == pytest.approx(t, rel=1e-9)
    np.testing.assert_allclose(body["probs"], 1 / (1 + np.exp(-z / t)), rtol=1e-12)
    assert body["convention"]["form"] == "binary"


def test_temperature_soft_targets(client, rng):
    logits, _ = batch(rng, n=100, k=3)
    targets = np.exp(log_softmax(logits / 3, axis=1))
    body = client.post(
        "/v1/temperature", json={"logits": logits.tolist(), "targets": targets.tolist()}
    ).json()
    assert body["temperature"] == pytest.approx(3, rel=1e-6)  # targets are exactly softmax(z / 3)
    assert body["convention"]["truth"] == "targets"


def test_temperature_tensor_float32_input(client, rng):
    logits, labels = batch(rng, n=200, k=5)
    tensor = {"shape": [200, 5], "datatype": "FP32", "data": logits.astype(np.float32).ravel().tolist()}
    body = client.post("/v1/temperature", json={"logits": tensor, "labels": labels.tolist()}).json()
    expected = fit_temperature(logits.astype(np.float32), labels=labels).temperature
    assert body["temperature"] == pytest.approx(expected, rel=1e-12)
    assert body["convention"]["dtype"] == "float32"


@pytest.mark.parametrize(
    ("logits", "labels", "reason", "temperature"),
    [
        ([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]], [0, 1, 0], "separable", 0.0),  # all correct
        ([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]], [1, 0, 1], "uninformative", "Infinity"),  # all wrong
        ([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], [0, 2], "constant_logits", 1.0),
        ([[5.0, 1.0], [2.0, 1.0]], [0, 0], "separable", 0.0),  # a single class, always predicted
        ([[2.0, 1.0]], [0], "separable", 0.0),  # N = 1
    ],
)
def test_temperature_degenerate_batches_are_answered(client, logits, labels, reason, temperature):
    response = client.post("/v1/temperature", json={"logits": logits, "labels": labels, "return_probs": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["converged"], body["reason"], body["temperature"]) == (False, reason, temperature)
    assert body["after"]["nll"] <= body["before"]["nll"] or reason == "constant_logits"
    applied = client.post(
        "/v1/apply", json={"logits": logits, "labels": labels, "parameters": body["parameters"]}
    )
    assert applied.json()["metrics"] == body["after"]


def test_temperature_single_class_with_an_interior_optimum(client):
    body = client.post(
        "/v1/temperature", json={"logits": [[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], "labels": [0, 0, 0]}
    ).json()
    assert (body["converged"], body["reason"]) == (True, "optimum")


def test_temperature_max_iter_is_reported(client):
    body = client.post(
        "/v1/temperature",
        json={"logits": [[40.0, 0.0], [0.0, 40.0], [0.0, 1e-9]], "labels": [0, 1, 0], "max_iter": 3},
    ).json()
    assert (body["converged"], body["reason"], body["iterations"]) == (False, "max_iter", 3)


def test_temperature_holdout_validation(client, rng):
    logits, labels = batch(rng, n=100)
    body = client.post(
        "/v1/temperature",
        json={
            "logits": logits.tolist(),
            "labels": labels.tolist(),
            "validation": {"holdout": 0.25, "seed": 7},
        },
    ).json()
    report = body["validation"]
    assert (report["scheme"], report["n_fit"], report["n_eval"], report["seed"]) == ("holdout", 75, 25, 7)
    order = np.random.default_rng(7).permutation(100)
    fit_rows, eval_rows = np.sort(order[25:]), np.sort(order[:25])
    t = fit_temperature(logits[fit_rows], labels=labels[fit_rows]).temperature
    assert report["parameters"][0]["temperature"] == pytest.approx(t, rel=1e-12)
    scored = client.post(
        "/v1/apply",
        json={"logits": logits[eval_rows].tolist(), "labels": labels[eval_rows].tolist(), "temperature": t},
    ).json()
    assert report["after"]["nll"] == pytest.approx(scored["metrics"]["nll"], rel=1e-12)


def test_temperature_fold_validation_scores_every_sample(client, rng):
    logits, labels = batch(rng, n=90)
    body = client.post(
        "/v1/temperature",
        json={"logits": logits.tolist(), "labels": labels.tolist(), "validation": {"folds": 3}},
    ).json()
    report = body["validation"]
    assert (report["scheme"], report["n_eval"], len(report["parameters"])) == ("folds", 90, 3)
    assert report["before"] == body["before"]


@pytest.mark.parametrize(
    ("payload", "pointer", "match"),
    [
        (
            {"logits": [[0.0, 1.0]]},
            "#/labels",
            r"^`labels` or `targets` is required \(exactly one of the two\); got neither$",
        ),
        ({"logits": [[0.0, 1.0]], "labels": [2]}, "#/labels/0", r"must lie in \[0, 2\)"),
        ({"logits": [[0.0, 1.0]], "labels": [0, 1]}, "#/labels", "as many samples"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "rtol": 0}, "#/rtol", "greater than 0"),
        ({"logits": [[0.0, 1.0]], "labels": [0], "max_iter": 0}, "#/max_iter", "greater than or equal"),
        (
            {"logits": [[0.0, 1.0]], "labels": [0], "validation": {"folds": 2}},
            "#/validation/folds",
            "at most",
        ),
        (
            {"logits": [[0.0, 1.0]], "labels": [0], "validation": {"holdout": 0.5}},
            "#/validation/holdout",
            "2",
        ),
        ({"logits": [[0.0, 1.0]], "labels": [0], "validation": {"holdout": 1.5}}, None, "less than 1"),
        ({"probs": [[1.0, 0.0]], "labels": [0], "eps": 0}, "#/eps", "log 0"),
        ({"logits": [[0.0, "x"]], "labels": [0]}, "#/logits/0/1", "must be a number"),
    ],
)
def test_temperature_bad_input_is_problem_json(client, payload, pointer, match):
    assert_problem(client.post("/v1/temperature", json=payload), 422, pointer, match)


@pytest.mark.parametrize(
    ("payload", "pointer", "match"),
    [
        (
            {"logits": [[0.0, 1.0]]},
            "#/parameters",
            r"^`parameters` or `temperature` is required \(exactly one of the two\)",
        ),
        (
            {
                "logits": [[0.0, 1.0]],
                "temperature": 1,
                "parameters": {"method": "temperature", "temperature": 1},
            },
            "#/temperature",
            "both",
        ),
        ({"logits": [[0.0, 1.0]], "temperature": -1}, "#/temperature", "must be ≥ 0"),
        ({"logits": [[0.0, 1.0]], "temperature": "NaN"}, "#/temperature", "must be ≥ 0"),
        ({"logits": [[0.0, 1.0]], "parameters": {"method": "nope", "temperature": 1}}, None, None),
        (
            {"logits": [[0.0, 1.0]], "parameters": {"method": "temperature", "temperature": -2}},
            "#/parameters/temperature",
            "≥ 0",
        ),
        ({"temperature": 1}, "#/logits", r"^`logits` or `probs` is required \(exactly one of the two\)"),
    ],
)
def test_apply_bad_input_is_problem_json(client, payload, pointer, match):
    assert_problem(client.post("/v1/apply", json=payload), 422, pointer, match)
