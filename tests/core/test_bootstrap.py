"""Bootstrap: multiplicity weights reproduce explicit resamples; intervals are reproducible."""

import numpy as np
import pytest

from service.core import Convention, Distribution, InputError
from service.core.calibration import (
    NOT_BOOTSTRAPPED,
    ace_nixon,
    ace_nixon_weighted,
    binned_scalars,
    class_order,
    prepare,
    sort_for_tests,
)
from service.core.calibration.binned import bin_sums
from service.core.calibration.bootstrap import bootstrap_intervals, resample_weights
from service.core.calibration.smooth_ece import smooth_ece, smooth_ece_weighted


def sample(rng, n=300, k=4):
    probs = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, size=n)
    return labels, probs


@pytest.mark.parametrize("target", ["top_label", "classwise", "marginal"])
def test_weighted_scalars_equal_scalars_of_the_explicit_resample(rng, target):
    """Multiplicities w give the metrics of the data set holding sample i w_i times (fixed bins)."""
    labels, probs = sample(rng)
    conv = Convention(target=target, n_bins=8)
    prep = prepare(labels, Distribution.from_probs(probs), conv)
    weights = resample_weights(rng, 3, labels.size)
    weighted = binned_scalars(prep, weights)
    for r in range(3):
        idx = np.repeat(np.arange(labels.size), weights[r].astype(int))
        direct = binned_scalars(prepare(labels[idx], Distribution.from_probs(probs[idx]), conv))
        for name, value in direct.items():
            if name.startswith("_") or name in NOT_BOOTSTRAPPED:
                continue
            assert weighted[name][r] == pytest.approx(value[0], rel=1e-10, abs=1e-12, nan_ok=True), name


def test_segment_path_equals_bincount_path(rng):
    conf = np.sort(rng.uniform(size=(1, 500)), axis=1)
    outcome = (rng.uniform(size=(1, 500)) < conf).astype(float)
    index = np.minimum((conf * 10).astype(np.int64), 9)
    weights = resample_weights(rng, 4, 500)
    fast = bin_sums(conf, outcome, index, 10, weights=weights, second_moments=True)
    shuffled = rng.permutation(500)
    slow = bin_sums(
        conf[:, shuffled], outcome[:, shuffled], index[:, shuffled], 10, weights=weights[:, shuffled]
    )
    np.testing.assert_allclose(fast.count, slow.count)
    np.testing.assert_allclose(fast.conf, slow.conf, rtol=1e-12)
    np.testing.assert_allclose(fast.outcome, slow.outcome, rtol=1e-12)


def test_sorting_for_tests_changes_no_scalar(rng):
    labels, probs = sample(rng)
    prep = prepare(labels, Distribution.from_probs(probs), Convention())
    a = binned_scalars(prep)
    b = binned_scalars(sort_for_tests(prep), presorted=True)
    for name in a:
        if not name.startswith("_"):
            assert a[name][0] == pytest.approx(b[name][0], rel=1e-12, abs=1e-15, nan_ok=True), name


def test_resample_weights_are_multinomial_counts(rng):
    weights = resample_weights(rng, 50, 20)
    assert weights.shape == (50, 20)
    np.testing.assert_array_equal(weights.sum(axis=1), 20)
    assert abs(weights.mean() - 1) < 0.1


def test_intervals_are_reproducible_and_bracket_the_estimate(rng):
    labels, probs = sample(rng, n=2000)
    prep = prepare(labels, Distribution.from_probs(probs), Convention())
    a = bootstrap_intervals(prep, n_resamples=200, seed=3, max_elements=5000)
    b = bootstrap_intervals(prep, n_resamples=200, seed=3)
    point = binned_scalars(prep)
    assert a.keys() == b.keys()
    assert not set(a) & set(NOT_BOOTSTRAPPED)
    for name in ("ece", "brier", "nll", "accuracy", "spiegelhalter_z", "ks_statistic"):
        # Chunking does not change the draws, only BLAS summation order.
        assert a[name].low == pytest.approx(b[name].low, rel=1e-12)
        assert a[name].high == pytest.approx(b[name].high, rel=1e-12)
        assert a[name].low <= point[name][0] <= a[name].high, name


def test_interval_width_matches_binomial_standard_error(rng):
    labels = rng.integers(0, 2, size=4000)
    probs = np.full(4000, 0.5)
    prep = prepare(labels, Distribution.from_probs(probs), Convention())
    interval = bootstrap_intervals(prep, n_resamples=2000, seed=0, names={"accuracy"})["accuracy"]
    acc = np.mean(labels == 0)  # p = 0.5 ties predict class 0
    se = np.sqrt(acc * (1 - acc) / 4000)
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * se, rel=0.1)


def test_bootstrap_rejects_bad_options(rng):
    labels, probs = sample(rng, n=10)
    prep = prepare(labels, Distribution.from_probs(probs), Convention())
    with pytest.raises(InputError, match=r"`bootstrap.n` must lie in"):
        bootstrap_intervals(prep, n_resamples=0)
    with pytest.raises(InputError, match=r"`bootstrap.level` must lie in"):
        bootstrap_intervals(prep, level=1.0)


