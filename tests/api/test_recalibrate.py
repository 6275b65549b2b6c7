import numpy as np
import pytest
from scipy.special import expit, log_softmax
from sklearn.isotonic import IsotonicRegression

from tests.conftest import assert_problem


def categorical(rng, n=600, k=4):
    z = 2 * rng.standard_normal((n, k))
    p = np.exp(log_softmax(z * np.linspace(0.5, 2.0, k), axis=1))
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z.tolist(), labels.tolist()


def binary(rng, n=600):
    s = 2 * rng.standard_normal(n)
    labels = (rng.random(n) < expit(0.6 * s - 0.4)).astype(int)
    return s.tolist(), labels.tolist()


CATEGORICAL = [
    {"method": "temperature"},
    {"method": "vector"},
    {"method": "vector", "l2": 0.1},
    {"method": "matrix"},
    {"method": "matrix", "off_diagonal": 1.0, "bias_l2": 1.0},
    {"method": "isotonic"},
    {"method": "histogram", "n_bins": 10},
]
BINARY = [
    {"method": "temperature"},
    {"method": "platt"},
    {"method": "platt", "target_smoothing": True},
    {"method": "beta"},
    {"method": "isotonic"},
    {"method": "histogram"},
    {"method": "vector"},
]


@pytest.mark.parametrize(
    ("options", "form"), [(o, "categorical") for o in CATEGORICAL] + [(o, "binary") for o in BINARY]
)
def test_recalibrate_parameters_reproduce_the_after_metrics(client, rng, options, form):
    logits, labels = categorical(rng) if form == "categorical" else binary(rng)
    payload = {"logits": logits, "labels": labels}
    response = client.post("/v1/recalibrate", json=payload | options | {"return_probs": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["converged"], body["message"]
    assert body["parameters"]["method"] == options["method"]
    assert body["convention"]["form"] == form
    if options["method"] not in ("isotonic", "histogram") and not options.get("target_smoothing"):
        assert body["after"]["nll"] <= body["before"]["nll"]
    applied = client.post("/v1/apply", json=payload | {"parameters": body["parameters"]}).json()
    assert applied["metrics"] == body["after"]
    assert applied["probs"] == body["probs"]


def test_recalibrate_probabilities_isotonic_matches_sklearn(client, rng):
    s, labels = binary(rng)
    q = expit(np.array(s))
    body = client.post(
        "/v1/recalibrate",
        json={"probs": q.tolist(), "labels": labels, "method": "isotonic", "return_probs": True},
    ).json()
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(q, labels)
    np.testing.assert_allclose(body["probs"], reference.predict(q), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(body["parameters"]["knots"][0]["x"], reference.X_thresholds_, rtol=1e-9)


def test_recalibrate_validation_folds(client, rng):
    logits, labels = categorical(rng, n=200)
    body = client.post(
        "/v1/recalibrate",
        json={"logits": logits, "labels": labels, "method": "vector", "validation": {"folds": 4, "seed": 3}},
    ).json()
    report = body["validation"]
    assert (report["n_eval"], len(report["parameters"])) == (200, 4)
    assert all(p["method"] == "vector" for p in report["parameters"])


def test_recalibrate_soft_targets_with_matrix_scaling(client, rng):
    z = 2 * rng.standard_normal((300, 3))
    targets = np.exp(log_softmax(z / 2, axis=1))
    body = client.post(
        "/v1/recalibrate",
        json={"logits": z.tolist(), "targets": targets.tolist(), "method": "matrix", "return_probs": True},
    ).json()
    np.testing.assert_allclose(body["probs"], targets, atol=1e-6)  # W = I/2 up to softmax's invariances


@pytest.mark.parametrize(
    ("payload", "pointer", "match"),
    [
        ({"method": "platt", "logits": [[0, 1, 2]], "labels": [0]}, "#/logits", "must be binary"),
        ({"method": "beta", "probs": [[0.2, 0.3, 0.5]], "labels": [0]}, "#/probs", "must be binary"),
        ({"method": "nope", "logits": [[0, 1]], "labels": [0]}, "#/method", None),
        ({"logits": [[0, 1]], "labels": [0]}, "#/method", "required"),
        (
            {"method": "platt", "target_smoothing": True, "logits": [0.1], "targets": [0.3]},
            "#/target_smoothing",
            "hard",
        ),
        ({"method": "histogram", "n_bins": 0, "logits": [0.1], "labels": [1]}, "#/n_bins", None),
        ({"method": "matrix", "off_diagonal": -1, "logits": [[0, 1]], "labels": [0]}, "#/off_diagonal", None),
        ({"method": "matrix", "logits": [list(range(51))], "labels": [0]}, "#/method", r"K ≤ 50"),
    ],
)
def test_recalibrate_bad_input_is_problem_json(client, payload, pointer, match):
    assert_problem(client.post("/v1/recalibrate", json=payload), 422, pointer, match)


@pytest.mark.parametrize(
    ("parameters", "pointer", "match"),
    [
        ({"method": "vector", "scale": [1, 1], "bias": [0, 0, 0]}, "#/parameters/scale", r"shape \[3\]"),
        (
            {"method": "matrix", "weights": [[1, 0], [0, 1]], "bias": [0, 0, 0]},
            "#/parameters/weights",
            "shape",
        ),
        (
            {"method": "matrix", "weights": [[1, 0, 0], [0, 1]], "bias": [0, 0, 0]},
            "#/parameters/weights",
            "rectangular",
        ),
        ({"method": "platt", "a": 1, "b": 0}, "#/logits", "must be binary"),
        ({"method": "beta", "a": -1, "b": 0, "c": 0}, "#/parameters/a", None),
        (
            {"method": "vector", "scale": [1, "NaN", 1], "bias": [0, 0, 0]},
            "#/parameters/scale/1",
            None,
        ),
        ({"method": "isotonic", "knots": [{"x": [0, 1], "y": [0, 1]}]}, "#/parameters/knots", "3 knot set"),
        (
            {"method": "isotonic", "knots": [{"x": [1, 0], "y": [0, 1]}] * 3},
            "#/parameters/knots/0",
            "non-decreasing",
        ),
        ({"method": "isotonic", "knots": [{"x": [0, 1], "y": [0]}] * 3}, "#/parameters/knots/0", "pair"),
        (
            {"method": "histogram", "edges": [0, 0.7, 0.5, 1], "values": [[0, 0, 0]] * 3},
            "#/parameters/edges",
            "increase",
        ),
        ({"method": "histogram", "edges": [0, 1], "values": [[0.5]]}, "#/parameters/values", "shape"),
    ],
)
def test_apply_bad_parameters_are_problem_json(client, parameters, pointer, match):
    payload = {"logits": [[0.0, 1.0, 2.0]], "parameters": parameters}
    assert_problem(client.post("/v1/apply", json=payload), 422, pointer, match)


def test_recalibrate_iteration_cap_is_reported(client, rng):
    logits, labels = categorical(rng, n=300)
    body = client.post(
        "/v1/recalibrate", json={"logits": logits, "labels": labels, "method": "vector", "max_iter": 2}
    ).json()
    assert (body["converged"], body["iterations"]) == (False, 2)
    assert "ITERATIONS" in body["message"]


DEGENERATE = {
    "n1": ([0.3], [1]),
    "single_class": ([2.0, -1.0, 0.5], [1, 1, 1]),
    "separable": ([3.0, -2.0, 1.0, -1.0], [1, 0, 1, 0]),
    "all_wrong": ([3.0, -2.0, 1.0, -1.0], [0, 1, 0, 1]),
    "constant": ([[1.0, 1.0], [1.0, 1.0]], [0, 1]),
    "extreme": ([1e4, -1e4, 3.0], [1, 0, 0]),
}


@pytest.mark.parametrize(
    "method", ["temperature", "vector", "matrix", "platt", "beta", "isotonic", "histogram"]
)
@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_recalibrate_degenerate_batches_are_answered(client, method, case):
    logits, labels = DEGENERATE[case]
    payload = {"logits": logits, "labels": labels}
    response = client.post("/v1/recalibrate", json=payload | {"method": method})
    assert response.status_code == 200, response.text
    body = response.json()
    assert isinstance(body["converged"], bool) and body["message"]
    applied = client.post("/v1/apply", json=payload | {"parameters": body["parameters"]})
    assert applied.json()["metrics"] == body["after"]


@pytest.mark.parametrize("method", ["isotonic", "matrix", "platt"])
def test_maps_without_scipy_answer_501(client, rng, monkeypatch, method):
    """scipy is the optional `maps` extra: without it these methods say so, temperature still works."""
    import service.core._optional as optional

    def no_scipy(name):
        raise ImportError(name)

    monkeypatch.setattr(optional.importlib, "import_module", no_scipy)
    logits, labels = binary(rng) if method == "platt" else categorical(rng)
    response = client.post("/v1/recalibrate", json={"logits": logits, "labels": labels, "method": method})
    body = assert_problem(response, 501, match=r"needs scipy.*xent-service\[maps\]")
    assert body["status"] == 501
    response = client.post(
        "/v1/recalibrate", json={"logits": logits, "labels": labels, "method": "temperature"}
    )
    assert response.status_code == 200
