"""Calibration metrics: closed forms, identities, transcriptions and properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, norm

from service.core import Convention, Distribution, InputError, ace_nixon, calibration_report, wilson_interval
from service.core.calibration import resolve_convention
from service.core.calibration.bin_edges import (
    assign_per_row,
    assign_shared,
    bins_for_rule,
    check_edges,
    quantile_edges,
    uniform_edges,
)
from service.core.calibration.statistical_tests import (
    cumulative_stats,
    ks_brownian_p,
    kuiper_brownian_p,
    spiegelhalter_z,
)


def calibrated_sample(rng, n, k=4):
    """Labels drawn from the predicted distributions: perfectly calibrated by construction."""
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = (probs.cumsum(axis=1) < rng.uniform(size=(n, 1))).sum(axis=1)
    return np.minimum(labels, k - 1), probs


def report(labels, probs, **options):
    return calibration_report(labels, Distribution.from_probs(probs), Convention(**options))


def test_debiased_l2_hand_computed():
    # Bin 0 (0, 0.5]: c = .1 .2 .3 .4, y = 0 0 0 1: gap 0, correction ā(1-ā)/(n-1) = .25·.75/3 = .0625.
    # Bin 1 (0.5, 1]: c = .95 ×6, y = 1 1 1 0 0 0: gap² = .45² = .2025, correction .25/5 = .05.
    # Σ w (gap² - correction) = .4·(-.0625) + .6·(.1525) = .0665.
    conf = np.array([0.1, 0.2, 0.3, 0.4, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    got = report(labels, conf, n_bins=2, target="positive_class").scalars["debiased_l2"]
    assert got == pytest.approx(np.sqrt(0.0665), abs=1e-12)
    # One bin: gap² = .04 < correction .25/3, so the estimate is clipped to 0.
    one_bin = report(np.array([1, 0, 1, 0]), np.array([0.7, 0.7, 0.7, 0.7]), n_bins=1)
    assert one_bin.scalars["debiased_l2"] == 0.0


def test_ace_nixon_matches_loop_transcription(rng):
    probs = rng.dirichlet(np.ones(5), size=203)
    labels = rng.integers(0, 5, size=203)
    n_ranges = 7
    errors = []
    for k in range(5):
        order = np.argsort(probs[:, k], kind="stable")
        for chunk in np.array_split(order, n_ranges):
            errors.append(abs(np.mean(labels[chunk] == k) - np.mean(probs[chunk, k])))
    assert ace_nixon(labels, probs, n_ranges) == pytest.approx(np.mean(errors), abs=1e-12)


def test_classwise_is_mean_of_per_class_binary_errors(rng):
    probs = rng.dirichlet(np.ones(3), size=500)
    labels = rng.integers(0, 3, size=500)
    classwise = report(labels, probs, target="classwise", n_bins=10)
    per_class = [
        report((labels == k).astype(int), probs[:, k], target="positive_class", n_bins=10).scalars["ece"]
        for k in range(3)
    ]
    np.testing.assert_allclose(classwise.per_class["ece"], per_class, atol=1e-12)
    assert classwise.scalars["ece"] == pytest.approx(np.mean(per_class), abs=1e-12)
    marginal = report(labels, probs, target="marginal", n_bins=10, norm="l2")
    rms = [
        report((labels == k).astype(int), probs[:, k], target="positive_class", n_bins=10).scalars["rmsce"]
        for k in range(3)
    ]
    assert marginal.scalars["calibration_error"] == pytest.approx(np.sqrt(np.mean(np.square(rms))), abs=1e-12)


def test_murphy_decomposition_identity(rng):
    for probs, labels in [
        (rng.dirichlet(np.ones(4), size=300), rng.integers(0, 4, size=300)),
        (rng.uniform(size=300), rng.integers(0, 2, size=300)),
    ]:
        for scale in ("auto", "sum", "half"):
            s = report(labels, probs, n_bins=8, brier_scale=scale).scalars
            rebuilt = (
                s["brier_reliability"]
                - s["brier_resolution"]
                + s["brier_uncertainty"]
                + s["brier_within_bin_variance"]
                - 2 * s["brier_within_bin_covariance"]
            )
            assert rebuilt == pytest.approx(s["brier"], abs=1e-12)


def test_murphy_classic_form_when_forecasts_are_constant_in_bins(rng):
    p = (2 * rng.integers(0, 4, size=400) + 1) / 8  # bin centres of 4 bins: one forecast per bin
    y = rng.integers(0, 2, size=400)
    s = report(y, p, n_bins=4, brier_scale="half").scalars
    assert s["brier_within_bin_variance"] == pytest.approx(0, abs=1e-15)
    assert s["brier_within_bin_covariance"] == pytest.approx(0, abs=1e-15)
    base = y.mean()
    values = np.unique(p)
    rel = sum(np.mean(p == v) * (v - y[p == v].mean()) ** 2 for v in values)
    res = sum(np.mean(p == v) * (y[p == v].mean() - base) ** 2 for v in values)
    assert s["brier_reliability"] == pytest.approx(rel, abs=1e-12)
    assert s["brier_resolution"] == pytest.approx(res, abs=1e-12)
    assert s["brier_uncertainty"] == pytest.approx(base * (1 - base), abs=1e-12)


def test_wilson_interval_matches_scipy():
    successes = np.array([0, 1, 5, 17, 30])
    counts = np.array([3, 10, 10, 40, 30])
    for level in (0.9, 0.95):
        low, high = wilson_interval(successes.astype(float), counts.astype(float), level)
        for i in range(5):
            ci = binomtest(int(successes[i]), int(counts[i])).proportion_ci(level, method="wilson")
            assert low[i] == pytest.approx(ci.low, abs=1e-12)
            assert high[i] == pytest.approx(ci.high, abs=1e-12)


def test_spiegelhalter_is_standardised_brier(rng):
    c = rng.uniform(size=400)
    o = (rng.uniform(size=400) < c).astype(float)
    brier = np.sum((o - c) ** 2)
    expected = (brier - np.sum(c * (1 - c))) / np.sqrt(np.sum((1 - 2 * c) ** 2 * c * (1 - c)))
    assert spiegelhalter_z(c, o)[0] == pytest.approx(expected, rel=1e-12)
    labels = o.astype(int)
    s = report(labels, c).scalars
    assert s["spiegelhalter_p"] == pytest.approx(2 * norm.sf(abs(expected)), rel=1e-9)


def test_cumulative_stats_match_loop(rng):
    c = rng.uniform(size=200)
    o = (rng.uniform(size=200) < c).astype(float)
    order = np.argsort(c, kind="stable")
    path, total = [0.0], 0.0
    for i in order:
        total += o[i] - c[i]
        path.append(total)
    sigma = np.sqrt(np.sum(c * (1 - c)))
    stats = cumulative_stats(c, o)
    assert stats.ks[0] == pytest.approx(max(abs(v) for v in path) / sigma, rel=1e-12)
    assert stats.kuiper[0] == pytest.approx((max(path) - min(path)) / sigma, rel=1e-12)


def test_ks_p_value_series_agree_at_the_switch():
    # Both series represent the same function; compare them where both converge.
    x = np.array([0.7, 1.0, 1.5, 2.5, 2.99, 3.0, 3.5])
    k = np.arange(200)
    m = 2 * k + 1
    terms = ((-1.0) ** k) / m * np.exp(-(m * m) * np.pi**2 / (8 * x[:, None] ** 2))
    theta = 1 - 4 / np.pi * np.sum(terms, axis=1)
    reflection = 4 * np.sum(((-1.0) ** k) * norm.sf(m * x[:, None]), axis=1)
    np.testing.assert_allclose(theta, reflection, atol=1e-12)
    np.testing.assert_allclose(ks_brownian_p(x), reflection, atol=1e-12)


def test_brownian_p_values_integrate_to_known_means():
    # E[sup |W|] = sqrt(pi/2) and E[max W - min W] = 2 sqrt(2/pi) on [0, 1]: E[X] = ∫ P(X ≥ x) dx.
    x = np.linspace(0, 40, 40001)
    ks_mean = np.trapezoid(ks_brownian_p(x), x)
    kuiper_mean = np.trapezoid(kuiper_brownian_p(x), x)
    assert ks_mean == pytest.approx(np.sqrt(np.pi / 2), abs=1e-6)
    assert kuiper_mean == pytest.approx(2 * np.sqrt(2 / np.pi), abs=1e-6)


def test_brownian_p_values_match_simulation():
    rng = np.random.default_rng(7)
    n_steps = 1000
    steps = rng.standard_normal((4000, n_steps)) / np.sqrt(n_steps)
    paths = np.concatenate([np.zeros((4000, 1)), np.cumsum(steps, axis=1)], axis=1)
    # Broadie–Glasserman: a discrete maximum under-shoots the continuous one by ≈ 0.5826 sqrt(dt).
    shift = 0.5826 / np.sqrt(n_steps)
    sup = np.abs(paths).max(axis=1) + shift
    span = paths.max(axis=1) - paths.min(axis=1) + 2 * shift
    for x in (1.0, 1.5, 2.0, 2.5):
        assert ks_brownian_p(np.array([x]))[0] == pytest.approx(np.mean(sup >= x), abs=0.02)
        assert kuiper_brownian_p(np.array([x]))[0] == pytest.approx(np.mean(span >= x), abs=0.02)


def test_p_values_are_uniformish_under_calibration(rng):
    labels, probs = calibrated_sample(rng, 20000, k=3)
    s = report(labels, probs).scalars
    for name in ("spiegelhalter_p", "ks_p", "kuiper_p"):
        assert 0.001 < s[name] <= 1


def test_metrics_detect_miscalibration(rng):
    labels, probs = calibrated_sample(rng, 20000, k=3)
    sharpened = probs**3 / np.sum(probs**3, axis=1, keepdims=True)
    s = report(labels, sharpened).scalars
    assert s["confidence_gap"] > 0.05
    assert s["ks_p"] < 1e-6 and s["kuiper_p"] < 1e-6
    assert s["ece"] > 0.05


def test_perfect_calibration_ece_shrinks_with_n(rng):
    values = []
    for n in (1000, 10000, 100000):
        labels, probs = calibrated_sample(rng, n)
        values.append(report(labels, probs).scalars["ece"])
    assert values[0] > values[1] > values[2]
    assert values[2] < 0.01


def test_debiased_l2_is_closer_to_zero_than_plug_in_at_small_n(rng):
    plug, debiased = [], []
    for _ in range(30):
        labels, probs = calibrated_sample(rng, 200)
        s = report(labels, probs, n_bins=10).scalars
        plug.append(s["rmsce"])
        debiased.append(s["debiased_l2"])
    assert np.mean(debiased) < np.mean(plug)


def test_ranges_and_mce_bounds_ece(rng):
    labels = rng.integers(0, 6, size=500)
    probs = rng.dirichlet(np.full(6, 0.3), size=500)
    for target in ("top_label", "classwise", "marginal"):
        for weighting in ("mass", "uniform"):
            s = report(labels, probs, target=target, bin_weighting=weighting).scalars
            for name in ("ece", "mce", "rmsce", "ace_netcal", "debiased_l2", "smooth_ece", "ace_nixon"):
                assert 0 <= s[name] <= 1, name
            assert s["mce"] >= s["ece"] - 1e-15
            assert s["rmsce"] >= s["ece"] - 1e-15  # Jensen, with mass weights summing to 1
            assert 0 <= s["brier"] <= 2 and 0 <= s["accuracy"] <= 1


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 60), k=st.integers(2, 5))
def test_report_is_invariant_to_sample_order(seed, n, k):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, size=n)
    perm = rng.permutation(n)
    for binning in ("uniform", "quantile"):
        a = report(labels, probs, binning=binning, n_bins=4).scalars
        b = report(labels[perm], probs[perm], binning=binning, n_bins=4).scalars
        for name in a:
            if name in ("ace_nixon",):  # rank split: ties may change range membership
                continue
            assert a[name] == pytest.approx(b[name], abs=1e-9, nan_ok=True), name


def test_equal_mass_bins_hold_equal_counts(rng):
    probs = rng.dirichlet(np.ones(4), size=1000)
    labels = rng.integers(0, 4, size=1000)
    bins = report(labels, probs, binning="quantile", n_bins=10).reliability[0]
    assert set(bins.count.astype(int)) <= {99, 100, 101}
    tied = np.repeat([0.3, 0.5, 0.7, 0.9], 250)  # positive-class probabilities: four ties of 250
    bins = report(np.zeros(1000, dtype=int), tied, binning="quantile", n_bins=8)
    counts = bins.reliability[0].count
    assert counts.sum() == 1000 and set(counts[counts > 0].astype(int)) == {250}


def test_assign_conventions_on_edges():
    edges = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    c = np.array([0.0, 0.25, 0.5, 0.6, 0.75, 1.0])
    np.testing.assert_array_equal(assign_shared(c, edges, "right"), [0, 0, 1, 2, 2, 3])
    np.testing.assert_array_equal(assign_shared(c, edges, "left"), [0, 1, 2, 2, 3, 3])
    per_row = np.broadcast_to(edges, (2, 5))
    both = np.stack([c, c[::-1]])
    for closed in ("right", "left"):
        expected = assign_shared(both, edges, closed)
        np.testing.assert_array_equal(assign_per_row(both, per_row, closed), expected)


def test_quantile_edges_match_numpy(rng):
    conf = rng.uniform(size=(3, 101))
    edges = quantile_edges(conf, 4, method="quantile")
    np.testing.assert_array_equal(edges[:, 1:-1], np.quantile(conf, [0.25, 0.5, 0.75], axis=1).T)
    assert np.all(edges[:, 0] == 0) and np.all(edges[:, -1] == 1)


def test_bin_rules():
    assert bins_for_rule("sqrt", 100) == 10 and bins_for_rule("sqrt", 101) == 11
    assert bins_for_rule("cube_root", 1000) == 10 and bins_for_rule("cube_root", 1001) == 11
    assert bins_for_rule("sqrt", 1) == 1
    with pytest.raises(InputError, match=r"`n_bins` must be an integer"):
        bins_for_rule(0, 10)


def test_explicit_edges(rng):
    p = rng.uniform(size=300)
    y = rng.integers(0, 2, size=300)
    a = report(y, p, binning="edges", edges=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0)).scalars["ece"]
    b = report(y, p, n_bins=5).scalars["ece"]
    assert a == pytest.approx(b, abs=1e-15)
    with pytest.raises(InputError, match=r"`edges\[2\]` must increase strictly"):
        check_edges([0, 0.5, 0.5, 1])
    with pytest.raises(InputError, match=r"`edges` must start at 0 and end at 1"):
        check_edges([0.1, 1])


def test_positive_class_needs_two_classes(rng):
    with pytest.raises(InputError, match=r"`target` \"positive_class\" needs two classes"):
        report(np.array([0, 1]), rng.dirichlet(np.ones(3), size=2), target="positive_class")


def test_preset_refuses_fixed_options():
    with pytest.raises(InputError, match=r"`closed` is fixed by preset 'netcal'"):
        resolve_convention("netcal", {"closed": "right"})
    with pytest.raises(InputError, match=r"`min_bin_count` is fixed by preset 'torchmetrics'"):
        resolve_convention("torchmetrics", {"min_bin_count": 3})


def test_single_sample_and_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0]])
    s = calibration_report(np.array([0]), Distribution.from_logits(logits)).scalars
    assert s["ece"] == 0.0 and s["accuracy"] == 1.0 and np.isfinite(s["nll"])
    assert np.isnan(s["spiegelhalter_z"])  # every confidence is exactly 1: no variance


def test_float32_input_bins_on_float32_values():
    # 0.6 in float32 is 0.60000002: above the exact edge 3/5, so it lands in bin 3 of 5 with (a, b].
    p32 = np.array([0.6], dtype=np.float32)
    result = calibration_report(np.array([1]), Distribution.from_probs(p32), Convention(n_bins=5))
    bins = result.reliability[0]
    assert bins.count[3] == 1


@pytest.mark.parametrize("n_bins", [2, 3, 7, 10, 15, 100, 1000])
@pytest.mark.parametrize("rule", ["exact", "numpy", "torch", "torch_float32"])
@pytest.mark.parametrize("closed", ["right", "left"])
def test_uniform_bin_guess_equals_searchsorted(rng, n_bins, rule, closed):
    """The floor(c·B)-and-correct path gives searchsorted's index, at edges and one ulp either side."""
    edges = uniform_edges(n_bins, rule)
    conf = np.concatenate([rng.uniform(size=5000), edges, np.nextafter(edges, 2), np.nextafter(edges, -1)])
    conf = np.clip(conf, 0.0, 1.0)
    side = "left" if closed == "right" else "right"
    for values in (conf, conf.astype(np.float32)):
        expected = np.searchsorted(edges[1:-1], values, side=side)
        np.testing.assert_array_equal(assign_shared(values, edges, closed), expected)
    irregular = np.array([0.0, 0.05, 0.9, 1.0])  # far from i/B: the searchsorted path
    np.testing.assert_array_equal(
        assign_shared(conf, irregular, closed), np.searchsorted(irregular[1:-1], conf, side=side)
    )
