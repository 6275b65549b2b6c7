"""Platt and beta maps on binary logits whose difference ``s1 − s0`` is past float64.

Found by the contract test: logits ``[1e308, −1e308]`` made ``s1 − s0`` overflow to inf;
a zero coefficient then gave ``0 · inf`` = NaN probabilities, and a small one −inf
where the log-probability is finite. The maps now work on the halved logit.
"""

import mpmath
import numpy as np
import pytest
from scipy.special import expit, log_expit
from sklearn.linear_model import LogisticRegression

from service.core.maps.binary import BetaCalibration, PlattScaling, fit_beta, fit_platt
from service.core.maps.scaling import fit_matrix_scaling

PAST = np.array([[-1e308, 1e308], [1e308, -1e308]])  # s = s1 − s0 = ±2e308


@pytest.mark.parametrize("mapping", [PlattScaling(0.0, 1.25), BetaCalibration(0.0, 0.0, 1.25)])
def test_a_zero_coefficient_ignores_the_logit(mapping):
    """σ(b) (Platt) and σ(c) (beta) whatever the logit: not NaN."""
    log_p = mapping.log_probs(PAST)
    np.testing.assert_array_equal(log_p, [[log_expit(-1.25), log_expit(1.25)]] * 2)


@pytest.mark.parametrize("mapping", [PlattScaling(1e-300, 0.0), BetaCalibration(1e-300, 1e-300, 0.0)])
def test_a_small_coefficient_gives_the_finite_logit(mapping):
    """a·(±2e308) = ±2e8 (Platt); beta's a·ln q is ~0 and −b·ln(1 − q) = ±2e8: log p = −2e8, not −inf."""
    mpmath.mp.prec = 200
    s = mpmath.mpf(1e308) - mpmath.mpf(-1e308)
    logit = mpmath.mpf(1e-300) * s
    expected = float(-logit - mpmath.log1p(mpmath.exp(-logit)))  # ln σ(−logit)
    log_p = mapping.log_probs(PAST)
    assert log_p[0, 0] == pytest.approx(expected, rel=1e-15) and log_p[0, 1] == 0.0
    assert log_p[1, 1] == pytest.approx(expected, rel=1e-15) and log_p[1, 0] == 0.0


@pytest.fixture
def binary_data():
    rng = np.random.default_rng(7)
    s = 3 * rng.standard_normal(400)
    labels = (rng.random(400) < expit(0.7 * s - 0.2)).astype(np.int64)
    return s, labels


def test_platt_fit_on_logits_past_the_range_is_the_scaled_fit(binary_data):
    """σ(a·s + b) on s·2**1000 is σ((a·2**1000)·s + b): the same logistic regression as sklearn's on s."""
    s, labels = binary_data
    scale = 2.0**1000
    fit, info = fit_platt(np.stack([-s * scale / 2, s * scale / 2], axis=1), labels=labels)
    reference = LogisticRegression(C=np.inf, tol=1e-12).fit(s[:, None], labels)
    assert info.converged
    assert (fit.a * scale, fit.b) == pytest.approx((reference.coef_[0, 0], reference.intercept_[0]), rel=1e-6)


def test_beta_fit_on_logits_past_the_range_matches_logistic_regression(binary_data):
    """At |s| ~ 1e300, ln q = min(s, 0) and −ln(1 − q) = max(s, 0) up to ln 2: sklearn on those features."""
    s, labels = binary_data
    scale = 2.0**1000
    fit, info = fit_beta(np.stack([-s * scale / 2, s * scale / 2], axis=1), labels=labels)
    features = np.stack([np.minimum(s, 0), np.maximum(s, 0)], axis=1)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(features, labels)
    assert info.converged and reference.coef_.min() > 0  # the bounds a, b ≥ 0 are not active
    expected = (*reference.coef_[0], reference.intercept_[0])
    assert (fit.a * scale, fit.b * scale, fit.c) == pytest.approx(expected, rel=1e-6)


def test_matrix_scaling_with_a_bias_penalty_near_the_float64_limit_fits_without_a_bias():
    """Found by the contract test: ``bias_l2: 1.09e308`` made ``2 · bias_l2`` inf and its gradient
    ``inf · 0`` NaN (a 500). The penalty pins b at 0: the fit is sklearn's without an intercept."""
    rng = np.random.default_rng(3)
    z = 2 * rng.standard_normal((1500, 3))
    labels = (
        np.exp(z * [0.5, 1.0, 1.5]).cumsum(1) / np.exp(z * [0.5, 1.0, 1.5]).sum(1, keepdims=True)
        > rng.random((1500, 1))
    ).argmax(1)
    fit, info = fit_matrix_scaling(z, labels=labels, bias_l2=1.0895620281033633e308)
    reference = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(z, labels)
    assert info.converged and np.all(np.abs(fit.bias) < 1e-200)
    np.testing.assert_allclose(np.exp(fit.log_probs(z)), reference.predict_proba(z), atol=1e-5)
