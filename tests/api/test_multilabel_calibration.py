"""Multilabel targets on /v1/calibration (#20): each column calibrated as a binary problem."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import expit
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss
from torchmetrics.functional.classification import binary_calibration_error

from tests.conftest import assert_problem


def _batch(rng, n=400, k=5, n_bins=10):
    probs = rng.uniform(size=(n, k))
    probs[: n // 5] = rng.integers(0, n_bins + 1, size=(n // 5, k)) / n_bins  # on the edges, 0 and 1
    targets = (rng.uniform(size=(n, k)) < probs**1.3).astype(np.float64)
    return probs, targets


def _post(client, **body):
    response = client.post("/v1/calibration", json={"multilabel": True, **body})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("norm", ["l1", "l2", "max"])
def test_multilabel_classwise_errors_match_torchmetrics_per_column(client, rng, norm):
    probs, targets = _batch(rng)
    got = _post(
        client, probs=probs.tolist(), targets=targets.tolist(), preset="torchmetrics", n_bins=10, norm=norm
    )
    expected = [
        binary_calibration_error(
            torch.tensor(probs[:, j]), torch.tensor(targets[:, j]).long(), n_bins=10, norm=norm
        ).item()
        for j in range(probs.shape[1])
    ]
    np.testing.assert_allclose(got["per_class"]["calibration_error"], expected, atol=1e-12)
    assert got["metrics"]["calibration_error"] == pytest.approx(np.mean(expected), abs=1e-12)
    name = {"l1": "ece", "l2": "rmsce", "max": "mce"}[norm]
    np.testing.assert_allclose(got["per_class"][name], expected, atol=1e-12)
    assert got["convention"]["form"] == "multilabel" and got["convention"]["target"] == "classwise"


def test_multilabel_ece_matches_sklearn_calibration_curve_per_column(client, rng):
    probs, targets = _batch(rng)
    got = _post(client, probs=probs.tolist(), targets=targets.tolist(), preset="sklearn", n_bins=10)
    for j in range(probs.shape[1]):
        prob_true, prob_pred = calibration_curve(targets[:, j], probs[:, j], n_bins=10)
        # sklearn returns the non-empty bins only; its bins are (a, b] on np.linspace edges
        index = np.searchsorted(np.linspace(0, 1, 11)[1:-1], probs[:, j])
        counts = np.bincount(index, minlength=10)
        expected = float(np.sum(counts[counts > 0] / len(probs) * np.abs(prob_true - prob_pred)))
        assert got["per_class"]["ece"][j] == pytest.approx(expected, abs=1e-12)


def test_multilabel_brier_and_nll_match_sklearn_and_torch_per_column(client, rng):
    probs, targets = _batch(rng)
    probs = np.clip(probs, 0.01, 0.99)
    got = _post(client, probs=probs.tolist(), targets=targets.tolist())
    brier = [brier_score_loss(targets[:, j], probs[:, j]) for j in range(probs.shape[1])]
    np.testing.assert_allclose(got["per_class"]["brier"], brier, rtol=1e-12)
    assert got["metrics"]["brier"] == pytest.approx(np.mean(brier), rel=1e-12)
    nll = F.binary_cross_entropy(torch.from_numpy(probs), torch.from_numpy(targets), reduction="none").mean(0)
    np.testing.assert_allclose(got["per_class"]["nll"], nll.numpy(), rtol=1e-12)
    doubled = _post(
        client, probs=probs.tolist(), targets=targets.tolist(), brier_scale="sum", metrics=["brier"]
    )
    assert doubled["metrics"]["brier"] == pytest.approx(2 * np.mean(brier), rel=1e-12)


def test_multilabel_logits_are_probabilities_through_a_sigmoid(client, rng):
    logits = 2 * rng.standard_normal((300, 4))
    targets = (rng.uniform(size=(300, 4)) < 0.5).astype(np.float64)
    from_logits = _post(client, logits=logits.tolist(), targets=targets.tolist(), metrics=["brier", "nll"])
    nll = F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction="none"
    ).mean(0)
    np.testing.assert_allclose(from_logits["per_class"]["nll"], nll.numpy(), rtol=1e-12)
    brier = [brier_score_loss(targets[:, j], expit(logits[:, j])) for j in range(4)]
    np.testing.assert_allclose(from_logits["per_class"]["brier"], brier, rtol=1e-12)


def test_multilabel_sample_weight_equals_repeated_rows(client, rng):
    probs, targets = _batch(rng, n=120)
    counts = rng.integers(0, 4, size=120)
    weighted = _post(client, probs=probs.tolist(), targets=targets.tolist(), sample_weight=counts.tolist())
    repeated = _post(
        client,
        probs=np.repeat(probs, counts, axis=0).tolist(),
        targets=np.repeat(targets, counts, axis=0).tolist(),
    )
    for name in ("ece", "mce", "rmsce", "brier", "nll"):
        np.testing.assert_allclose(
            weighted["per_class"][name], repeated["per_class"][name], rtol=1e-10, atol=1e-15
        )
    brier = [
        brier_score_loss(targets[:, j], probs[:, j], sample_weight=counts) for j in range(probs.shape[1])
    ]
    np.testing.assert_allclose(weighted["per_class"]["brier"], brier, rtol=1e-12)
    assert weighted["convention"]["sample_weight"]


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"labels": [0, 1]}, "#/labels", "targets"),
        ({"targets": [[1, 0, 1], [0, 1, 1]]}, "#/targets", r"shape of the predictions \[2, 2\]"),
        ({"targets": [[1, 0], [0, 2]]}, "#/targets/1/1", r"\[0, 1\]"),
        ({"targets": [[1, 0], [0, 1]], "metrics": ["smooth_ece"]}, "#/metrics", "smooth_ece"),
        ({"targets": [[1, 0], [0, 1]], "target": "top_label"}, "#/target", "classwise"),
        ({"targets": [[1, 0], [0, 1]], "top_k": [1]}, "#/top_k", "multilabel"),
        ({}, "#/targets", "required"),
    ],
)
def test_bad_multilabel_calibration_is_a_problem_naming_the_field(client, extra, pointer, match):
    body = {"multilabel": True, "probs": [[0.5, 0.2], [0.9, 0.0]], **extra}
    assert_problem(client.post("/v1/calibration", json=body), 422, pointer, match)


def test_targets_without_multilabel_and_multilabel_diagram_are_refused(client):
    body = {"probs": [0.5, 0.2], "targets": [1, 0]}
    assert_problem(client.post("/v1/calibration", json=body), 422, "#/targets", "multilabel")
    body = {"multilabel": True, "probs": [[0.5, 0.2]], "targets": [[1, 0]]}
    assert_problem(client.post("/v1/reliability-diagram", json=body), 422, "#/multilabel", "calibration")
