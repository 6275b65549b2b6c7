"""Calibration metrics against peer libraries (test-only dependencies, versions in pyproject)."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from netcal.metrics import ACE, ECE, MCE
from relplot import multiclass_logits_to_confidences, smECE
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error
from torchmetrics.functional.classification.calibration_error import _ce_compute

from service.core import Convention, Distribution, calibration_report, resolve_convention
from service.core.calibration.bin_edges import uniform_edges
from service.core.calibration.smooth_ece import smooth_ece

# The 7-point case: confidences and whether each prediction was correct.
GOLDEN_CONF = np.array([0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3])
GOLDEN_CORRECT = np.array([0, 1, 0, 1, 0, 0, 1])


def golden(preset, **options):
    conv = resolve_convention(preset, {"n_bins": 5, **options})
    return calibration_report(GOLDEN_CORRECT, Distribution.from_probs(GOLDEN_CONF), conv)


def guo_ece_loss(confidences, accuracies, n_bins):
    """Transcription of _ECELoss.forward (gpleiss/temperature_scaling), fed confidences directly.

    The original accumulates into torch.zeros(1) (float32); this keeps float64 so the
    comparison is at 1e-12 rather than float32 rounding.
    """
    bin_boundaries = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(1, dtype=torch.float64)
    for bin_lower, bin_upper in zip(bin_boundaries[:-1], bin_boundaries[1:], strict=True):
        in_bin = confidences.gt(bin_lower.item()) * confidences.le(bin_upper.item())
        prop_in_bin = in_bin.double().mean()
        if prop_in_bin.item() > 0:
            accuracy_in_bin = accuracies[in_bin].double().mean()
            avg_confidence_in_bin = confidences[in_bin].mean()
            ece += torch.abs(avg_confidence_in_bin - accuracy_in_bin) * prop_in_bin
    return float(ece.item())


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        ("torchmetrics", 3.0 / 7),  # [a, b) bins, torch.linspace edge 0.6 exact, p = 1 in a bin of its own
        ("sklearn", 3.4 / 7),  # (a, b] bins: 0.2, 0.4, 0.6, 0.8 drop to the bin below
        ("netcal", 1.4 / 7),  # [a, b) bins with np.linspace edge 0.6000000000000001, p = 1 clipped
        ("guo", 3.4 / 7),  # (lower, upper] loop over float32 edges
        (None, 3.4 / 7),  # Xent default: (a, b] with edges i/B
    ],
)
def test_golden_case_closed_forms(preset, expected):
    assert golden(preset).scalars["ece"] == pytest.approx(expected, abs=1e-12)


def test_golden_case_default_closed_left():
    conv = Convention(n_bins=5, closed="left")
    report = calibration_report(GOLDEN_CORRECT, Distribution.from_probs(GOLDEN_CONF), conv)
    assert report.scalars["ece"] == pytest.approx(2.6 / 7, abs=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_golden_case_matches_torchmetrics(norm):
    expected = binary_calibration_error(
        torch.tensor(GOLDEN_CONF), torch.tensor(GOLDEN_CORRECT), n_bins=5, norm=norm
    ).item()
    got = golden("torchmetrics", norm=norm).scalars["calibration_error"]
    assert got == pytest.approx(expected, abs=1e-12)


def test_golden_case_matches_netcal():
    report = golden("netcal")
    assert report.scalars["ece"] == pytest.approx(ECE(bins=5).measure(GOLDEN_CONF, GOLDEN_CORRECT), abs=1e-12)
    assert report.scalars["mce"] == pytest.approx(MCE(bins=5).measure(GOLDEN_CONF, GOLDEN_CORRECT), abs=1e-12)
    expected_ace = ACE(bins=5).measure(GOLDEN_CONF, GOLDEN_CORRECT)
    assert report.scalars["ace_netcal"] == pytest.approx(expected_ace, abs=1e-12)


def test_golden_case_matches_sklearn_calibration_curve():
    report = golden("sklearn")
    prob_true, prob_pred = calibration_curve(GOLDEN_CORRECT, GOLDEN_CONF, n_bins=5)
    bins = report.reliability[0]
    filled = bins.count > 0
    np.testing.assert_allclose(bins.accuracy[filled], prob_true, rtol=0, atol=1e-15)
    np.testing.assert_allclose(bins.confidence[filled], prob_pred, rtol=0, atol=1e-15)


def test_golden_case_matches_guo_ece_loss():
    expected = guo_ece_loss(torch.tensor(GOLDEN_CONF), torch.tensor(GOLDEN_CORRECT), 5)
    assert golden("guo").scalars["ece"] == pytest.approx(expected, abs=1e-12)


def test_golden_case_smooth_ece_matches_relplot():
    value, sigma = smECE(GOLDEN_CONF, GOLDEN_CORRECT.astype(float), return_width=True)
    report = golden(None)
    assert report.scalars["smooth_ece"] == pytest.approx(value, abs=1e-12)
    assert report.scalars["smooth_ece_sigma"] == sigma


@pytest.mark.parametrize("seed", range(4))
def test_fft_smooth_ece_matches_relplots_direct_convolution(seed):
    """FFT convolution with cached kernels == relplot's np.convolve, over sizes, shapes and ties."""
    rng = np.random.default_rng(seed)
    for i, n in enumerate([1, 2, 3, 7, 32, 200, 3000]):
        draws = (rng.uniform(0, 1, n), rng.beta(8, 1, n), np.round(rng.uniform(0, 1, n), 1))
        conf = draws[(i + seed) % 3]
        outcome = (rng.uniform(size=n) < conf ** (1 + seed)).astype(float)
        value, sigma = smECE(conf, outcome, return_width=True)
        got = smooth_ece(conf, outcome)
        assert got.value == pytest.approx(value, abs=1e-12)
        assert got.sigma == sigma


