"""Isotonic calibration of raw scores on /v1/recalibrate and /v1/apply (#20), against scikit-learn.

scikit-learn's ``CalibratedClassifierCV(FrozenEstimator(clf), method="isotonic")`` fitted on
scores ``S`` (a classifier whose ``decision_function`` is the identity) is the reference:
its ``predict_proba`` on new scores must equal /v1/apply's output with the fitted parameters.
"""

import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.svm import LinearSVC

from tests.conftest import assert_problem


class ScorePassthrough(ClassifierMixin, BaseEstimator):
    """A fitted classifier whose decision_function returns its input: sklearn sees the scores we send."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        X = np.asarray(X, dtype=np.float64)
        return X[:, 0] if len(self.classes_) == 2 else X

    def predict(self, X):
        scores = self.decision_function(X)
        return self.classes_[(scores > 0).astype(int) if scores.ndim == 1 else np.argmax(scores, axis=1)]


def _sklearn(scores, labels, method="isotonic"):
    X = scores[:, None] if scores.ndim == 1 else scores
    clf = ScorePassthrough().fit(X, labels)
    return CalibratedClassifierCV(FrozenEstimator(clf), method=method).fit(X, labels)


def _predict(calibrated, scores):
    return calibrated.predict_proba(scores[:, None] if scores.ndim == 1 else scores)


def _fit(client, scores, labels, **extra):
    body = {"scores": scores.tolist(), "labels": labels.tolist(), "method": "isotonic", **extra}
    response = client.post("/v1/recalibrate", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _apply(client, parameters, scores):
    response = client.post("/v1/apply", json={"parameters": parameters, "scores": scores.tolist()})
    assert response.status_code == 200, response.text
    return np.asarray(response.json()["probs"])


def test_binary_scores_match_calibrated_classifier_cv(client, rng):
    scores = np.round(6 * rng.standard_normal(300) + 1.5, 2)  # unbounded, with ties
    labels = (rng.random(300) < 1 / (1 + np.exp(-scores / 3))).astype(np.int64)
    calibrated = _sklearn(scores, labels)
    fit = _fit(client, scores, labels, return_probs=True)
    iso = calibrated.calibrated_classifiers_[0].calibrators[0]
    assert fit["parameters"]["input"] == "scores" and len(fit["parameters"]["knots"]) == 1
    np.testing.assert_allclose(fit["parameters"]["knots"][0]["x"], iso.X_thresholds_, rtol=0, atol=0)
    np.testing.assert_allclose(fit["parameters"]["knots"][0]["y"], iso.y_thresholds_, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(fit["probs"], _predict(calibrated, scores)[:, 1], rtol=1e-12, atol=1e-12)
    new = np.concatenate([40 * rng.standard_normal(200), [-1e6, 1e6, scores.min(), scores.max()]])
    np.testing.assert_allclose(
        _apply(client, fit["parameters"], new), _predict(calibrated, new)[:, 1], rtol=1e-12, atol=1e-12
    )


def test_multiclass_scores_match_calibrated_classifier_cv_one_vs_rest(client, rng):
    X, y = make_classification(600, n_features=8, n_informative=6, n_classes=4, random_state=7)
    svm = LinearSVC(random_state=0).fit(X[:300], y[:300])  # decision_function: unbounded N×4
    scores_cal, scores_new = svm.decision_function(X[300:450]), svm.decision_function(X[450:])
    calibrated = _sklearn(scores_cal, y[300:450])
    fit = _fit(client, scores_cal, y[300:450])
    assert len(fit["parameters"]["knots"]) == 4
    got = _apply(client, fit["parameters"], scores_new)
    np.testing.assert_allclose(got, _predict(calibrated, scores_new), rtol=1e-12, atol=1e-12)
    # the same as sklearn's own SVC pipeline: CalibratedClassifierCV on the frozen LinearSVC
    reference = CalibratedClassifierCV(FrozenEstimator(svm), method="isotonic").fit(X[300:450], y[300:450])
    np.testing.assert_allclose(got, reference.predict_proba(X[450:]), rtol=1e-12, atol=1e-12)


def test_rows_whose_maps_all_give_zero_become_uniform_as_sklearn(client, rng):
    scores = 5 * rng.standard_normal((120, 3))
    labels = np.argmax(scores + rng.standard_normal((120, 3)), axis=1)
    calibrated = _sklearn(scores, labels)
    fit = _fit(client, scores, labels)
    new = np.vstack([np.full((2, 3), -1e3), 5 * rng.standard_normal((50, 3))])  # below every knot
    expected = _predict(calibrated, new)
    np.testing.assert_allclose(expected[:2], 1 / 3)  # the case under test happens in sklearn too
    np.testing.assert_allclose(_apply(client, fit["parameters"], new), expected, rtol=1e-12, atol=1e-12)


def test_score_knots_differ_from_the_probability_map(client, rng):
    """Raw scores are mapped as sent: the probability map (x = σ(s)) has the same y but other x."""
    scores = 8 * rng.standard_normal(100)
    labels = (rng.random(100) < 0.5).astype(np.int64)
    on_scores = _fit(client, scores, labels)["parameters"]
    on_logits = client.post(
        "/v1/recalibrate", json={"logits": scores.tolist(), "labels": labels.tolist(), "method": "isotonic"}
    ).json()["parameters"]
    assert on_logits["input"] == "probs"
    reference = IsotonicRegression(out_of_bounds="clip").fit(scores, labels)
    np.testing.assert_allclose(on_scores["knots"][0]["x"], reference.X_thresholds_)
    assert on_scores["knots"][0]["y"] == pytest.approx(on_logits["knots"][0]["y"])


@pytest.mark.parametrize(
    ("body", "pointer", "match"),
    [
        ({"scores": [0.5, -2.0], "labels": [0, 1], "method": "beta"}, "#/scores", "isotonic"),
        (
            {"scores": [[0.5, -2.0, 1.0], [1.0, 3.0, 0.0]], "labels": [0, 1], "method": "platt"},
            "#/scores",
            "binary",
        ),
        ({"scores": [[0.5, -2.0], [1.0, 3.0]], "labels": [0, 1], "method": "isotonic"}, "#/scores", "K ≥ 3"),
        (
            {"scores": [0.5, -2.0], "logits": [0.5, 1.0], "labels": [0, 1], "method": "isotonic"},
            "#/scores",
            "logits",
        ),
        ({"scores": [0.5, 3.0], "labels": [0, 1]}, "#/scores", "isotonic"),
    ],
)
def test_bad_scores_are_a_problem_naming_them(client, body, pointer, match):
    url = "/v1/recalibrate" if "method" in body else "/v1/temperature"
    assert_problem(client.post(url, json=body), 422, pointer, match)


def test_score_parameters_apply_to_scores_only(client, rng):
    scores = 3 * rng.standard_normal(50)
    labels = (rng.random(50) < 0.5).astype(np.int64)
    parameters = _fit(client, scores, labels)["parameters"]
    wrong = client.post("/v1/apply", json={"parameters": parameters, "logits": scores.tolist()})
    assert_problem(wrong, 422, "#/parameters/input", "scores")
    probability_map = {**parameters, "input": "probs"}
    wrong = client.post("/v1/apply", json={"parameters": probability_map, "scores": scores.tolist()})
    assert_problem(wrong, 422, "#/scores", "input: scores")


def test_binary_scores_platt_matches_sigmoid_method(client, rng):
    """sklearn's method="sigmoid" on binary scores is Platt's fit with smoothed targets, A = -a, B = -b."""
    scores = 40 * rng.standard_normal(400)  # |s| ≥ 30: sklearn rescales before fitting, the optimum stays
    labels = (rng.random(400) < 1 / (1 + np.exp(-scores / 15))).astype(np.int64)
    calibrated = _sklearn(scores, labels, method="sigmoid")
    fit = _fit(client, scores, labels, method="platt", target_smoothing=True)
    sigmoid = calibrated.calibrated_classifiers_[0].calibrators[0]
    assert fit["parameters"]["a"] == pytest.approx(-sigmoid.a_, rel=1e-5)
    assert fit["parameters"]["b"] == pytest.approx(-sigmoid.b_, rel=1e-5, abs=1e-6)
    new = 60 * rng.standard_normal(100)
    np.testing.assert_allclose(
        _apply(client, fit["parameters"], new), _predict(calibrated, new)[:, 1], atol=1e-6
    )


@pytest.mark.parametrize("k", [1, 4])
def test_weighted_score_fit_matches_sklearn_sample_weight(client, rng, k):
    """Weights as IsotonicRegression.fit takes them: zero weights dropped, tied scores pooled by weight."""
    n = 250
    scores = np.round(3 * rng.standard_normal(n if k == 1 else (n, k)), 1)  # many ties
    labels = rng.integers(0, 2 if k == 1 else k, size=n)
    weights = rng.integers(0, 4, size=n).astype(np.float64)
    X = scores[:, None] if k == 1 else scores
    clf = ScorePassthrough().fit(X, labels)
    with warnings.catch_warnings():  # "FrozenEstimator does not appear to accept sample_weight": it is fitted
        warnings.filterwarnings("ignore", "Since FrozenEstimator", UserWarning)
        calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="isotonic")
        calibrated.fit(X, labels, sample_weight=weights)
    fit = _fit(client, scores, labels, sample_weight=weights.tolist())
    new = 4 * rng.standard_normal(100 if k == 1 else (100, k))
    expected = _predict(calibrated, new)
    np.testing.assert_allclose(
        _apply(client, fit["parameters"], new), expected[:, 1] if k == 1 else expected, rtol=1e-12, atol=1e-12
    )
    assert fit["convention"]["sample_weight"]


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("weighted", [False, True])
def test_sigmoid_on_scores_matches_sklearn_one_vs_rest(client, rng, k, weighted):
    """method sigmoid: sklearn's _SigmoidCalibration per class on raw scores, rows renormalised."""
    n = 300
    scores = 20 * rng.standard_normal(n if k == 1 else (n, k))  # |s| ≥ 30 in places: sklearn rescales
    labels = rng.integers(0, 2 if k == 1 else k, size=n)
    if k > 1:
        labels = np.argmax(scores / 20 + rng.standard_normal((n, k)), axis=1)
    weights = rng.integers(0, 4, size=n).astype(np.float64) if weighted else None
    X = scores[:, None] if k == 1 else scores
    clf = ScorePassthrough().fit(X, labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Since FrozenEstimator", UserWarning)
        calibrated = CalibratedClassifierCV(FrozenEstimator(clf), method="sigmoid")
        calibrated.fit(X, labels, sample_weight=weights)
    extra = {} if weights is None else {"sample_weight": weights.tolist()}
    fit = _fit(client, scores, labels, method="sigmoid", **extra)
    assert fit["converged"], fit["message"]
    sklearn_ab = [(-c.a_, -c.b_) for c in calibrated.calibrated_classifiers_[0].calibrators]
    np.testing.assert_allclose(fit["parameters"]["a"], [a for a, _ in sklearn_ab], rtol=1e-4)
    np.testing.assert_allclose(fit["parameters"]["b"], [b for _, b in sklearn_ab], rtol=1e-4, atol=1e-5)
    new = 30 * rng.standard_normal(100 if k == 1 else (100, k))
    expected = _predict(calibrated, new)
    got = _apply(client, fit["parameters"], new)
    np.testing.assert_allclose(got, expected[:, 1] if k == 1 else expected, atol=1e-6)


def test_sigmoid_needs_raw_scores(client):
    body = {"logits": [0.5, -2.0], "labels": [0, 1], "method": "sigmoid"}
    assert_problem(client.post("/v1/recalibrate", json=body), 422, "#/method", "scores")
    parameters = {"method": "sigmoid", "a": [1.0], "b": [0.0]}
    wrong = client.post("/v1/apply", json={"parameters": parameters, "logits": [0.5, 1.0]})
    assert_problem(wrong, 422, "#/parameters/input", "scores")
