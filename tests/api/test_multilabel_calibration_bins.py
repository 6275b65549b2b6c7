"""Multilabel /v1/calibration (#20): per-class reliability bins, ACE and the bootstrap.

Each column is a binary problem: references are scikit-learn's ``calibration_curve`` and
torchmetrics' ``binary_calibration_error`` per column, Nixon et al.'s ACE written out with
``np.array_split``, and identities (one column equals the binary route; one-hot targets of a
distribution equal the categorical route's class-wise ACE).
"""

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error

from tests.conftest import assert_problem


def _batch(rng, n=300, k=4):
    probs = rng.uniform(size=(n, k))
    targets = (rng.uniform(size=(n, k)) < probs**1.3).astype(np.float64)
    return probs, targets


def _post(client, **body):
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_reliability_bins_per_class_match_calibration_curve(client, rng):
    probs, targets = _batch(rng)
    got = _post(
        client,
        multilabel=True,
        probs=probs.tolist(),
        targets=targets.tolist(),
        preset="sklearn",
        n_bins=8,
        metrics=["ece", "reliability"],
    )
    assert [r["group"] for r in got["reliability"]] == list(range(4))
    for j, bins in enumerate(got["reliability"]):
        prob_true, prob_pred = calibration_curve(targets[:, j], probs[:, j], n_bins=8)
        counts = np.bincount(np.searchsorted(np.linspace(0, 1, 9)[1:-1], probs[:, j]), minlength=8)
        assert bins["count"] == counts.tolist()
        filled = counts > 0
        np.testing.assert_allclose(np.asarray(bins["accuracy"])[filled], prob_true, rtol=1e-12)
        np.testing.assert_allclose(np.asarray(bins["confidence"])[filled], prob_pred, rtol=1e-12)
        assert all(v is None for v, f in zip(bins["accuracy"], filled, strict=True) if not f)


@pytest.mark.parametrize("preset", [None, "netcal", "torchmetrics"])
def test_one_column_equals_the_binary_route(client, rng, preset):
    probs, targets = _batch(rng, k=1)
    options = {
        "n_bins": 6,
        "metrics": ["ece", "mce", "ace_netcal", "debiased_l2", "brier", "nll", "reliability"],
    }
    if preset:
        options["preset"] = preset
    multi = _post(client, multilabel=True, probs=probs.tolist(), targets=targets.tolist(), **options)
    binary = _post(client, probs=probs[:, 0].tolist(), labels=targets[:, 0].astype(int).tolist(), **options)
    for name in ("ece", "mce", "ace_netcal", "debiased_l2", "brier", "nll"):
        assert multi["metrics"][name] == pytest.approx(binary["metrics"][name], rel=1e-12, abs=1e-15), name
    ours, theirs = multi["reliability"][0], binary["reliability"][0]
    assert ours["group"] == 0 and theirs["group"] is None
    for key in ("lower", "upper", "count", "confidence", "accuracy", "wilson_low", "wilson_high"):
        as_float = [np.asarray(v[key], dtype=np.float64) for v in (ours, theirs)]  # null: NaN
        np.testing.assert_allclose(*as_float, rtol=1e-12, atol=1e-15, equal_nan=True, err_msg=key)


def _nixon(p, y, n_ranges):
    """ACE of one column, written out: sort, np.array_split into ranges, mean |acc - conf|."""
    order = np.argsort(p, kind="stable")
    gaps = [abs(y[part].mean() - p[part].mean()) for part in np.array_split(order, n_ranges) if part.size]
    return float(np.mean(gaps))


def test_ace_per_class_matches_nixon_written_out_and_netcal_equal_bin_mean(client, rng):
    probs, targets = _batch(rng)
    got = _post(
        client,
        multilabel=True,
        probs=probs.tolist(),
        targets=targets.tolist(),
        n_bins=7,
        metrics=["ace_nixon", "ace_netcal"],
    )
    nixon = [_nixon(probs[:, j], targets[:, j], 7) for j in range(4)]
    np.testing.assert_allclose(got["per_class"]["ace_nixon"], nixon, rtol=1e-12)
    assert got["metrics"]["ace_nixon"] == pytest.approx(np.mean(nixon), rel=1e-12)
    netcal = []
    for j in range(4):  # netcal's ACE: every non-empty (a, b] bin weighs the same
        index = np.clip(np.ceil(probs[:, j] * 7).astype(int) - 1, 0, 6)
        gaps = [abs(targets[index == b, j].mean() - probs[index == b, j].mean()) for b in np.unique(index)]
        netcal.append(np.mean(gaps))
    np.testing.assert_allclose(got["per_class"]["ace_netcal"], netcal, rtol=1e-12)


