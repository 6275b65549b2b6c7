"""`sample_weight` on the Brier decomposition, reliability bins and the bootstrap (#20).

References: scikit-learn's ``brier_score_loss(sample_weight=)`` and ``calibration_curve`` on repeated
rows, a NumPy reimplementation of the binned Brier score and of the weighted bootstrap, and the
identities integer weights = repeated rows, zero weights = dropped rows.
"""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from service.core import Convention, Distribution, InputError, calibration_report
from service.core.calibration import prepare
from service.core.calibration.bin_edges import weighted_quantile_edges
from service.core.calibration.bootstrap import bootstrap_intervals

WEIGHTED = ["ece", "mce", "rmsce", "calibration_error", "ace_netcal", "debiased_l2", "brier"]
WEIGHTED += ["nll", "accuracy", "mean_confidence", "confidence_gap", "reliability"]


def sample(rng, n=200, k=4):
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, size=n)
    return labels, probs


def report(labels, probs, conv, weights=None, metrics=WEIGHTED):
    return calibration_report(
        labels, Distribution.from_probs(probs), conv, metrics=metrics, sample_weight=weights
    )


def binned_brier(labels, probs, weights, n_bins):
    """Σ s Σ_k (p̄_k − 1[y = k])² / Σ s, p̄_k the weighted mean of p_k over its bin (i/B edges, (a, b])."""
    n, k = probs.shape
    onehot = np.eye(k)[labels]
    total = 0.0
    for c in range(k):  # reference: a loop is fine in a test
        p = probs[:, c]
        bins = np.clip(np.ceil(p * n_bins).astype(int) - 1, 0, n_bins - 1)
        mass = np.bincount(bins, weights=weights, minlength=n_bins)
        means = np.bincount(bins, weights=weights * p, minlength=n_bins)
        with np.errstate(invalid="ignore", divide="ignore"):
            pbar = np.where(mass > 0, means / mass, 0.0)[bins]
        total += float(np.sum(weights * (pbar - onehot[:, c]) ** 2))
    return total / weights.sum()


@pytest.mark.parametrize("k", [2, 4])
def test_weighted_brier_and_decomposition_match_sklearn(rng, k):
    labels, probs = sample(rng, k=k)
    s = rng.uniform(0, 3, size=labels.size)
    got = report(labels, probs, Convention(n_bins=10, brier_scale="sum"), s, ["brier"]).scalars
    onehot = np.eye(k)[labels]
    expected = float(np.sum(s * ((probs - onehot) ** 2).sum(axis=1)) / s.sum())  # Σ_k, scale "sum"
    assert got["brier"] == pytest.approx(expected, rel=1e-12)
    if k == 2:  # sklearn's binary Brier (p − y)² is half of the sum over both columns
        assert got["brier"] / 2 == pytest.approx(brier_score_loss(labels, probs[:, 1], sample_weight=s))
    whole = (
        got["brier_reliability"]
        - got["brier_resolution"]
        + got["brier_uncertainty"]
        + got["brier_within_bin_variance"]
        - 2 * got["brier_within_bin_covariance"]
    )
    assert whole == pytest.approx(got["brier"], rel=1e-10)


@pytest.mark.parametrize("n_bins", [5, 12])
def test_weighted_murphy_terms_equal_the_weighted_binned_brier(rng, n_bins):
    """REL − RES + UNC is the weighted Brier score of the forecasts replaced by their bin means."""
    labels, probs = sample(rng, n=300, k=3)
    s = rng.uniform(0, 2, size=labels.size)
    s[::7] = 0.0
    got = report(labels, probs, Convention(n_bins=n_bins, brier_scale="sum"), s, ["brier"]).scalars
    three = got["brier_reliability"] - got["brier_resolution"] + got["brier_uncertainty"]
    assert three == pytest.approx(binned_brier(labels, probs, s, n_bins), rel=1e-10)
    base = np.bincount(labels, weights=s, minlength=3) / s.sum()
    assert got["brier_uncertainty"] == pytest.approx(float(np.sum(base * (1 - base))), rel=1e-12)


