import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax, logit
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV, _sigmoid_calibration
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from service.core import InputError, fit_temperature
from service.core.maps.binary import fit_beta, fit_platt
from service.core.maps.nonparametric import fit_histogram, fit_isotonic
from service.core.maps.scaling import fit_matrix_scaling, fit_vector_scaling


def categorical(rng, n=2000, k=4):
    z = 2 * rng.standard_normal((n, k))
    skew = np.linspace(0.5, 2.0, k)  # classes miscalibrated differently
    p = np.exp(log_softmax(z * skew + 0.3, axis=1))
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels


def binary(rng, n=3000):
    s = 2 * rng.standard_normal(n)
    labels = (rng.random(n) < expit(0.6 * s - 0.4)).astype(np.int64)
    return s, labels


def nll(log_probs, labels):
    return -np.mean(log_probs[np.arange(len(labels)), labels])


def torch_gradient(loss_fn, params):
    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    loss_fn(*tensors).backward()
    return [t.grad.numpy() for t in tensors]


def test_vector_scaling_zeroes_the_torch_gradient_and_beats_temperature(rng):
    z, labels = categorical(rng)
    fit, info = fit_vector_scaling(z, labels=labels)
    assert info.converged
    zt, yt = torch.from_numpy(z), torch.from_numpy(labels)
    grads = torch_gradient(
        lambda w, b: torch.nn.functional.cross_entropy(zt * w + b, yt), [fit.scale, fit.bias]
    )
    assert max(np.abs(g).max() for g in grads) < 1e-6
    t = fit_temperature(z, labels=labels)
    assert nll(fit.log_probs(z), labels) <= t.nll


def test_matrix_scaling_matches_unpenalised_logistic_regression(rng):
    z, labels = categorical(rng, k=3)
    fit, info = fit_matrix_scaling(z, labels=labels)
    assert info.converged
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, labels)
    np.testing.assert_allclose(np.exp(fit.log_probs(z)), reference.predict_proba(z), atol=1e-5)
    assert nll(fit.log_probs(z), labels) <= nll(np.log(reference.predict_proba(z)), labels) + 1e-12


def test_matrix_scaling_penalties_shrink_toward_the_identity(rng):
    z, labels = categorical(rng, n=300, k=3)
    free, _ = fit_matrix_scaling(z, labels=labels)
    odir, info = fit_matrix_scaling(z, labels=labels, off_diagonal=10.0, bias_l2=10.0)
    off = ~np.eye(3, dtype=bool)
    assert info.converged
    assert np.abs(odir.weights[off]).sum() < np.abs(free.weights[off]).sum()
    assert np.abs(odir.bias).sum() < np.abs(free.bias).sum()
    zt, yt = torch.from_numpy(z), torch.from_numpy(labels)

    def objective(w, b):
        return (
            torch.nn.functional.cross_entropy(zt @ w.T + b, yt)
            + 10.0 * (w[torch.from_numpy(off)] ** 2).sum() / 6
            + 10.0 * (b**2).mean()
        )

    grads = torch_gradient(objective, [odir.weights, odir.bias])
    assert max(np.abs(g).max() for g in grads) < 1e-6


def test_platt_with_smoothing_matches_sklearn_sigmoid(rng):
    s, labels = binary(rng)
    fit, info = fit_platt(s, labels=labels, target_smoothing=True)
    a, b = _sigmoid_calibration(s, labels)
    assert info.converged
    assert (fit.a, fit.b) == pytest.approx((-a, -b), rel=1e-4)