def test_one_hot_targets_of_a_distribution_give_the_categorical_class_wise_ace(client, rng):
    probs = softmax(2 * rng.standard_normal((250, 3)), axis=1)
    labels = rng.integers(0, 3, size=250)
    multi = _post(
        client,
        multilabel=True,
        probs=probs.tolist(),
        targets=np.eye(3)[labels].tolist(),
        n_bins=9,
        metrics=["ace_nixon"],
    )
    categorical = _post(client, probs=probs.tolist(), labels=labels.tolist(), n_bins=9, metrics=["ace_nixon"])
    assert multi["metrics"]["ace_nixon"] == pytest.approx(categorical["metrics"]["ace_nixon"], rel=1e-12)


def test_bootstrap_matches_torchmetrics_and_sklearn_on_the_same_resamples(client, rng):
    probs, targets = _batch(rng, n=120, k=3)
    r, seed = 40, 7
    got = _post(
        client,
        multilabel=True,
        probs=probs.tolist(),
        targets=targets.tolist(),
        preset="torchmetrics",
        n_bins=5,
        metrics=["ece", "brier", "ace_nixon"],
        bootstrap={"n": r, "seed": seed, "level": 0.9},
    )
    draws = np.random.default_rng(seed).integers(0, 120, size=(r, 120), dtype=np.int32)
    ece, brier, ace = [], [], []
    for rows in draws:
        p, t = probs[rows], targets[rows]
        ece.append(
            np.mean(
                [
                    binary_calibration_error(
                        torch.tensor(p[:, j]), torch.tensor(t[:, j]).long(), n_bins=5
                    ).item()
                    for j in range(3)
                ]
            )
        )
        brier.append(np.mean([brier_score_loss(t[:, j], p[:, j]) for j in range(3)]))
        ace.append(np.mean([_nixon(p[:, j], t[:, j], 5) for j in range(3)]))
    intervals = got["bootstrap"]["intervals"]
    for name, values, tol in (("ece", ece, 1e-6), ("brier", brier, 1e-12), ("ace_nixon", ace, 1e-12)):
        low, high = np.percentile(values, [5, 95])
        assert intervals[name]["low"] == pytest.approx(low, rel=tol), name
        assert intervals[name]["high"] == pytest.approx(high, rel=tol), name
    assert got["bootstrap"]["n"] == r and got["bootstrap"]["seed"] == seed


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"classes": ["a", "b"]}, "#/classes", "declares 2 classes but the predictions have 3 columns"),
        ({"sample_weight": [1.0] * 4, "metrics": ["ace_nixon"]}, "#/sample_weight", "ace_nixon"),
        (
            {"sample_weight": [1.0] * 4, "metrics": ["ace_nixon"], "bootstrap": {"n": 10}},
            "#/sample_weight",
            "ace_nixon",
        ),
        ({"sample_weight": [1e308] * 4, "bootstrap": {"n": 10}}, "#/sample_weight", "finite"),
        ({"metrics": ["smooth_ece"]}, "#/metrics", "multilabel"),
    ],
)
def test_multilabel_refusals_name_their_field(client, extra, pointer, match):
    body = {"multilabel": True, "probs": [[0.2, 0.5, 0.9]] * 4, "targets": [[0, 1, 1]] * 4, **extra}
    assert_problem(client.post("/v1/calibration", json=body), 422, pointer, match)


def test_classes_name_the_columns_and_are_echoed(client, rng):
    probs, targets = _batch(rng, k=3)
    body = {"multilabel": True, "probs": probs.tolist(), "targets": targets.tolist()}
    named = _post(client, **body, classes=["cat", "dog", "bird"])
    plain = _post(client, **body)
    assert named["metrics"] == plain["metrics"] and named["per_class"] == plain["per_class"]
    assert named["convention"]["classes"] == ["cat", "dog", "bird"]


def test_one_hot_columns_give_the_categorical_class_wise_debiased_l2(client, rng):
    probs = softmax(2 * rng.standard_normal((400, 3)), axis=1)
    labels = (np.log(probs) + rng.gumbel(size=probs.shape)).argmax(axis=1)
    body = {"probs": probs.tolist(), "n_bins": 8, "metrics": ["debiased_l2", "ece"]}
    multi = _post(client, multilabel=True, targets=np.eye(3)[labels].tolist(), **body)
    categorical = _post(client, labels=labels.tolist(), target="classwise", **body)
    for name in ("debiased_l2", "ece"):
        assert multi["metrics"][name] == pytest.approx(categorical["metrics"][name], rel=1e-12), name