def edgy_binary(rng, n, n_bins):
    """Positive-class probabilities with many exactly on i/B edges, 0 and 1."""
    p = rng.uniform(size=n)
    p[: n // 4] = rng.integers(0, n_bins + 1, size=n // 4) / n_bins
    y = (rng.uniform(size=n) < p**1.3).astype(np.int64)
    return p, y


@pytest.mark.parametrize("n_bins", [1, 3, 5, 10, 15, 17, 33])
@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_binary_matches_torchmetrics(rng, n_bins, norm):
    p, y = edgy_binary(rng, 500, n_bins)
    expected = binary_calibration_error(torch.tensor(p), torch.tensor(y), n_bins=n_bins, norm=norm).item()
    conv = resolve_convention("torchmetrics", {"n_bins": n_bins, "norm": norm})
    got = calibration_report(y, Distribution.from_probs(p), conv).scalars["calibration_error"]
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_multiclass_matches_torchmetrics_to_float32(rng, norm):
    """torchmetrics casts top-label confidences to float32; bins agree exactly, sums to float32 rounding."""
    logits = 3 * rng.standard_normal((2000, 7))
    labels = rng.integers(0, 7, size=2000)
    expected = multiclass_calibration_error(
        torch.tensor(logits).softmax(1), torch.tensor(labels), num_classes=7, n_bins=15, norm=norm
    ).item()
    conv = resolve_convention("torchmetrics", {"norm": norm})
    got = calibration_report(labels, Distribution.from_logits(logits), conv).scalars["calibration_error"]
    assert got == pytest.approx(expected, abs=2e-6)


def test_torch_linspace_edges_are_bit_exact():
    for n_bins in range(1, 300):
        for rule, dtype in (("torch", torch.float64), ("torch_float32", torch.float32)):
            expected = torch.linspace(0, 1, n_bins + 1, dtype=dtype).double().numpy()
            np.testing.assert_array_equal(uniform_edges(n_bins, rule), expected)


def test_debiased_l2_matches_torchmetrics_debias(rng):
    """Same estimator where every bin holds at least two samples (Kumar et al. drop singletons)."""
    p = rng.uniform(0.05, 0.95, size=3000)
    y = (rng.uniform(size=3000) < p).astype(np.int64)
    expected = _ce_compute(torch.tensor(p), torch.tensor(y).double(), 10, norm="l2", debias=True).item()
    conv = resolve_convention("torchmetrics", {"n_bins": 10})
    got = calibration_report(y, Distribution.from_probs(p), conv).scalars["debiased_l2"]
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("n_bins", [5, 10, 20])
@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_multiclass_matches_netcal(rng, n_bins, binning):
    probs = rng.dirichlet(np.full(4, 0.5), size=800)
    labels = rng.integers(0, 4, size=800)
    kwargs = {"bins": n_bins, "equal_intervals": binning == "uniform"}
    conv = resolve_convention("netcal", {"n_bins": n_bins, "binning": binning})
    report = calibration_report(labels, Distribution.from_probs(probs), conv)
    assert report.scalars["ece"] == pytest.approx(ECE(**kwargs).measure(probs, labels), abs=1e-12)
    assert report.scalars["mce"] == pytest.approx(MCE(**kwargs).measure(probs, labels), abs=1e-12)
    assert report.scalars["ace_netcal"] == pytest.approx(ACE(**kwargs).measure(probs, labels), abs=1e-12)


def test_netcal_sample_threshold_is_min_bin_count(rng):
    probs = rng.dirichlet(np.full(3, 0.3), size=300)
    labels = rng.integers(0, 3, size=300)
    conv = resolve_convention("netcal", {"n_bins": 20, "min_bin_count": 8})
    report = calibration_report(labels, Distribution.from_probs(probs), conv)
    expected = ECE(bins=20, sample_threshold=8).measure(probs, labels)
    assert report.scalars["ece"] == pytest.approx(expected, abs=1e-12)
    assert report.n_excluded_bins > 0


@pytest.mark.parametrize("strategy", ["uniform", "quantile"])
@pytest.mark.parametrize("n_bins", [4, 10, 15])
def test_binary_bins_match_sklearn_calibration_curve(rng, strategy, n_bins):
    p, y = edgy_binary(rng, 400, n_bins)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=n_bins, strategy=strategy)
    conv = resolve_convention("sklearn", {"n_bins": n_bins, "binning": strategy})
    bins = calibration_report(y, Distribution.from_probs(p), conv).reliability[0]
    filled = bins.count > 0
    np.testing.assert_allclose(bins.accuracy[filled], prob_true, rtol=0, atol=1e-14)
    np.testing.assert_allclose(bins.confidence[filled], prob_pred, rtol=0, atol=1e-14)