def test_infinite_losses_give_infinite_bounds_not_nan():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    probs = np.array([0.2, 0.7, 0.1, 0.9, 0.3, 0.6, 1.0, 0.8])  # sample 6: p(y=0) = 0 with eps 0
    prep = prepare(labels, Distribution.from_probs(probs, eps=0), Convention())
    interval = bootstrap_intervals(prep, n_resamples=300, seed=0, names={"nll"})["nll"]
    assert np.isfinite(interval.low) and interval.high == np.inf


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [2, 5])
def test_weighted_ace_nixon_equals_ace_nixon_of_the_explicit_resample(seed, k):
    """Cumulative-sum shortcut == ace_nixon on the data set holding sample i w_i times (no ties)."""
    rng = np.random.default_rng(seed)
    labels, probs = sample(rng, n=97, k=k)
    for n_ranges in (1, 7, 15, 97):
        weights = resample_weights(rng, 4, labels.size)
        fast = ace_nixon_weighted(class_order(labels, probs), n_ranges, weights)
        for r in range(4):
            idx = np.repeat(np.arange(labels.size), weights[r].astype(int))
            assert fast[r] == pytest.approx(
                ace_nixon(labels[idx], probs[idx], n_ranges), rel=1e-12, abs=1e-15
            )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("binary", [True, False])
def test_resampled_brier_terms_and_ace_equal_the_explicit_resample(seed, binary):
    rng = np.random.default_rng(seed)
    labels, probs = sample(rng, n=200, k=2 if binary else 4)
    dist = Distribution.from_probs(probs[:, 1] if binary else probs)
    conv = Convention(n_bins=6)
    prep = prepare(labels, dist, conv, resample=True)
    weights = resample_weights(rng, 3, labels.size)
    weighted = binned_scalars(prep, weights)
    names = [n for n in weighted if n.startswith("brier")] + ["ace_nixon"]
    assert len(names) == 7
    for r in range(3):
        idx = np.repeat(np.arange(labels.size), weights[r].astype(int))
        d = Distribution.from_probs(probs[idx, 1] if binary else probs[idx])
        direct = binned_scalars(prepare(labels[idx], d, conv))
        direct["ace_nixon"] = np.array([ace_nixon(labels[idx], d.probs, prep.n_bins)])
        for name in names:
            assert weighted[name][r] == pytest.approx(direct[name][0], rel=1e-10, abs=1e-13), name


def test_bootstrap_gives_intervals_for_ace_nixon_and_brier_terms(rng):
    labels, probs = sample(rng, n=1000)
    prep = prepare(labels, Distribution.from_probs(probs), Convention(), resample=True)
    point = binned_scalars(prep)
    intervals = bootstrap_intervals(prep, n_resamples=200, seed=1, max_elements=20_000)
    for name in ("brier_reliability", "brier_resolution", "brier_uncertainty", "ace_nixon", "smooth_ece"):
        assert intervals[name].low < intervals[name].high, name
    for name in ("brier_reliability", "brier_uncertainty"):
        assert intervals[name].low <= point[name][0] <= intervals[name].high, name


def test_sorting_for_tests_keeps_ace_nixon_resamples(rng):
    """Relabelling samples in confidence order remaps the class order consistently."""
    labels, probs = sample(rng, n=150)
    for target in ("top_label", "classwise", "marginal"):  # sorted: grouped reduceat path
        prep = prepare(labels, Distribution.from_probs(probs), Convention(target=target), resample=True)
        weights = resample_weights(rng, 3, labels.size)
        order = np.argsort(prep.test_conf, kind="stable")
        a = binned_scalars(prep, weights)
        b = binned_scalars(sort_for_tests(prep), weights[:, order], presorted=True)
        for name in a:
            if not name.startswith("_"):
                np.testing.assert_allclose(a[name], b[name], rtol=1e-11, atol=1e-15, err_msg=name)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_weighted_smooth_ece_equals_smooth_ece_of_the_explicit_resample(seed):
    """Batched grids, FFT smoothing and lock-step bisection == relplot's rule on each resample."""
    rng = np.random.default_rng(seed)
    n = [40, 300, 2000, 5000][seed]
    conf = rng.uniform(size=n) ** (0.3 + seed)
    outcome = (rng.uniform(size=n) < conf ** (1 + seed % 2)).astype(float)
    weights = resample_weights(rng, 5, n)
    values, sigmas = smooth_ece_weighted(conf, outcome, weights)
    for r in range(5):
        idx = np.repeat(np.arange(n), weights[r].astype(int))
        direct = smooth_ece(conf[idx], outcome[idx])
        assert sigmas[r] == direct.sigma
        assert values[r] == pytest.approx(direct.value, rel=1e-9, abs=1e-12)


def test_weighted_smooth_ece_of_a_small_sample_smooths_each_sample_once():
    """More resamples than samples (the per-sample path) == relplot's rule on each resample."""
    rng = np.random.default_rng(11)
    for n in (3, 7, 30):
        conf = rng.uniform(size=n)
        outcome = (rng.uniform(size=n) < conf).astype(float)
        weights = resample_weights(rng, 4 * n + 5, n)
        values, sigmas = smooth_ece_weighted(conf, outcome, weights)
        for r in range(weights.shape[0]):
            idx = np.repeat(np.arange(n), weights[r].astype(int))
            direct = smooth_ece(conf[idx], outcome[idx])
            assert sigmas[r] == direct.sigma
            assert values[r] == pytest.approx(direct.value, rel=1e-9, abs=1e-12)


def test_int32_draws_are_the_int64_stream():
    """resample_weights draws int32 indices: the same values NumPy gives for int64 (bounds < 2**32)."""
    a = np.random.default_rng(7).integers(0, 1000, size=(3, 1000), dtype=np.int64)
    weights = resample_weights(np.random.default_rng(7), 3, 1000)
    expected = np.stack([np.bincount(row, minlength=1000) for row in a])
    np.testing.assert_array_equal(weights, expected)
