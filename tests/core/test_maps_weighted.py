"""`sample_weight` in every recalibration map fit, against scikit-learn, torch and identities (#20)."""

import numpy as np
import pytest
import torch
from scipy.special import expit, log_softmax, logit
from sklearn.calibration import CalibratedClassifierCV, _sigmoid_calibration
from sklearn.frozen import FrozenEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from service.core import InputError
from service.core.maps.binary import fit_beta, fit_platt
from service.core.maps.nonparametric import fit_histogram, fit_isotonic
from service.core.maps.scaling import fit_matrix_scaling, fit_vector_scaling
from tests.core.test_maps import BinaryPassthrough, binary, categorical, torch_gradient


def test_weighted_platt_with_smoothing_matches_sklearn_sigmoid(rng):
    s, labels = binary(rng)
    w = rng.uniform(0, 3, size=s.size)
    fit, info = fit_platt(s, labels=labels, target_smoothing=True, sample_weight=w)
    a, b = _sigmoid_calibration(s, labels, sample_weight=w)
    assert info.converged
    assert (fit.a, fit.b) == pytest.approx((-a, -b), rel=1e-4)
    unweighted, _ = fit_platt(s, labels=labels, target_smoothing=True)
    assert abs(unweighted.a - fit.a) > 1e-3  # the weights matter


# The frozen estimator is not refitted: the weights go to the calibration only, which is what is compared.
@pytest.mark.filterwarnings("ignore:Since FrozenEstimator does not appear to accept sample_weight")
@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_weighted_fits_match_calibrated_classifier_cv_fit_with_sample_weight(rng, method):
    s, labels = binary(rng)
    w = rng.uniform(0, 3, size=s.size)
    features = s[:, None]
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(BinaryPassthrough().fit(features, labels)), method=method
    )
    calibrated.fit(features, labels, sample_weight=w)
    if method == "sigmoid":
        fit, _ = fit_platt(s, labels=labels, target_smoothing=True, sample_weight=w)
        rtol, atol = 1e-4, 0.0
    else:  # isotonic on σ(s) and on s pool the same rows: equal at the fitted points
        fit, _ = fit_isotonic(s, labels=labels, sample_weight=w)
        rtol, atol = 0.0, 1e-12
    np.testing.assert_allclose(
        np.exp(fit.log_probs(s)), calibrated.predict_proba(features), rtol=rtol, atol=atol
    )


def test_weighted_platt_matches_weighted_logistic_regression(rng):
    s, labels = binary(rng)
    w = rng.uniform(0, 3, size=s.size)
    fit, _ = fit_platt(s, labels=labels, sample_weight=w)
    reference = LogisticRegression(C=np.inf, tol=1e-12).fit(s[:, None], labels, sample_weight=w)
    assert (fit.a, fit.b) == pytest.approx((reference.coef_[0, 0], reference.intercept_[0]), rel=1e-6)


def test_weighted_beta_matches_weighted_logistic_regression(rng):
    q = rng.beta(2, 5, size=3000)
    labels = (rng.random(3000) < q**0.5).astype(np.int64)
    w = rng.uniform(0, 3, size=3000)
    fit, info = fit_beta(logit(q), labels=labels, sample_weight=w)
    features = np.stack([np.log(q), -np.log1p(-q)], axis=1)
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(
        features, labels, sample_weight=w
    )
    assert info.converged and fit.a > 0 and fit.b > 0
    assert (fit.a, fit.b, fit.c) == pytest.approx((*reference.coef_[0], reference.intercept_[0]), rel=1e-5)


def test_weighted_vector_scaling_zeroes_the_torch_weighted_nll_gradient(rng):
    z, labels = categorical(rng)
    w = rng.uniform(0, 3, size=labels.size)
    fit, info = fit_vector_scaling(z, labels=labels, sample_weight=w)
    assert info.converged
    zt, yt, wt = torch.from_numpy(z), torch.from_numpy(labels), torch.from_numpy(w)

    def weighted_nll(scale, bias):
        losses = torch.nn.functional.cross_entropy(zt * scale + bias, yt, reduction="none")
        return (wt * losses).sum() / wt.sum()

    grads = torch_gradient(weighted_nll, [fit.scale, fit.bias])
    assert max(np.abs(g).max() for g in grads) < 1e-6
    unweighted, _ = fit_vector_scaling(z, labels=labels)
    assert np.abs(unweighted.scale - fit.scale).max() > 1e-3


