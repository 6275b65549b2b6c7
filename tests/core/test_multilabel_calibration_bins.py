"""Multilabel calibration's ACE, weights and bootstrap in the core (#20): identities, written-out sums."""

import numpy as np
import pytest
from scipy.special import softmax

from service.core import InputError
from service.core.calibration.ace import ace_nixon
from service.core.calibration.conventions import Convention
from service.core.calibration.multilabel import (
    ace_columns,
    multilabel_calibration,
    multilabel_scalars,
    prepare_multilabel,
)
from service.core.calibration.multilabel_bootstrap import multilabel_bootstrap
from service.core.multilabel import multilabel_log_probs


def test_ace_columns_mean_is_ace_nixon_of_the_k_columns(rng):
    probs = softmax(rng.standard_normal((101, 4)), axis=1)
    labels = rng.integers(0, 4, size=101)
    prep = prepare_multilabel(np.eye(4)[labels], multilabel_log_probs(probs=probs), Convention(n_bins=6))
    assert ace_columns(prep.order, 6).mean() == pytest.approx(ace_nixon(labels, probs, 6), rel=1e-12)


def test_fewer_rows_than_ranges_averages_the_filled_ranges(rng):
    probs = rng.uniform(size=(3, 2))
    targets = (rng.uniform(size=(3, 2)) < 0.5).astype(float)
    prep = prepare_multilabel(targets, multilabel_log_probs(probs=probs), Convention(n_bins=10))
    np.testing.assert_allclose(ace_columns(prep.order, 10), np.abs(targets - probs).mean(axis=0), rtol=1e-12)


def test_resample_multiplicities_equal_repeated_rows(rng):
    probs = rng.uniform(size=(40, 3))
    targets = (rng.uniform(size=(40, 3)) < probs).astype(float)
    counts = np.bincount(rng.integers(0, 40, size=40), minlength=40)  # a resample: N draws
    names = ["ece", "mce", "rmsce", "ace_netcal", "ace_nixon", "brier", "nll"]
    conv = Convention(n_bins=5)
    prep = prepare_multilabel(targets, multilabel_log_probs(probs=probs), conv)
    weighted, _ = multilabel_scalars(prep, counts[None, :].astype(float), names, counts=True)
    rows = np.repeat(np.arange(40), counts)
    repeated = multilabel_calibration(
        targets[rows], multilabel_log_probs(probs=probs[rows]), conv, metrics=names
    )
    for name in names:
        if name == "ace_nixon":  # the resample form returns the mean over classes
            assert weighted[name][0, 0] == pytest.approx(repeated.means[name], rel=1e-12)
        else:
            np.testing.assert_allclose(weighted[name][0], repeated.per_class[name], rtol=1e-12, err_msg=name)


def test_bootstrap_bounds_and_one_resample_of_all_ones(rng):
    probs = rng.uniform(size=(30, 2))
    targets = (rng.uniform(size=(30, 2)) < probs).astype(float)
    prep = prepare_multilabel(targets, multilabel_log_probs(probs=probs), Convention(n_bins=4))
    with pytest.raises(InputError, match=r"bootstrap\.n"):
        multilabel_bootstrap(prep, ["ece"], n_resamples=0)
    with pytest.raises(InputError, match=r"bootstrap\.level"):
        multilabel_bootstrap(prep, ["ece"], level=1.0)
    a = multilabel_bootstrap(prep, ["ece", "brier"], n_resamples=300, seed=3, max_elements=100)
    b = multilabel_bootstrap(prep, ["ece", "brier"], n_resamples=300, seed=3)
    assert a == b  # chunking changes nothing: the draws are one stream
    full = multilabel_calibration(targets, multilabel_log_probs(probs=probs), Convention(n_bins=4))
    assert a["brier"].low <= full.means["brier"] <= a["brier"].high
