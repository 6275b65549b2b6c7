"""The multilabel core (#20): per-element BCE, sklearn's indicator log loss, class-wise calibration."""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import log_loss
from torchmetrics.functional.classification import binary_calibration_error

from service.core import InputError, resolve_convention
from service.core.calibration.multilabel import multilabel_calibration
from service.core.multilabel import (
    check_unit_matrix,
    indicator_log_loss,
    multilabel_bce,
    multilabel_log_probs,
)


def test_multilabel_bce_is_exact_for_extreme_logits():
    logits = np.array([[1e4, -1e4, 30.0], [-1e4, 1e4, -745.0]])
    targets = np.array([[1.0, 0.0, 0.25], [1.0, 0.0, 0.5]])
    got = multilabel_bce(targets, multilabel_log_probs(logits=logits))
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction="none"
    ).numpy()
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


def test_multilabel_bce_of_certain_probabilities_without_eps():
    """eps 0: a certain, right prediction costs 0 (never 0·log 0 = NaN); a certain, wrong one +inf."""
    probs = np.array([[1.0, 0.0, 0.5]])
    right = multilabel_bce(np.array([[1.0, 0.0, 1.0]]), multilabel_log_probs(probs=probs, eps=0))
    np.testing.assert_allclose(right, [[0.0, 0.0, np.log(2)]])
    wrong = multilabel_bce(np.array([[0.0, 1.0, 1.0]]), multilabel_log_probs(probs=probs, eps=0))
    assert np.isinf(wrong[0, :2]).all()


def test_multilabel_eps_counts_both_sides_clipped():
    lp = multilabel_log_probs(probs=np.array([[1.0, 0.0, 0.5]]))
    assert lp.n_clipped == 2 and lp.eps == np.finfo(np.float64).eps


def test_indicator_log_loss_is_sklearns_on_float32(rng):
    probs = rng.uniform(0.01, 0.99, size=(100, 4)).astype(np.float32)
    targets = (rng.random((100, 4)) < 0.5).astype(np.float32)
    got = indicator_log_loss(targets, multilabel_log_probs(probs=probs))
    assert got.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # rows do not sum to 1
        expected = log_loss(targets, probs)
    assert float(got.mean(dtype=np.float64)) == pytest.approx(expected, rel=1e-6)


def test_multilabel_calibration_float32_under_torchmetrics_preset(rng):
    probs = rng.uniform(size=(500, 3)).astype(np.float32)
    targets = (rng.random((500, 3)) < probs).astype(np.float64)
    conv = resolve_convention("torchmetrics", {"n_bins": 15})
    report = multilabel_calibration(targets, multilabel_log_probs(probs=probs), conv)
    expected = [
        binary_calibration_error(torch.tensor(probs[:, j]), torch.tensor(targets[:, j]).long()).item()
        for j in range(3)
    ]
    np.testing.assert_allclose(report.per_class["ece"], expected, atol=1e-6)  # torchmetrics sums in float32


def test_multilabel_calibration_quantile_bins_hold_equal_mass_per_column(rng):
    probs = rng.uniform(size=(400, 2))
    targets = (rng.random((400, 2)) < probs).astype(np.float64)
    conv = resolve_convention(None, {"binning": "quantile", "n_bins": 4})
    report = multilabel_calibration(targets, multilabel_log_probs(probs=probs), conv)
    for j in range(2):  # 4 quartile bins of 100 pairs each: the ECE of each column by hand
        order = np.argsort(probs[:, j])
        bins = np.split(order, 4)
        gaps = [abs(probs[b, j].mean() - targets[b, j].mean()) for b in bins]
        assert report.per_class["ece"][j] == pytest.approx(np.mean(gaps), abs=1e-12)


def test_check_unit_matrix_names_the_element():
    with pytest.raises(InputError, match=r"`targets\[1\]\[0\]` must lie in \[0, 1\]; got nan"):
        check_unit_matrix([[0.0, 1.0], [float("nan"), 0.0]], field="targets")
    with pytest.raises(InputError, match=r"shape of the predictions \[2, 3\]"):
        check_unit_matrix([[0.0, 1.0], [1.0, 0.0]], field="targets", shape=(2, 3))