def _assert_same(got, expected, *, rows=True):
    for name, value in expected.scalars.items():
        assert got.scalars[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    for a, b in zip(got.reliability, expected.reliability, strict=True):
        np.testing.assert_allclose(a.weight, b.weight, rtol=1e-12)
        for field in ("confidence", "accuracy", "wilson_low", "wilson_high"):
            np.testing.assert_allclose(getattr(a, field), getattr(b, field), rtol=1e-9, atol=1e-12)
        if rows:
            np.testing.assert_array_equal(a.count, b.count)


@pytest.mark.parametrize(
    ("target", "binning"), [("top_label", "uniform"), ("classwise", "uniform"), ("top_label", "quantile")]
)
def test_integer_weights_equal_repeated_rows(rng, target, binning):
    labels, probs = sample(rng)
    s = rng.integers(0, 4, size=labels.size)
    conv = Convention(n_bins=8, target=target, binning=binning)
    got = report(labels, probs, conv, s.astype(np.float64))
    repeated = report(np.repeat(labels, s), np.repeat(probs, s, axis=0), conv)
    _assert_same(got, repeated, rows=False)
    for a, b in zip(got.reliability, repeated.reliability, strict=True):
        np.testing.assert_array_equal(a.weight, b.count)  # the weight of a bin is its repeated rows


@pytest.mark.parametrize("method", ["quantile", "percentile"])
def test_weighted_quantile_edges_are_numpys_on_repeated_rows(rng, method):
    """Bit for bit, ties and repeated values included (np.quantile / np.percentile, linear)."""
    for _ in range(50):
        n, groups, n_bins = int(rng.integers(1, 30)), int(rng.integers(1, 4)), int(rng.integers(1, 12))
        conf = np.round(rng.random((groups, n)), int(rng.integers(1, 4)))
        s = rng.integers(0, 4, size=n)
        s[0] += 1
        got = weighted_quantile_edges(conf, s.astype(np.float64), n_bins, method=method)
        repeated = np.repeat(conf, s, axis=1)
        q = np.linspace(0, 1, n_bins + 1)
        expected = np.percentile(repeated, q * 100, axis=1).T if method == "percentile" else None
        if expected is None:
            expected = np.quantile(repeated, q, axis=1).T
        expected[:, 0], expected[:, -1] = 0.0, 1.0
        np.testing.assert_array_equal(got, expected)


def test_weighted_quantile_bins_match_sklearn_calibration_curve_on_repeated_rows(rng):
    p = rng.uniform(0, 1, size=120)
    y = (rng.random(120) < p).astype(int)
    s = rng.integers(0, 4, size=120)
    conv = Convention(preset="sklearn", binning="quantile", n_bins=6)
    rel = report(y, p, conv, s.astype(np.float64)).reliability[0]
    prob_true, prob_pred = calibration_curve(np.repeat(y, s), np.repeat(p, s), n_bins=6, strategy="quantile")
    filled = rel.weight > 0
    np.testing.assert_allclose(rel.accuracy[filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(rel.confidence[filled], prob_pred, rtol=1e-12)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_zero_weights_equal_dropped_rows_and_count_keeps_every_row(rng, binning):
    labels, probs = sample(rng)
    s = rng.uniform(0.1, 2, size=labels.size)
    s[rng.random(labels.size) < 0.3] = 0.0
    kept = s > 0
    conv = Convention(n_bins=10, binning=binning)
    got = report(labels, probs, conv, s)
    dropped = report(labels[kept], probs[kept], conv, s[kept])
    _assert_same(got, dropped, rows=False)
    if binning == "quantile":
        np.testing.assert_array_equal(got.reliability[0].upper, dropped.reliability[0].upper)
        return
    top = probs.max(axis=1)
    rows = np.bincount(np.clip(np.ceil(top * 10).astype(int) - 1, 0, 9), minlength=10)
    np.testing.assert_array_equal(got.reliability[0].count, rows)  # every row sent, weight 0 too


def test_scaling_the_weights_changes_nothing(rng):
    """Weights of total 1 (every bin below one unit of weight) give the same bins and errors.

    Not debiased_l2 nor the Wilson intervals: their ā(1-ā)/(n_b - 1) and z²/n take the weights as
    frequencies (integer weights = repeated rows), so they depend on the scale.
    """
    labels, probs = sample(rng)
    s = rng.uniform(0, 3, size=labels.size)
    conv = Convention(n_bins=10, min_bin_count=1)
    got = report(labels, probs, conv, s / s.sum())
    plain = report(labels, probs, conv, s)
    assert got.scalars["ece"] > 0.01
    for name, value in plain.scalars.items():
        if name != "debiased_l2":
            assert got.scalars[name] == pytest.approx(value, rel=1e-9, abs=1e-15), name
    np.testing.assert_allclose(got.reliability[0].confidence, plain.reliability[0].confidence, rtol=1e-12)


def test_weighted_reliability_matches_sklearn_calibration_curve_on_repeated_rows(rng):
    p = rng.uniform(0, 1, size=150)
    y = (rng.random(150) < p**1.5).astype(int)
    s = rng.integers(0, 5, size=150)
    rel = report(y, p, Convention(preset="sklearn", n_bins=8), s.astype(np.float64)).reliability[0]
    prob_true, prob_pred = calibration_curve(np.repeat(y, s), np.repeat(p, s), n_bins=8)
    filled = rel.weight > 0
    np.testing.assert_allclose(rel.accuracy[filled], prob_true, rtol=1e-12)
    np.testing.assert_allclose(rel.confidence[filled], prob_pred, rtol=1e-12)


def _independent_bootstrap(y, p, s, *, n_resamples, seed, level, statistic):
    """The documented rule in NumPy: rows drawn uniformly in order of confidence, weights m·s."""
    n = y.size
    order = np.argsort(p, kind="stable")
    draws = np.random.default_rng(seed).integers(0, n, size=(n_resamples, n), dtype=np.int32)
    m = np.zeros((n_resamples, n))
    for r in range(n_resamples):
        m[r, order] = np.bincount(draws[r], minlength=n)  # draw j means the j-th row by confidence
    values = np.array([statistic(m[r] * s) for r in range(n_resamples)])
    return np.nanpercentile(values, [50 * (1 - level), 50 * (1 + level)])


def test_weighted_bootstrap_brier_matches_sklearn_per_resample(rng):
    p = rng.uniform(0, 1, size=80)
    y = (rng.random(80) < p).astype(int)
    s = rng.uniform(0, 2, size=80)
    s[:5] = 0.0
    prep = prepare(y, Distribution.from_probs(p), Convention(n_bins=10), names={"brier"})
    got = bootstrap_intervals(prep, n_resamples=60, seed=5, level=0.9, names={"brier"}, sample_weight=s)
    low, high = _independent_bootstrap(
        y,
        p,
        s,
        n_resamples=60,
        seed=5,
        level=0.9,
        statistic=lambda w: brier_score_loss(y, p, sample_weight=w),
    )
    assert (got["brier"].low, got["brier"].high) == pytest.approx((low, high), rel=1e-12)


def test_weighted_bootstrap_ece_equals_repeated_rows_of_each_resample(rng):
    p = rng.uniform(0, 1, size=60)
    y = (rng.random(60) < p).astype(int)
    s = rng.integers(0, 3, size=60).astype(np.float64)
    conv = Convention(n_bins=6)
    prep = prepare(y, Distribution.from_probs(p), conv, names={"ece"})
    got = bootstrap_intervals(prep, n_resamples=40, seed=2, names={"ece"}, sample_weight=s)

    def ece(w):
        times = w.astype(int)
        if times.sum() == 0:
            return np.nan
        return report(np.repeat(y, times), np.repeat(p, times), conv, metrics=["ece"]).scalars["ece"]

    low, high = _independent_bootstrap(y, p, s, n_resamples=40, seed=2, level=0.95, statistic=ece)
    assert (got["ece"].low, got["ece"].high) == pytest.approx((low, high), rel=1e-12)


@pytest.mark.parametrize("names", [{"smooth_ece"}, {"ace_nixon", "ece"}, {"ks_statistic"}])
def test_weighted_bootstrap_refuses_what_orderings_define(rng, names):
    labels, probs = sample(rng, n=30)
    prep = prepare(labels, Distribution.from_probs(probs), Convention(n_bins=5), resample=True)
    with pytest.raises(InputError, match=r"`sample_weight` does not apply to .*no peer"):
        bootstrap_intervals(prep, n_resamples=5, names=names, sample_weight=np.ones(30))