class BinaryPassthrough(ClassifierMixin, BaseEstimator):
    """A binary 'classifier' whose decision function is its single feature."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return X[:, 0]

    def predict(self, X):
        return (X[:, 0] > 0).astype(int)


def test_platt_with_smoothing_matches_calibrated_classifier_sigmoid(rng):
    s, labels = binary(rng)
    features = s[:, None]
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(BinaryPassthrough().fit(features, labels)), method="sigmoid"
    )
    calibrated.fit(features, labels)
    fit, _ = fit_platt(s, labels=labels, target_smoothing=True)
    np.testing.assert_allclose(np.exp(fit.log_probs(s)), calibrated.predict_proba(features), rtol=1e-4)


def test_platt_matches_logistic_regression(rng):
    s, labels = binary(rng)
    fit, _ = fit_platt(s, labels=labels)
    reference = LogisticRegression(C=np.inf, tol=1e-12).fit(s[:, None], labels)
    assert (fit.a, fit.b) == pytest.approx((reference.coef_[0, 0], reference.intercept_[0]), rel=1e-6)
    np.testing.assert_allclose(np.exp(fit.log_probs(s))[:, 1], expit(fit.a * s + fit.b))


def test_platt_smoothing_keeps_separable_data_finite():
    s = np.array([-3.0, -1.0, 1.0, 3.0])
    fit, info = fit_platt(s, labels=np.array([0, 0, 1, 1]), target_smoothing=True)
    assert info.converged and np.isfinite(fit.a)


def test_platt_rejects_categorical_and_soft_smoothing(rng):
    with pytest.raises(InputError, match="must be binary"):
        fit_platt(rng.standard_normal((5, 3)), labels=np.zeros(5, dtype=int))
    with pytest.raises(InputError, match="hard `labels` only"):
        fit_platt(np.zeros(2), targets=np.array([[0.5, 0.5], [0.2, 0.8]]), target_smoothing=True)


def test_beta_calibration_matches_logistic_regression_on_log_features(rng):
    q = rng.beta(2, 5, size=3000)
    labels = (rng.random(3000) < q**0.5).astype(np.int64)
    fit, info = fit_beta(logit(q), labels=labels)
    features = np.stack([np.log(q), -np.log1p(-q)], axis=1)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(features, labels)
    assert info.converged and fit.a > 0 and fit.b > 0
    assert (fit.a, fit.b, fit.c) == pytest.approx((*reference.coef_[0], reference.intercept_[0]), rel=1e-5)


def test_beta_calibration_bounds_a_negative_coefficient_at_zero(rng):
    q = rng.random(2000)
    labels = (rng.random(2000) < 0.3).astype(np.int64)  # uninformative: an unconstrained fit goes negative
    fit, info = fit_beta(logit(q), labels=labels)
    assert info.converged and fit.a >= 0 and fit.b >= 0


@pytest.mark.parametrize("k", [2, 4])
def test_isotonic_matches_sklearn(rng, k):
    z, labels = categorical(rng, n=1500, k=k)
    fit, _ = fit_isotonic(z, labels=labels)
    probs = np.exp(log_softmax(z, axis=1))
    columns = [1] if k == 2 else range(k)
    expected = []
    for c, x, y in zip(columns, fit.x, fit.y, strict=True):
        reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(probs[:, c], labels == c)
        np.testing.assert_allclose(x, reference.X_thresholds_, rtol=1e-12)
        np.testing.assert_allclose(y, reference.y_thresholds_, rtol=1e-12, atol=1e-15)
        expected.append(reference.predict(probs[:, c]))
    mapped = np.stack(expected, axis=1)
    mapped = np.concatenate([1 - mapped, mapped], axis=1) if k == 2 else mapped / mapped.sum(1, keepdims=True)
    np.testing.assert_allclose(np.exp(fit.log_probs(z)), mapped, rtol=1e-12, atol=1e-15)


def test_histogram_binning_is_the_mean_label_per_bin(rng):
    s, labels = binary(rng)
    fit, _ = fit_histogram(s, labels=labels, n_bins=10)
    q = expit(s)
    for b in range(10):  # reference: a loop over bins
        inside = (q > b / 10) & (q <= (b + 1) / 10)
        expected = labels[inside].mean() if inside.any() else (b + 0.5) / 10
        assert fit.values[0, b] == pytest.approx(expected, rel=1e-12)
    mapped = np.exp(fit.log_probs(s))[:, 1]
    np.testing.assert_allclose(mapped, fit.values[0, np.clip(np.ceil(q * 10).astype(int) - 1, 0, 9)])


def test_beta_map_with_huge_parameters_saturates_without_overflow_warnings():
    """Found by schemathesis: a and b near the float64 limit overflowed a · ln q (a RuntimeWarning, a 500)."""
    from service.core.maps.binary import BetaCalibration

    scores = logit(np.array([0.001, 0.5, 0.999]))  # the map takes positive-class logits
    log_p = BetaCalibration(a=1e308, b=1e308, c=0.0).log_probs(scores)
    # q < 0.5: ln q < ln(1 - q), the logit runs to -inf (p = 0); q > 0.5 to +inf (p = 1)
    np.testing.assert_array_equal(np.exp(log_p[:, 1]), [0.0, 0.5, 1.0])
