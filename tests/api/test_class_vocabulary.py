"""`classes` and `pos_label` on /v1/cross-entropy and /v1/calibration, as scikit-learn's `labels=` (#20)."""

import numpy as np
import pytest
from scipy.special import expit, softmax
from sklearn.metrics import brier_score_loss, log_loss

from tests.conftest import assert_problem


def _post(client, path, **body):
    response = client.post(path, json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("classes", [["bird", "cat", "dog"], [3, 7, 11]])
def test_named_labels_match_log_loss_with_labels(client, rng, classes):
    probs = softmax(rng.standard_normal((200, 3)), axis=1)
    names = np.asarray(classes)[rng.integers(0, 3, size=200)].tolist()
    got = _post(client, "/v1/cross-entropy", probs=probs.tolist(), labels=names, classes=classes)
    assert got["loss"] == pytest.approx(log_loss(names, probs, labels=classes), rel=1e-12)
    assert got["convention"]["classes"] == classes


def test_single_class_y_is_scored_against_the_declared_classes(client, rng):
    probs = softmax(rng.standard_normal((20, 3)), axis=1)
    names = ["cat"] * 20
    classes = ["bird", "cat", "dog"]
    got = _post(client, "/v1/cross-entropy", probs=probs.tolist(), labels=names, classes=classes)
    assert got["loss"] == pytest.approx(log_loss(names, probs, labels=classes), rel=1e-12)
    calibration = _post(client, "/v1/calibration", probs=probs.tolist(), labels=names, classes=classes)
    assert calibration["convention"]["classes"] == classes
    assert calibration["metrics"]["accuracy"] == pytest.approx(np.mean(probs.argmax(axis=1) == 1), abs=1e-15)


@pytest.mark.parametrize("pos_label", ["spam", "ham"])
def test_pos_label_matches_brier_score_loss_and_log_loss(client, rng, pos_label):
    z = 2 * rng.standard_normal(300)
    p = expit(z)  # the probability of `pos_label`
    names = np.array(["ham", "spam"])[rng.integers(0, 2, size=300)].tolist()
    body = {"probs": p.tolist(), "labels": names, "classes": ["ham", "spam"], "pos_label": pos_label}
    got = _post(client, "/v1/calibration", **body, metrics=["brier"], brier_scale="half")
    assert got["metrics"]["brier"] == pytest.approx(
        brier_score_loss(names, p, pos_label=pos_label), rel=1e-12
    )
    assert got["convention"]["pos_label"] == pos_label
    y = (np.asarray(names) == pos_label).astype(int)  # log_loss's columns: [not pos_label, pos_label]
    ce = _post(
        client, "/v1/cross-entropy", logits=z.tolist(), **{k: v for k, v in body.items() if k != "probs"}
    )
    assert ce["loss"] == pytest.approx(log_loss(y, p), rel=1e-10)


def test_more_classes_than_columns_is_a_problem_naming_both_counts(client):
    body = {"probs": [[0.5, 0.5]], "labels": ["a"], "classes": ["a", "b", "c"]}
    for path in ("/v1/cross-entropy", "/v1/calibration"):
        assert_problem(client.post(path, json=body), 422, "#/classes", "3 classes.*2 columns")
    with pytest.raises(ValueError, match="number of classes"):  # scikit-learn refuses it too
        log_loss(["a"], [[0.5, 0.5]], labels=["a", "b", "c"])


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"labels": ["a", "z"]}, "#/labels/1", "'z' is not one of"),
        ({"labels": ["a", 1]}, "#/labels/1", "not one of"),
        ({"labels": [0, 1]}, "#/labels", "list of strings"),
        ({"classes": ["a", "a"]}, "#/classes", "distinct"),
        ({"pos_label": "q"}, "#/pos_label", "not one of"),
        ({"classes": None, "pos_label": "a"}, "#/pos_label", "needs `classes`"),
        ({"ignore_index": -100}, "#/ignore_index", "classes"),
    ],
)
def test_bad_vocabulary_is_a_problem_naming_the_field(client, extra, pointer, match):
    body = {"probs": [0.3, 0.8], "labels": ["a", "b"], "classes": ["a", "b"], **extra}
    body = {k: v for k, v in body.items() if v is not None}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, pointer, match)


def test_pos_label_on_categorical_input_is_a_problem(client):
    body = {"probs": [[0.2, 0.3, 0.5]], "labels": ["a"], "classes": ["a", "b", "c"], "pos_label": "a"}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/pos_label", "binary input only")


def test_mixed_class_names_are_a_problem_naming_classes(client):
    body = {"probs": [0.3, 0.8], "labels": ["a", "b"], "classes": ["a", 1]}
    problem = assert_problem(client.post("/v1/cross-entropy", json=body), 422)
    assert all(error["pointer"].startswith("#/classes/") for error in problem["errors"]), problem