@pytest.mark.parametrize("scale", ["auto", "sum", "half"])
@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_brier_matches_sklearn(rng, scale, n_classes):
    probs = rng.dirichlet(np.ones(n_classes), size=300)
    labels = rng.integers(0, n_classes, size=300)
    sk_scale = {"auto": "auto", "sum": False, "half": True}[scale]
    expected = brier_score_loss(labels, probs, scale_by_half=sk_scale, labels=list(range(n_classes)))
    conv = Convention(brier_scale=scale)
    got = calibration_report(labels, Distribution.from_probs(probs), conv).scalars["brier"]
    assert got == pytest.approx(expected, abs=1e-12)


def test_binary_brier_matches_sklearn(rng):
    p = rng.uniform(size=200)
    y = rng.integers(0, 2, size=200)
    got = calibration_report(y, Distribution.from_probs(p)).scalars["brier"]
    assert got == pytest.approx(brier_score_loss(y, p), abs=1e-12)


@pytest.mark.parametrize("n", [50, 2000])
def test_top_label_smooth_ece_matches_relplot(rng, n):
    logits = 2 * rng.standard_normal((n, 5))
    labels = rng.integers(0, 5, size=n)
    f, y = multiclass_logits_to_confidences(logits, labels)
    value, sigma = smECE(f, y, return_width=True)
    report = calibration_report(labels, Distribution.from_logits(logits))
    assert report.scalars["smooth_ece"] == pytest.approx(value, abs=1e-12)
    assert report.scalars["smooth_ece_sigma"] == sigma


def test_guo_preset_matches_ece_loss_on_logits(rng):
    logits = torch.tensor(2 * rng.standard_normal((1000, 10)))
    labels = torch.tensor(rng.integers(0, 10, size=1000))
    confidences, predictions = torch.max(torch.softmax(logits, 1), 1)
    expected = guo_ece_loss(confidences, predictions.eq(labels), 15)
    conv = resolve_convention("guo", {})
    report = calibration_report(labels.numpy(), Distribution.from_logits(logits.numpy()), conv)
    assert report.scalars["ece"] == pytest.approx(expected, abs=1e-12)


