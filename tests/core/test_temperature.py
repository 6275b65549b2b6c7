import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.optimize import brentq, minimize_scalar
from scipy.special import expit, log_expit, log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.frozen import FrozenEstimator

from service.core import InputError
from service.core.maps.temperature import apply_temperature, fit_temperature


def sample_labels(rng, logits):
    """Draw one label per row from softmax(logits)."""
    p = np.exp(log_softmax(logits, axis=1))
    return (p.cumsum(axis=1) > rng.random((len(p), 1))).argmax(axis=1)


def synthetic(rng, n=5000, k=10, true_t=2.5, spread=3.0):
    """Logits whose calibrated temperature is `true_t`: labels from softmax(z), logits z * true_t."""
    z = spread * rng.standard_normal((n, k))
    return z * true_t, sample_labels(rng, z)


def nll_at(logits, labels, temperature):
    """Reference NLL of softmax(logits / T) by scipy."""
    return -np.mean(log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels])


def scipy_temperature(logits, labels, bounds=(-5, 5)):
    """The optimum by bounded Brent on log T (scipy's own tolerance: ~1.5e-8 relative)."""
    result = minimize_scalar(
        lambda log_t: nll_at(logits, labels, np.exp(log_t)),
        bounds=bounds,
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(np.exp(result.x))


def derivative_root(logits, labels):
    """T where dNLL/dβ = mean(E_p[z] - z_y) vanishes, by brentq on β to 1e-15: a tighter oracle."""
    true_logit = logits[np.arange(len(labels)), labels]

    def slope(beta):
        return np.mean(np.sum(softmax(beta * logits, axis=1) * logits, axis=1) - true_logit)

    return 1 / brentq(slope, 1e-3, 1e3, xtol=1e-15, rtol=1e-15)


def test_fit_temperature_matches_the_root_of_the_derivative(rng):
    logits, labels = synthetic(rng, n=3000, k=8, true_t=1.8)
    assert fit_temperature(logits, labels=labels).temperature == pytest.approx(
        derivative_root(logits, labels), rel=1e-10
    )


def torch_lbfgs_temperature(logits, labels, max_iter=50):
    """Guo et al. 2017's recipe: LBFGS(lr=0.01, max_iter=50) on T initialised at 1.5."""
    z = torch.from_numpy(logits)
    y = torch.from_numpy(labels)
    temperature = torch.nn.Parameter(torch.ones(1, dtype=z.dtype) * 1.5)
    optimizer = torch.optim.LBFGS([temperature], lr=0.01, max_iter=max_iter)
    criterion = torch.nn.CrossEntropyLoss()

    def closure():
        optimizer.zero_grad()
        loss = criterion(z / temperature, y)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(temperature.item())


class Passthrough(ClassifierMixin, BaseEstimator):
    """A 'classifier' whose decision function is its input: lets sklearn calibrate given logits."""

    def fit(self, X, y):
        self.classes_ = np.unique(y)
        return self

    def decision_function(self, X):
        return X

    def predict(self, X):
        return self.classes_[np.argmax(X, axis=1)]


def test_fit_temperature_matches_scipy_minimize_scalar(rng):
    logits, labels = synthetic(rng)
    fit = fit_temperature(logits, labels=labels)
    assert fit.converged and fit.reason == "optimum"
    assert fit.temperature == pytest.approx(scipy_temperature(logits, labels), rel=1e-6)
    assert fit.nll == pytest.approx(nll_at(logits, labels, fit.temperature), rel=1e-12)


def test_fit_temperature_beats_the_torch_lbfgs_recipe(rng):
    logits, labels = synthetic(rng)
    fit = fit_temperature(logits, labels=labels)
    t_torch = torch_lbfgs_temperature(logits, labels)
    assert abs(t_torch - fit.temperature) > 0.1  # the recipe stops short (issue 4: ~1.70 vs 2.52)
    assert fit.nll <= nll_at(logits, labels, t_torch)


def sklearn_beta(logits, labels):
    calibrated = CalibratedClassifierCV(
        FrozenEstimator(Passthrough().fit(logits, labels)), method="temperature"
    )
    calibrated.fit(logits, labels)
    return float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_), calibrated


def test_fit_temperature_matches_sklearn_calibrated_classifier(rng):
    logits, labels = synthetic(rng, n=3000, k=4)
    beta, calibrated = sklearn_beta(logits, labels)
    fit = fit_temperature(logits, labels=labels)
    assert fit.beta == pytest.approx(beta, rel=1e-6)
    np.testing.assert_allclose(
        np.exp(apply_temperature(logits, fit.temperature)),
        calibrated.predict_proba(logits),
        rtol=1e-5,
        atol=1e-7,
    )


