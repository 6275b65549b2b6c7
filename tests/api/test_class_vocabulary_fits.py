"""`classes` and `pos_label` on /v1/temperature, /v1/recalibrate and /v1/apply (#20)."""

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.calibration import _sigmoid_calibration
from sklearn.metrics import log_loss

from tests.api.test_recalibrate import binary, categorical
from tests.conftest import assert_problem

METHODS = ["temperature", "vector", "matrix", "isotonic", "histogram"]


def _post(client, path, body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("classes", [["bird", "cat", "dog"], [3, 7, 11]])
@pytest.mark.parametrize("method", METHODS)
def test_named_labels_fit_as_their_column_indices(client, rng, classes, method):
    logits, labels = categorical(rng, n=300, k=3)
    names = np.asarray(classes)[labels].tolist()
    s = rng.uniform(0, 2, size=300).tolist()
    named = _post(
        client,
        "/v1/recalibrate",
        {"logits": logits, "labels": names, "classes": classes, "method": method, "sample_weight": s},
    )
    indexed = _post(
        client, "/v1/recalibrate", {"logits": logits, "labels": labels, "method": method, "sample_weight": s}
    )
    assert named["parameters"] == indexed["parameters"]
    assert named["after"] == indexed["after"]
    assert named["convention"]["classes"] == classes
    probs = softmax(np.asarray(logits), axis=1)
    assert named["before"]["nll"] == pytest.approx(log_loss(names, probs, labels=classes, sample_weight=s))
    applied = _post(
        client,
        "/v1/apply",
        {"logits": logits, "labels": names, "classes": classes, "sample_weight": s}
        | {"parameters": named["parameters"]},
    )
    assert applied["metrics"] == named["after"]
    assert applied["convention"]["classes"] == classes


def test_temperature_takes_classes_and_a_single_class_y(client, rng):
    logits, _ = categorical(rng, n=100, k=3)
    classes = ["bird", "cat", "dog"]
    names = ["cat"] * 100  # one class present, scored against all three declared
    got = _post(client, "/v1/temperature", {"logits": logits, "labels": names, "classes": classes})
    indexed = _post(client, "/v1/temperature", {"logits": logits, "labels": [1] * 100})
    assert got["temperature"] == indexed["temperature"]
    probs = softmax(np.asarray(logits), axis=1)
    assert got["before"]["nll"] == pytest.approx(log_loss(names, probs, labels=classes), rel=1e-12)
    assert got["convention"]["classes"] == classes


@pytest.mark.parametrize("pos_label", ["spam", "ham"])
def test_pos_label_picks_the_class_the_scores_are_for(client, rng, pos_label):
    s, _ = binary(rng)
    z = np.asarray(s)
    names = np.array(["ham", "spam"])[(rng.random(z.size) < expit(0.6 * z - 0.4)).astype(int)]
    body = {"logits": s, "labels": names.tolist(), "classes": ["ham", "spam"], "pos_label": pos_label}
    got = _post(client, "/v1/recalibrate", body | {"method": "platt", "target_smoothing": True})
    a, b = _sigmoid_calibration(z, (names == pos_label).astype(int))
    assert (got["parameters"]["a"], got["parameters"]["b"]) == pytest.approx((-a, -b), rel=1e-4)
    assert got["convention"]["pos_label"] == pos_label
    temperature = _post(client, "/v1/temperature", body)
    indexed = _post(
        client, "/v1/temperature", {"logits": s, "labels": (names == pos_label).astype(int).tolist()}
    )
    assert temperature["temperature"] == indexed["temperature"]
    applied = _post(client, "/v1/apply", body | {"parameters": got["parameters"]})
    assert applied["metrics"] == got["after"]


def test_more_classes_than_columns_is_a_problem_naming_both_counts(client):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": ["a", "b"], "classes": ["a", "b", "c"]}
    for path, extra in (
        ("/v1/temperature", {}),
        ("/v1/recalibrate", {"method": "vector"}),
        ("/v1/apply", {"temperature": 1.0}),
    ):
        assert_problem(client.post(path, json=body | extra), 422, "#/classes", "3 classes.*2 columns")


def test_vocabulary_errors_on_fits_name_their_field(client):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": ["a", "z"], "classes": ["a", "b"]}
    assert_problem(client.post("/v1/temperature", json=body), 422, "#/labels/1", "not one of `classes`")
    pos = {"logits": [[0.0, 1.0, 0.0]], "labels": ["a"], "classes": ["a", "b", "c"], "pos_label": "a"}
    assert_problem(client.post("/v1/recalibrate", json=pos | {"method": "vector"}), 422, "#/pos_label")
    ignored = body | {"labels": ["a", "b"], "ignore_index": -100}
    assert_problem(client.post("/v1/temperature", json=ignored), 422, "#/ignore_index")
