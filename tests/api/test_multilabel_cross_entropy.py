"""Multilabel targets on /v1/cross-entropy (#20): PyTorch's BCE per element, sklearn's indicator log loss."""

import io
import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import expit
from sklearn.metrics import hamming_loss, log_loss
from torchmetrics.functional.classification import multilabel_accuracy

from tests.api.test_payloads import binary_request
from tests.conftest import assert_problem


def _batch(rng, n=200, k=6, soft=False):
    logits = 3 * rng.standard_normal((n, k))
    targets = rng.random((n, k)) if soft else (rng.random((n, k)) < 0.4).astype(np.float64)
    return logits, targets


def _post(client, **body):
    response = client.post("/v1/cross-entropy", json={"multilabel": True, **body})
    assert response.status_code == 200, response.text
    return response.json()


def _bce(logits, targets, reduction, **kw):
    kw = {name: torch.as_tensor(np.asarray(v, dtype=np.float64)) for name, v in kw.items()}
    return F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits), torch.from_numpy(targets), reduction=reduction, **kw
    ).numpy()


def _sklearn_log_loss(targets, probs, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "y_prob values do not sum to one": the point
        return log_loss(targets, probs, **kw)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("soft", [False, True])
def test_multilabel_logits_match_bce_with_logits(client, rng, reduction, soft):
    logits, targets = _batch(rng, soft=soft)
    got = _post(client, logits=logits.tolist(), targets=targets.tolist(), reduction=reduction)
    expected = _bce(logits, targets, reduction)
    if reduction == "none":
        assert got["loss"] is None
        np.testing.assert_allclose(got["losses"], expected, rtol=1e-12, atol=1e-15)
    else:
        assert got["loss"] == pytest.approx(float(expected), rel=1e-12)
    assert got["convention"]["form"] == "multilabel"
    assert got["convention"]["multilabel_convention"] == "torch"


def test_multilabel_probs_match_binary_cross_entropy(client, rng):
    logits, targets = _batch(rng)
    probs = expit(logits)
    got = _post(client, probs=probs.tolist(), targets=targets.tolist())
    expected = F.binary_cross_entropy(torch.from_numpy(probs), torch.from_numpy(targets)).item()
    assert got["loss"] == pytest.approx(expected, rel=1e-12)
    assert got["convention"]["input"] == "probs"


@pytest.mark.parametrize("per_class", [True, False])
def test_multilabel_pos_weight_and_class_weights_match_pytorch(client, rng, per_class):
    logits, targets = _batch(rng, k=4)
    pos_weight = [0.5, 2.0, 3.0, 1.5] if per_class else 2.5
    class_weights = [1.0, 0.25, 2.0, 0.0]
    for reduction in ("mean", "sum", "none"):
        got = _post(
            client,
            logits=logits.tolist(),
            targets=targets.tolist(),
            pos_weight=pos_weight,
            class_weights=class_weights,
            reduction=reduction,
        )
        expected = _bce(logits, targets, reduction, pos_weight=pos_weight, weight=class_weights)
        if reduction == "none":
            np.testing.assert_allclose(got["losses"], expected, rtol=1e-12, atol=1e-15)
        else:  # the mean still divides by N·K, as BCEWithLogitsLoss
            assert got["loss"] == pytest.approx(float(expected), rel=1e-12)
    assert got["convention"]["pos_weight"] == pos_weight and got["convention"]["class_weights"]


def test_multilabel_sklearn_convention_is_log_loss_of_the_indicator_matrix(client, rng):
    """sklearn's log_loss reads a 2-D indicator y_true as one-hot rows: -Σ_k y log p, no (1 - y) terms."""
    logits, targets = _batch(rng)
    probs = expit(logits)
    weights = rng.random(len(probs))
    got = _post(client, probs=probs.tolist(), targets=targets.tolist(), multilabel_convention="sklearn")
    assert got["loss"] == pytest.approx(_sklearn_log_loss(targets, probs), rel=1e-12)
    weighted = _post(
        client,
        probs=probs.tolist(),
        targets=targets.tolist(),
        multilabel_convention="sklearn",
        sample_weight=weights.tolist(),
    )
    assert weighted["loss"] == pytest.approx(
        _sklearn_log_loss(targets, probs, sample_weight=weights), rel=1e-12
    )
    summed = _post(
        client,
        logits=logits.tolist(),
        targets=targets.tolist(),
        multilabel_convention="sklearn",
        reduction="sum",
    )
    assert summed["loss"] == pytest.approx(_sklearn_log_loss(targets, probs, normalize=False), rel=1e-10)
    rows = _post(
        client,
        probs=probs.tolist(),
        targets=targets.tolist(),
        multilabel_convention="sklearn",
        reduction="none",
    )["losses"]
    assert len(rows) == len(probs)
    np.testing.assert_allclose(rows, -(targets * np.log(probs)).sum(axis=1), rtol=1e-12)
    # ... which is not the per-class binary cross-entropy of the torch convention
    assert got["loss"] != pytest.approx(
        F.binary_cross_entropy(torch.from_numpy(probs), torch.from_numpy(targets)).item()
    )


def test_multilabel_sample_weight_weights_rows_as_repeats(client, rng):
    logits, targets = _batch(rng, n=50)
    counts = rng.integers(0, 4, size=50)
    got = _post(client, logits=logits.tolist(), targets=targets.tolist(), sample_weight=counts.tolist())
    repeated = _bce(np.repeat(logits, counts, axis=0), np.repeat(targets, counts, axis=0), "mean")
    assert got["loss"] == pytest.approx(float(repeated), rel=1e-12)
    assert got["convention"]["sample_weight"]


def test_multilabel_accuracy_is_torchmetrics_micro_and_one_minus_hamming(client, rng):
    logits, targets = _batch(rng)
    got = _post(client, logits=logits.tolist(), targets=targets.tolist())
    t = torch.from_numpy(targets).long()
    expected = multilabel_accuracy(
        torch.from_numpy(expit(logits)), t, num_labels=targets.shape[1], average="micro"
    )
    assert got["accuracy"] == pytest.approx(float(expected), rel=1e-6)  # torchmetrics answers in float32
    assert got["accuracy"] == pytest.approx(1 - hamming_loss(targets, logits > 0), rel=1e-12)


def test_multilabel_binary_and_npz_payloads(client, rng):
    logits, targets = _batch(rng, n=40, k=3)
    logits32 = logits.astype(np.float32)
    blob, headers = binary_request(
        [("logits", logits32, "FP32"), ("targets", targets.astype(np.float32), "FP32")],
        {"multilabel": True, "reduction": "sum"},
    )
    got = client.post("/v1/cross-entropy", content=blob, headers=headers).json()
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(logits32), torch.from_numpy(targets.astype(np.float32)), reduction="sum"
    ).item()
    assert got["loss"] == pytest.approx(expected, rel=1e-5)
    assert got["convention"]["dtype"] == "float32"
    buffer = io.BytesIO()
    np.savez(buffer, logits=logits, targets=targets, parameters=np.array(json.dumps({"multilabel": True})))
    response = client.post(
        "/v1/cross-entropy", content=buffer.getvalue(), headers={"content-type": "application/x-npz"}
    )
    assert response.json()["loss"] == pytest.approx(float(_bce(logits, targets, "mean")), rel=1e-12)


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"labels": [0, 1]}, "#/labels", "targets"),
        ({"targets": [[1, 0, 1], [0, 1, 1]]}, "#/targets", r"shape of the predictions \[2, 2\]"),
        ({"targets": [[1, 0], [0, 1.5]]}, "#/targets/1/1", r"\[0, 1\]"),
        ({"targets": [[1, 0], [0, -1]]}, "#/targets/1/1", r"\[0, 1\]"),
        ({"targets": [1, 0]}, "#/targets", "N×K"),
        (
            {"targets": [[1, 0], [0, 1]], "pos_weight": [1.0, 2.0, 3.0]},
            "#/pos_weight",
            "one weight per class",
        ),
        ({"targets": [[1, 0], [0, 1]], "label_smoothing": 0.1}, "#/label_smoothing", "multilabel"),
        ({"targets": [[1, 0], [0, 1]], "ignore_index": -100}, "#/ignore_index", "multilabel"),
        (
            {"targets": [[1, 0], [0, 1]], "pos_weight": 2.0, "multilabel_convention": "sklearn"},
            "#/pos_weight",
            "sklearn",
        ),
        ({}, "#/targets", "required"),
    ],
)
def test_bad_multilabel_input_is_a_problem_naming_the_field(client, extra, pointer, match):
    body = {"multilabel": True, "logits": [[0.5, -1.0], [2.0, 0.0]], **extra}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, pointer, match)