def test_fit_temperature_float32_is_at_least_as_good_as_sklearn(rng):
    """sklearn iterates float32 input in float32 (xatol 64·eps32 on log β): ~1e-4 relative, not 1e-6."""
    logits, labels = synthetic(rng, n=3000, k=4)
    logits = logits.astype(np.float32)
    beta, _ = sklearn_beta(logits, labels)
    fit = fit_temperature(logits, labels=labels)
    assert fit.beta == pytest.approx(beta, rel=1e-3)
    wide = logits.astype(np.float64)
    assert nll_at(wide, labels, fit.temperature) <= nll_at(wide, labels, 1 / beta)


def test_fit_temperature_recovers_a_known_temperature(rng):
    logits, labels = synthetic(rng, n=100_000, k=5, true_t=2.5, spread=1.5)
    fit = fit_temperature(logits, labels=labels)
    assert fit.temperature == pytest.approx(2.5, rel=0.02)


def test_fit_temperature_zeroes_the_derivative(rng):
    logits, labels = synthetic(rng, n=2000, k=6, true_t=0.6)
    fit = fit_temperature(logits, labels=labels)
    h = 1e-5 * fit.temperature
    slope = (nll_at(logits, labels, fit.temperature + h) - nll_at(logits, labels, fit.temperature - h)) / (
        2 * h
    )
    assert abs(slope) < 1e-8
    assert abs(fit.gradient) < 1e-10


def test_fit_temperature_is_invariant_to_permutations(rng):
    logits, labels = synthetic(rng, n=1000, k=7)
    fit = fit_temperature(logits, labels=labels)
    rows = rng.permutation(len(labels))
    classes = rng.permutation(7)
    inverse = np.argsort(classes)
    permuted = fit_temperature(logits[rows][:, classes], labels=inverse[labels[rows]])
    assert permuted.temperature == pytest.approx(fit.temperature, rel=1e-10)


def test_fit_temperature_binary_matches_scipy(rng):
    z = 2 * rng.standard_normal(4000)
    labels = (rng.random(4000) < expit(z)).astype(np.int64)
    fit = fit_temperature(3 * z, labels=labels)

    def nll(log_t):
        s = 3 * z / np.exp(log_t)
        return -np.mean(labels * log_expit(s) + (1 - labels) * log_expit(-s))

    expected = np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-12}).x)
    assert fit.temperature == pytest.approx(expected, rel=1e-6)
    assert fit.temperature == pytest.approx(3, rel=0.1)


def test_fit_temperature_soft_targets_match_scipy(rng):
    logits = 3 * rng.standard_normal((800, 4))
    targets = np.exp(log_softmax(logits / 2 + 0.3 * rng.standard_normal((800, 4)), axis=1))
    fit = fit_temperature(logits, targets=targets)

    def nll(log_t):
        return -np.mean(np.sum(targets * log_softmax(logits / np.exp(log_t), axis=1), axis=1))

    expected = np.exp(minimize_scalar(nll, bounds=(-5, 5), method="bounded", options={"xatol": 1e-12}).x)
    assert fit.converged
    assert fit.temperature == pytest.approx(expected, rel=1e-6)


def test_fit_temperature_of_hard_targets_equals_labels(rng):
    logits, labels = synthetic(rng, n=500, k=3)
    by_labels = fit_temperature(logits, labels=labels)
    by_targets = fit_temperature(logits, targets=np.eye(3)[labels])
    assert by_targets.temperature == pytest.approx(by_labels.temperature, rel=1e-12)


def test_fit_temperature_sample_weights_equal_repetition(rng):
    logits, labels = synthetic(rng, n=300, k=3)
    counts = rng.integers(0, 4, size=300)
    weighted = fit_temperature(logits, labels=labels, sample_weight=counts)
    repeated = fit_temperature(np.repeat(logits, counts, axis=0), labels=np.repeat(labels, counts))
    assert weighted.temperature == pytest.approx(repeated.temperature, rel=1e-9)


def test_fit_temperature_wide_classes_use_the_row_layout(rng):
    logits, labels = synthetic(rng, n=400, k=200, true_t=1.7)
    fit = fit_temperature(logits, labels=labels)
    assert fit.temperature == pytest.approx(scipy_temperature(logits, labels), rel=1e-6)


def test_fit_temperature_float32_is_polished_to_float64_accuracy(rng):
    logits, labels = synthetic(rng, n=2000, k=10)
    logits = logits.astype(np.float32)
    fit = fit_temperature(logits, labels=labels)
    assert fit.temperature == pytest.approx(derivative_root(logits.astype(np.float64), labels), rel=1e-10)


