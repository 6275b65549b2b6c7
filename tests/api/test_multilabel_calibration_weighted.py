"""Multilabel /v1/calibration with `sample_weight` (#20): reliability bins, the bootstrap, quantile edges.

References: the binary route's weighted answer (one column is a binary problem), scikit-learn's
``calibration_curve`` per column on repeated rows, a NumPy weighted bootstrap written out, and the
identities integer weights = repeated rows, zero weights = dropped rows.
"""

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

NAMES = ["ece", "mce", "ace_netcal", "debiased_l2", "brier", "nll"]
BINS = ("lower", "upper", "count", "weight_sum", "confidence", "accuracy", "wilson_low", "wilson_high")


def _batch(rng, n=300, k=3):
    probs = rng.uniform(size=(n, k))
    targets = (rng.uniform(size=(n, k)) < probs**1.3).astype(np.float64)
    return probs, targets


def _post(client, **body):
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _multi(client, probs, targets, **options):
    return _post(client, multilabel=True, probs=probs.tolist(), targets=targets.tolist(), **options)


def _same_bins(ours, theirs, keys=BINS):
    for key in keys:
        as_float = [np.asarray(v[key], dtype=np.float64) for v in (ours, theirs)]  # null: NaN
        np.testing.assert_allclose(*as_float, rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=key)


@pytest.mark.parametrize(
    "options",
    [
        {"n_bins": 6},
        {"n_bins": 6, "binning": "quantile"},
        {"n_bins": 5, "preset": "sklearn", "binning": "quantile"},
        {"n_bins": 7, "preset": "netcal"},
    ],
)
def test_one_column_weighted_equals_the_binary_route(client, rng, options):
    probs, targets = _batch(rng, k=1)
    # The binary route relabels rows in confidence order before drawing (same law, other draws):
    # rows sent in that order make both routes draw the same resamples under one seed.
    order = np.argsort(probs[:, 0], kind="stable")
    probs, targets = probs[order], targets[order]
    weights = rng.uniform(0.0, 3.0, size=probs.shape[0])
    weights[rng.uniform(size=weights.size) < 0.2] = 0.0
    common = {
        **options,
        "metrics": [*NAMES, "reliability"],
        "sample_weight": weights.tolist(),
        "bootstrap": {"n": 200, "seed": 11, "level": 0.9},
    }
    multi = _multi(client, probs, targets, **common)
    binary = _post(client, probs=probs[:, 0].tolist(), labels=targets[:, 0].astype(int).tolist(), **common)
    for name in NAMES:
        assert multi["metrics"][name] == pytest.approx(binary["metrics"][name], rel=1e-12, abs=1e-15), name
    _same_bins(multi["reliability"][0], binary["reliability"][0])
    assert multi["reliability"][0]["weight_sum"] != multi["reliability"][0]["count"]
    ours, theirs = multi["bootstrap"]["intervals"], binary["bootstrap"]["intervals"]
    for name in NAMES:
        for end in ("low", "high"):
            assert ours[name][end] == pytest.approx(theirs[name][end], rel=1e-10, abs=1e-14), (name, end)
    assert "m·s" in multi["bootstrap"]["method"] and multi["convention"]["sample_weight"]


@pytest.mark.parametrize("binning", ["uniform", "quantile"])
def test_integer_weights_equal_repeated_rows_and_zero_weights_dropped_rows(client, rng, binning):
    probs, targets = _batch(rng, n=120)
    counts = rng.integers(0, 4, size=probs.shape[0])
    options = {"n_bins": 5, "binning": binning, "metrics": [*NAMES, "reliability"]}
    weighted = _multi(client, probs, targets, sample_weight=counts.astype(float).tolist(), **options)
    repeated = _multi(client, np.repeat(probs, counts, axis=0), np.repeat(targets, counts, axis=0), **options)
    kept = counts > 0  # the zero-weight rows dropped, the others at their weight
    dropped = _multi(
        client, probs[kept], targets[kept], sample_weight=counts[kept].astype(float).tolist(), **options
    )
    for name in NAMES:
        np.testing.assert_allclose(weighted["per_class"][name], repeated["per_class"][name], rtol=1e-12)
        np.testing.assert_allclose(weighted["per_class"][name], dropped["per_class"][name], rtol=1e-12)
    for ours, rows, kept_rows in zip(
        weighted["reliability"], repeated["reliability"], dropped["reliability"], strict=True
    ):
        assert ours["weight_sum"] == [float(c) for c in rows["count"]]  # the mass of each bin
        _same_bins(ours, rows, keys=("lower", "upper", "confidence", "accuracy", "wilson_low", "wilson_high"))
        _same_bins(ours, kept_rows, keys=[key for key in BINS if key != "count"])
    assert sum(weighted["reliability"][0]["count"]) == probs.shape[0]  # rows, whatever their weight


def test_bins_per_column_match_calibration_curve_on_repeated_rows(client, rng):
    probs, targets = _batch(rng, n=200, k=3)
    counts = rng.integers(0, 5, size=probs.shape[0])
    got = _multi(
        client,
        probs,
        targets,
        preset="sklearn",
        binning="quantile",
        n_bins=6,
        sample_weight=counts.astype(float).tolist(),
        metrics=["ece", "reliability"],
    )
    for j, bins in enumerate(got["reliability"]):
        p, t = np.repeat(probs[:, j], counts), np.repeat(targets[:, j], counts)
        prob_true, prob_pred = calibration_curve(t, p, n_bins=6, strategy="quantile")
        edges = np.percentile(p, np.linspace(0, 100, 7))
        np.testing.assert_allclose(bins["lower"][1:], edges[1:-1], rtol=1e-12)
        filled = np.asarray(bins["weight_sum"]) > 0
        np.testing.assert_allclose(np.asarray(bins["accuracy"])[filled], prob_true, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(bins["confidence"])[filled], prob_pred, rtol=1e-12)


def test_weighted_bootstrap_of_the_mean_brier_written_out(client, rng):
    probs, targets = _batch(rng, n=80, k=4)
    weights = rng.uniform(0.0, 2.0, size=80)
    r, seed, level = 300, 5, 0.8
    got = _multi(
        client,
        probs,
        targets,
        sample_weight=weights.tolist(),
        metrics=["brier"],
        bootstrap={"n": r, "seed": seed, "level": level},
    )
    draws = np.random.default_rng(seed).integers(0, 80, size=(r, 80), dtype=np.int32)
    mass = np.stack([np.bincount(row, minlength=80) for row in draws]) * weights  # m·s
    per_row = ((probs - targets) ** 2).mean(axis=1)  # the mean over classes of the row's Brier terms
    values = mass @ per_row / mass.sum(axis=1)
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    interval = got["bootstrap"]["intervals"]["brier"]
    assert interval["low"] == pytest.approx(low, rel=1e-12)
    assert interval["high"] == pytest.approx(high, rel=1e-12)