def test_multilabel_probs_outside_unit_interval_are_refused(client):
    body = {"multilabel": True, "probs": [[0.5, 1.2], [0.1, 0.0]], "targets": [[1, 0], [0, 1]]}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/probs/0/1", r"\[0, 1\]")


def test_pos_weight_list_is_refused_for_binary_input(client):
    body = {"logits": [0.5, -1.0], "labels": [0, 1], "pos_weight": [1.0, 2.0]}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/pos_weight", "multilabel")


def test_multilabel_over_the_open_inference_protocol(client, rng):
    logits, targets = _batch(rng, n=30, k=4)
    body = {
        "inputs": [
            {"name": "z", "shape": [30, 4], "datatype": "FP64", "data": logits.ravel().tolist(),
             "parameters": {"role": "logits"}},
            {"name": "t", "shape": [30, 4], "datatype": "FP64", "data": targets.ravel().tolist(),
             "parameters": {"role": "targets"}},
        ],
        "parameters": {"multilabel": True, "reduction": "none"},
    }  # fmt: skip
    response = client.post("/v2/models/cross-entropy/infer", json=body)
    assert response.status_code == 200, response.text
    losses = next(o for o in response.json()["outputs"] if o["name"] == "losses")
    assert losses["shape"] == [30, 4]
    np.testing.assert_allclose(losses["data"], _bce(logits, targets, "none").ravel(), rtol=1e-12, atol=1e-15)