def test_fit_temperature_handles_extreme_logits(rng):
    logits, labels = synthetic(rng, n=500, k=4, true_t=3000.0)
    fit = fit_temperature(logits, labels=labels)
    assert fit.converged
    assert fit.temperature == pytest.approx(scipy_temperature(logits, labels, bounds=(5, 12)), rel=1e-6)


@pytest.mark.parametrize(
    "margin, dtype",
    [(1e200, np.float64), (6.5e282, np.float64), (1e130, np.float64), (1e30, np.float32), (1e12, np.float32)],
)
def test_fit_temperature_of_logits_spanning_far_matches_mpmath(margin, dtype):
    """One row right by `margin`, one wrong by 1: the optimum ``M σ(−βM) = σ(β)`` sits where ``β M`` is
    ~460–650, so the terms ``exp(β z') z'²`` of ``z' = −M`` carry the curvature there. A fixed clamp of
    ``β z'`` at −600 (−50 in float32) before ``exp`` made them ``exp(−600) M²`` at β = 1: a step of ~0
    and a false "optimum" at T = 1."""
    import mpmath

    mpmath.mp.dps = 60
    m = mpmath.mpf(float(dtype(margin)))

    def slope(u):  # 2 L'(β) at β = u / M: the two rows' E_p[z'] − z'_y, σ(β) − M σ(−βM)
        return 1 / (1 + mpmath.exp(-u / m)) - m / (1 + mpmath.exp(u))

    bracket = (mpmath.log(m), mpmath.log(4 * m))
    beta = float(mpmath.findroot(slope, bracket, solver="anderson", tol=mpmath.mpf(10) ** -40) / m)
    fit = fit_temperature(np.array([[margin, 0.0], [0.0, 1.0]], dtype=dtype), labels=[0, 0])
    assert (fit.converged, fit.reason) == (True, "optimum")
    assert fit.beta == pytest.approx(beta, rel=1e-9)
    assert fit.temperature == pytest.approx(1 / beta, rel=1e-9)


def test_fit_temperature_constant_logits_are_reported():
    fit = fit_temperature(np.full((5, 3), 2.0), labels=[0, 1, 2, 0, 1])
    assert (fit.converged, fit.reason, fit.temperature) == (False, "constant_logits", 1.0)
    assert fit.nll == pytest.approx(np.log(3))


def test_fit_temperature_all_correct_is_separable():
    logits = np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0]])
    fit = fit_temperature(logits, labels=[0, 1, 2])
    assert (fit.converged, fit.reason, fit.temperature, fit.nll) == (False, "separable", 0.0, 0.0)


def test_fit_temperature_single_class_always_predicted_is_separable():
    fit = fit_temperature(np.array([[2.0, 1.0], [5.0, 0.0]]), labels=[0, 0])
    assert fit.reason == "separable"


def test_fit_temperature_single_class_not_separable_has_an_optimum(rng):
    logits = rng.standard_normal((50, 3)) + [1.0, 0.0, 0.0]
    labels = np.zeros(50, dtype=np.int64)
    fit = fit_temperature(logits, labels=labels)
    assert fit.converged
    assert fit.temperature == pytest.approx(scipy_temperature(logits, labels), rel=1e-6)


def test_fit_temperature_all_wrong_is_uninformative():
    logits = np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    fit = fit_temperature(logits, labels=[1, 0, 1])
    assert (fit.converged, fit.reason, fit.temperature) == (False, "uninformative", np.inf)
    assert fit.nll == pytest.approx(np.log(2))
    assert fit.nll < fit.nll_initial


def test_fit_temperature_nearly_separable_stops_honestly():
    logits = np.array([[40.0, 0.0], [0.0, 40.0], [0.0, 1e-9]])
    fit = fit_temperature(logits, labels=[0, 1, 0], max_iter=5)
    assert not fit.converged
    assert fit.reason == "max_iter"
    assert fit.nll <= fit.nll_initial


def test_fit_temperature_requires_exactly_one_truth():
    with pytest.raises(InputError, match="`labels` or `targets` must be given, not both nor neither"):
        fit_temperature([[0.0, 1.0]])


def test_apply_temperature_limits():
    logits = np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0]])
    np.testing.assert_allclose(np.exp(apply_temperature(logits, np.inf)), np.full((2, 3), 1 / 3))
    np.testing.assert_allclose(np.exp(apply_temperature(logits, 0.0)), [[0, 0.5, 0.5], [0, 0, 1]])
    np.testing.assert_allclose(np.exp(apply_temperature(np.array([0.7]), 2.0))[:, 1], expit([0.35]))


