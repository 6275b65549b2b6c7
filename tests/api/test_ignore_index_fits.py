"""`ignore_index` on /v1/calibration, /v1/temperature, /v1/recalibrate: rows dropped, counted (#20)."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from torchmetrics.functional.classification import multiclass_calibration_error

from tests.conftest import assert_problem

IGNORE = -100


def _batch(rng, n=400, k=4):
    logits = 2 * rng.standard_normal((n, k))
    labels = (softmax(1.5 * logits, axis=1).cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    padded = labels.copy()
    padded[rng.random(n) < 0.25] = IGNORE
    return logits, labels, padded


def test_calibration_ignore_index_matches_torchmetrics(client, rng):
    logits, _, padded = _batch(rng)
    body = {
        "logits": logits.tolist(),
        "labels": padded.tolist(),
        "ignore_index": IGNORE,
        "preset": "torchmetrics",
    }
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    kept = padded != IGNORE
    assert (got["n"], got["n_ignored"]) == (int(kept.sum()), int((~kept).sum()))
    assert got["convention"]["ignore_index"] == IGNORE
    expected = multiclass_calibration_error(
        torch.from_numpy(logits).softmax(1),
        torch.from_numpy(padded),
        num_classes=4,
        n_bins=15,
        ignore_index=IGNORE,
    ).item()
    assert got["metrics"]["ece"] == pytest.approx(expected, abs=2e-6)  # torchmetrics bins float32 confidences
    dropped = client.post(
        "/v1/calibration",
        json={"logits": logits[kept].tolist(), "labels": padded[kept].tolist(), "preset": "torchmetrics"},
    ).json()
    assert got["metrics"] == dropped["metrics"]


def test_temperature_ignore_index_matches_pytorch_nll_minimum(client, rng):
    logits, _, padded = _batch(rng)
    body = {"logits": logits.tolist(), "labels": padded.tolist(), "ignore_index": IGNORE}
    response = client.post("/v1/temperature", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    kept = padded != IGNORE
    z, y = torch.from_numpy(logits), torch.from_numpy(padded)

    def nll(t):
        return torch.nn.functional.cross_entropy(z / t, y, ignore_index=IGNORE).item()

    expected = minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-10}).x
    assert got["temperature"] == pytest.approx(expected, rel=1e-5)
    assert (got["n"], got["n_ignored"]) == (int(kept.sum()), int((~kept).sum()))
    assert got["convention"]["ignore_index"] == IGNORE
    nll_after = -log_softmax(logits[kept] / got["temperature"], axis=1)[
        np.arange(kept.sum()), padded[kept]
    ].mean()
    assert got["after"]["nll"] == pytest.approx(nll_after, rel=1e-9)


@pytest.mark.parametrize(
    ("method", "binary"),
    [
        ("temperature", False),
        ("vector", False),
        ("matrix", False),
        ("isotonic", False),
        ("histogram", False),
        ("platt", True),
        ("beta", True),
    ],
)
def test_recalibrate_ignore_index_fits_the_kept_rows(client, rng, method, binary):
    logits, _, padded = _batch(rng)
    if binary:
        logits, padded = (
            logits[:, 1] - logits[:, 0],
            np.where(padded == IGNORE, IGNORE, (padded == 1).astype(int)),
        )
    field = "probs" if method == "beta" else "logits"
    values = (
        softmax(np.stack([np.zeros_like(logits), logits], 1), axis=1)[:, 1] if method == "beta" else logits
    )
    kept = padded != IGNORE
    body = {field: values.tolist(), "labels": padded.tolist(), "method": method, "ignore_index": IGNORE}
    response = client.post("/v1/recalibrate", json=body)
    assert response.status_code == 200, response.text
    got = response.json()
    plain = client.post(
        "/v1/recalibrate",
        json={field: values[kept].tolist(), "labels": padded[kept].tolist(), "method": method},
    ).json()
    assert got["parameters"] == plain["parameters"]
    assert got["after"] == plain["after"] and got["n"] == plain["n"] == int(kept.sum())
    assert got["n_ignored"] == int((~kept).sum())


@pytest.mark.parametrize("route", ["/v1/calibration", "/v1/temperature", "/v1/recalibrate"])
def test_every_label_ignored_is_a_problem_naming_labels(client, route):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": [IGNORE, IGNORE], "ignore_index": IGNORE}
    body |= {"method": "vector"} if route == "/v1/recalibrate" else {}
    assert_problem(client.post(route, json=body), 422, "#/labels", "other than ignore_index")


@pytest.mark.parametrize("route", ["/v1/temperature", "/v1/recalibrate"])
def test_ignore_index_with_soft_targets_is_a_problem(client, route):
    body = {"logits": [[0.0, 1.0]], "targets": [[0.5, 0.5]], "ignore_index": IGNORE}
    body |= {"method": "vector"} if route == "/v1/recalibrate" else {}
    assert_problem(client.post(route, json=body), 422, "#/ignore_index", "hard")


def test_bad_ignore_index_is_a_problem(client):
    body = {"logits": [[0.0, 1.0]], "labels": [0], "ignore_index": "none"}
    assert_problem(client.post("/v1/calibration", json=body), 422, "#/ignore_index")