def test_netcal_ace_sample_threshold_keeps_thresholded_bins_in_the_divisor():
    """Issue #20, disagreement 1: the issue's case, netcal 0.125 (Xent gave 0.375)."""
    probs = np.array([[0.9, 0.05, 0.05], [0.85, 0.1, 0.05], [0.5, 0.3, 0.2], [0.35, 0.33, 0.32]])
    labels = np.array([0, 1, 0, 2])
    conv = resolve_convention("netcal", {"n_bins": 5, "min_bin_count": 2})
    scalars = calibration_report(labels, Distribution.from_probs(probs), conv).scalars
    assert scalars["ace_netcal"] == pytest.approx(
        ACE(bins=5, sample_threshold=2).measure(probs, labels), abs=1e-15
    )
    assert scalars["ace_netcal"] == pytest.approx(0.125, abs=1e-15)
    assert scalars["ece"] == pytest.approx(ECE(bins=5, sample_threshold=2).measure(probs, labels), abs=1e-15)
    assert scalars["mce"] == pytest.approx(MCE(bins=5, sample_threshold=2).measure(probs, labels), abs=1e-15)


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
@pytest.mark.parametrize(("n_bins", "threshold"), [(10, 7), (20, 4), (5, 25)])  # above N/B = 60/B
@pytest.mark.parametrize("binary", [False, True])
def test_netcal_ace_ece_mce_with_sample_threshold(rng, binning, n_bins, threshold, binary):
    probs = rng.dirichlet(np.full(3, 0.4), size=60)
    labels = rng.integers(0, 3, size=60)
    if binary:
        probs, labels = probs[:, 0], (labels == 0).astype(int)
    kwargs = {"bins": n_bins, "equal_intervals": binning == "uniform", "sample_threshold": threshold}
    conv = resolve_convention("netcal", {"n_bins": n_bins, "binning": binning, "min_bin_count": threshold})
    report = calibration_report(labels, Distribution.from_probs(probs), conv)
    assert report.n_excluded_bins > 0
    for name, metric in (("ace_netcal", ACE), ("ece", ECE), ("mce", MCE)):
        assert report.scalars[name] == pytest.approx(metric(**kwargs).measure(probs, labels), abs=1e-12), name


def _sharp_float32(rng, n, k, scale):
    """float32 softmax rows, many confidences at 1 - eps after netcal's clip: quantile edges on data."""
    logits = scale * rng.standard_normal((n, k))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32), rng.integers(0, k, size=n)


@pytest.mark.parametrize("binning", ["quantile", "uniform"])
@pytest.mark.parametrize("scale", [1, 5, 20])
@pytest.mark.parametrize("binary", [False, True])
def test_netcal_float32_matches_exactly(rng, binning, scale, binary):
    """Issue #20, disagreement 3: netcal averages over float32-rounded edges, counts over float64 ones."""
    probs, labels = _sharp_float32(rng, 500, 4, scale)
    if binary:
        probs, labels = probs[:, 0].copy(), (labels == 0).astype(int)
    for n_bins, threshold in ((5, 1), (10, 1), (20, 1), (10, 30)):
        kwargs = {"bins": n_bins, "equal_intervals": binning == "uniform", "sample_threshold": threshold}
        options = {"n_bins": n_bins, "binning": binning, "min_bin_count": threshold}
        report = calibration_report(
            labels, Distribution.from_probs(probs), resolve_convention("netcal", options)
        )
        for name, metric in (("ece", ECE), ("mce", MCE), ("ace_netcal", ACE)):
            try:
                expected = metric(**kwargs).measure(probs, labels)
            except ValueError:  # scipy: "The smallest edge difference is numerically 0." (tied edges)
                continue
            assert report.scalars[name] == pytest.approx(expected, abs=1e-12), (name, n_bins)


def test_netcal_float32_quantile_cases_that_differed():
    """Seeds where float64-edge means were off netcal's ECE (up to 1e-3): now exact."""
    differed = 0
    conv = resolve_convention("netcal", {"n_bins": 5, "binning": "quantile"})
    for seed in range(10):
        probs, labels = _sharp_float32(np.random.default_rng(seed), 500, 4, 20)
        got = calibration_report(labels, Distribution.from_probs(probs), conv).scalars["ece"]
        try:
            expected = ECE(bins=5, equal_intervals=False).measure(probs, labels)
        except ValueError:  # float32-rounded edges tied: scipy's binned_statistic_dd refuses
            continue
        assert got == pytest.approx(expected, abs=1e-12)
        plain = calibration_report(
            labels, Distribution.from_probs(probs), replace(conv, input_dtype_means=False)
        )
        differed += abs(plain.scalars["ece"] - got) > 1e-6
    assert differed >= 2