EXTREMES = [
    ([[1.5e10, 0.0, -3.0]], 1e-300),  # z / T overflows: was NaN
    ([[1.0, 1.0 - 2e-300, 1.0]], 1e-300),  # gaps of the order of T stay finite
    ([[3e38, -3e38, 0.0]], 0.5),  # float32's largest logits, T < 1: z / T overflows
    ([[2.0, -1.0, 0.5]], 1e-310),  # a subnormal T
    ([[0.25, 0.5, 0.75]], 1e-40),  # below float32's normal range
]


@pytest.mark.parametrize(
    ("logits", "temperature", "dtype"),
    [(z, t, dtype) for z, t in EXTREMES for dtype in (np.float64, np.float32)]
    + [([[1e308, -1e308]], 1e-3, np.float64), ([[1e308, -1e308, 0.0]], 2.0, np.float64)],  # z - max overflows
)
def test_apply_temperature_extremes_match_mpmath(logits, temperature, dtype):
    """log softmax(z / T) at 200 bits: no NaN where z / T overflows, the limit's -inf where it is one."""
    import mpmath

    mpmath.mp.prec = 200
    z = np.asarray(logits, dtype=dtype)
    with np.errstate(over="ignore"):  # answers such as -1e311 are -inf in the dtype
        scaled = [[mpmath.mpf(float(v)) / mpmath.mpf(temperature) for v in row] for row in z]
        exact = [
            [v - max(row) - mpmath.log(mpmath.fsum(mpmath.exp(u - max(row)) for u in row)) for v in row]
            for row in scaled
        ]
        expected = np.array([[float(v) for v in row] for row in exact], dtype=dtype)
    got = apply_temperature(z, temperature)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(dtype).eps, atol=0)


logit_batches = arrays(
    np.float64, st.tuples(st.integers(1, 30), st.integers(2, 6)), elements=st.floats(-50, 50, width=64)
)


@settings(max_examples=60, deadline=None)
@given(logits=logit_batches, data=st.data())
def test_fit_temperature_never_raises_the_nll(logits, data):
    n, k = logits.shape
    labels = data.draw(arrays(np.int64, n, elements=st.integers(0, k - 1)))
    fit = fit_temperature(logits, labels=labels)
    assert fit.nll <= fit.nll_initial + 1e-12
    if fit.converged:
        assert fit.nll == pytest.approx(nll_at(logits, labels, fit.temperature), rel=1e-9, abs=1e-12)
        assert fit.nll <= nll_at(logits, labels, fit.temperature * 1.001) + 1e-12


@pytest.mark.parametrize("max_iter", [1, 2, 3])
def test_fit_temperature_float32_small_budgets_report_real_values(rng, max_iter):
    logits, labels = synthetic(rng, n=500, k=5)
    fit = fit_temperature(logits.astype(np.float32), labels=labels, max_iter=max_iter)
    assert fit.iterations <= max_iter
    assert np.isfinite(fit.nll) and np.isfinite(fit.gradient)
    assert fit.nll == pytest.approx(
        nll_at(logits.astype(np.float32).astype(np.float64), labels, fit.temperature)
    )


def test_fit_temperature_leaves_its_input_alone(rng):
    logits, labels = synthetic(rng, n=200, k=4)
    column_major = np.asfortranarray(logits)
    before = column_major.copy()
    fit_temperature(column_major, labels=labels)
    np.testing.assert_array_equal(column_major, before)


def test_fit_temperature_binary_matches_sklearn(rng):
    """sklearn turns a binary decision value x into logits (-x, x): its β is half of σ(βx)'s."""
    z = 2 * rng.standard_normal(3000)
    labels = (rng.random(3000) < expit(z / 2)).astype(np.int64)
    features = z[:, None]

    class Binary(Passthrough):
        def decision_function(self, X):
            return X[:, 0]

        def predict(self, X):
            return (X[:, 0] > 0).astype(int)

    calibrated = CalibratedClassifierCV(FrozenEstimator(Binary().fit(features, labels)), method="temperature")
    calibrated.fit(features, labels)
    beta = float(calibrated.calibrated_classifiers_[0].calibrators[0].beta_)
    fit = fit_temperature(z, labels=labels)
    assert fit.beta == pytest.approx(2 * beta, rel=1e-6)
    np.testing.assert_allclose(
        np.exp(apply_temperature(z, fit.temperature)), calibrated.predict_proba(features), rtol=1e-6
    )