def test_weighted_matrix_scaling_matches_weighted_logistic_regression(rng):
    z, labels = categorical(rng, k=3)
    w = rng.uniform(0, 3, size=labels.size)
    fit, info = fit_matrix_scaling(z, labels=labels, sample_weight=w)
    assert info.converged
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, labels, sample_weight=w)
    np.testing.assert_allclose(np.exp(fit.log_probs(z)), reference.predict_proba(z), atol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_weighted_isotonic_matches_sklearn(rng, k):
    z, labels = categorical(rng, n=1500, k=k)
    w = rng.uniform(0, 3, size=labels.size)
    w[::7] = 0  # zero weights: scikit-learn drops those rows
    fit, _ = fit_isotonic(z, labels=labels, sample_weight=w)
    probs = np.exp(log_softmax(z, axis=1))
    columns = [1] if k == 2 else range(k)
    for c, x, y in zip(columns, fit.x, fit.y, strict=True):
        reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
            probs[:, c], labels == c, sample_weight=w
        )
        np.testing.assert_allclose(np.interp(probs[:, c], x, y), reference.predict(probs[:, c]), atol=1e-12)


def test_weighted_histogram_is_the_weighted_mean_label_per_bin(rng):
    s, labels = binary(rng)
    w = rng.uniform(0, 3, size=s.size)
    fit, _ = fit_histogram(s, labels=labels, n_bins=10, sample_weight=w)
    q = expit(s)
    bins = np.clip(np.ceil(q * 10).astype(int) - 1, 0, 9)  # (b/10, (b+1)/10]
    sums, _ = np.histogram(bins, bins=np.arange(11), weights=w * labels)
    totals, _ = np.histogram(bins, bins=np.arange(11), weights=w)
    np.testing.assert_allclose(fit.values[0], sums / totals, rtol=1e-12)


FITS = {
    "platt": lambda z, y, w: fit_platt(z[:, 1] - z[:, 0], labels=y, target_smoothing=True, sample_weight=w),
    "beta": lambda z, y, w: fit_beta(z[:, 1] - z[:, 0], labels=y, sample_weight=w),
    "vector": lambda z, y, w: fit_vector_scaling(z, labels=y, sample_weight=w),
    "matrix": lambda z, y, w: fit_matrix_scaling(z, labels=y, sample_weight=w, l2=0.01),
    "isotonic": lambda z, y, w: fit_isotonic(z, labels=y, sample_weight=w),
    "histogram": lambda z, y, w: fit_histogram(z, labels=y, sample_weight=w),
}


def _log_probs(method, z, y, w):
    fit, _ = FITS[method](z, y, w)
    return fit.log_probs(z[:, 1] - z[:, 0] if method in ("platt", "beta") else z)


@pytest.mark.parametrize("method", sorted(FITS))
def test_integer_weights_equal_repeated_rows_and_zero_weights_dropped_rows(rng, method):
    z, labels = categorical(rng, n=600, k=2)
    w = rng.integers(0, 4, size=labels.size)
    probe = 2 * rng.standard_normal((50, 2))
    weighted, _ = FITS[method](z, labels, w.astype(float))
    repeated, _ = FITS[method](np.repeat(z, w, axis=0), np.repeat(labels, w), None)
    kept = w > 0
    dropped, _ = FITS[method](z[kept], labels[kept], w[kept].astype(float))
    scores = probe[:, 1] - probe[:, 0] if method in ("platt", "beta") else probe
    np.testing.assert_allclose(weighted.log_probs(scores), repeated.log_probs(scores), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(weighted.log_probs(scores), dropped.log_probs(scores), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("method", sorted(FITS))
def test_all_zero_weights_raise_naming_sample_weight(rng, method):
    z, labels = categorical(rng, n=20, k=2)
    with pytest.raises(InputError, match="positive sum") as raised:
        FITS[method](z, labels, np.zeros(20))
    assert raised.value.field == "sample_weight"


@pytest.mark.parametrize(
    "w",
    [
        [1e-320, 1e300, 5e-324, 3.0, 1e-300, 1.0, 2.0, 1e-310],  # far below the largest: 0 once divided by it
        [1.7e308, 1e-300, 1.0, 1.5e308, 2.0, 5e-324, 1e308, 3.0],  # sums past float64: scaled down
    ],
)
def test_isotonic_weights_across_the_float64_range_match_scikit_learn(w):
    p = np.array([0.1, 0.2, 0.2, 0.35, 0.5, 0.5, 0.7, 0.9])  # ties: tied rows pool their weights
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    w = np.array(w)
    fit, _ = fit_isotonic(np.log(p / (1 - p)), labels=labels, sample_weight=w)
    mapped = np.interp(p, fit.x[0], fit.y[0])
    scale = 2.0**-20  # scikit-learn sums the weights as given: keep its sums finite, the same ratios
    reference = IsotonicRegression(y_min=0, y_max=1, out_of_bounds="clip")
    expected = reference.fit(p, labels, sample_weight=w * scale).predict(p)
    np.testing.assert_allclose(mapped, expected, rtol=0, atol=1e-12)
