"""`sample_weight` on /v1/cross-entropy: scikit-learn's Σ s·loss / Σ s, with PyTorch's class weights (#20)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import softmax
from sklearn.metrics import accuracy_score, log_loss, top_k_accuracy_score

from tests.conftest import assert_problem


def _batch(rng, n=300, k=5):
    return 2 * rng.standard_normal((n, k)), rng.integers(0, k, size=n), rng.uniform(0, 3, size=n)


def _post(client, **body):
    response = client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_probabilities_match_sklearn_log_loss_accuracy_and_top_k(client, rng):
    logits, labels, s = _batch(rng)
    probs = softmax(logits, axis=1)
    got = _post(client, probs=probs.tolist(), labels=labels.tolist(), sample_weight=s.tolist(), top_k=[2])
    assert got["loss"] == pytest.approx(log_loss(labels, probs, sample_weight=s), rel=1e-12)
    assert got["accuracy"] == pytest.approx(
        accuracy_score(labels, probs.argmax(axis=1), sample_weight=s), abs=1e-15
    )
    expected = top_k_accuracy_score(labels, probs, k=2, sample_weight=s, labels=np.arange(5))
    assert got["top_k_accuracy"]["2"] == pytest.approx(expected, abs=1e-15)
    assert got["convention"]["sample_weight"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_combined_with_class_weights_as_pytorch_weights_them(client, rng, reduction):
    logits, labels, s = _batch(rng)
    w = rng.uniform(0.2, 2.0, size=5)
    got = _post(
        client,
        logits=logits.tolist(),
        labels=labels.tolist(),
        class_weights=w.tolist(),
        sample_weight=s.tolist(),
        reduction=reduction,
    )
    per = F.cross_entropy(
        torch.from_numpy(logits), torch.from_numpy(labels), weight=torch.from_numpy(w), reduction="none"
    ).numpy()  # w[y]·loss
    if reduction == "none":
        np.testing.assert_allclose(got["losses"], s * per, rtol=1e-12)
    elif reduction == "sum":
        assert got["loss"] == pytest.approx((s * per).sum(), rel=1e-12)
    else:
        assert got["loss"] == pytest.approx((s * per).sum() / (s * w[labels]).sum(), rel=1e-12)
        # the same number as scikit-learn's log_loss weighted by s·w[y]
        expected = log_loss(labels, softmax(logits, axis=1), sample_weight=s * w[labels])
        assert got["loss"] == pytest.approx(expected, rel=1e-12)


def test_unit_weights_change_nothing_and_ignored_samples_stay_out(client, rng):
    logits, labels, s = _batch(rng)
    plain = _post(client, logits=logits.tolist(), labels=labels.tolist())
    ones = _post(client, logits=logits.tolist(), labels=labels.tolist(), sample_weight=[1.0] * len(labels))
    assert ones["loss"] == pytest.approx(plain["loss"], rel=1e-15) and ones["accuracy"] == plain["accuracy"]
    labels[::3] = -100
    got = _post(
        client, logits=logits.tolist(), labels=labels.tolist(), sample_weight=s.tolist(), ignore_index=-100
    )
    kept = labels != -100
    expected = log_loss(
        labels[kept], softmax(logits[kept], axis=1), sample_weight=s[kept], labels=np.arange(5)
    )
    assert got["loss"] == pytest.approx(expected, rel=1e-12)


def test_soft_targets_are_weighted_by_sample(client, rng):
    logits, _, s = _batch(rng)
    targets = softmax(rng.standard_normal((300, 5)), axis=1)
    got = _post(client, logits=logits.tolist(), targets=targets.tolist(), sample_weight=s.tolist())
    per = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets), reduction="none").numpy()
    assert got["loss"] == pytest.approx((s * per).sum() / s.sum(), rel=1e-12)


@pytest.mark.parametrize(
    ("sample_weight", "pointer", "match"),
    [
        ([1.0, -1.0], "#/sample_weight/1", "non-negative"),
        ([1.0], "#/sample_weight", "one weight per sample"),
        ([0.0, 0.0], "#/sample_weight", "zero total weight"),
        ([1.0, "x"], "#/sample_weight/1", "number"),
    ],
)
def test_bad_sample_weight_is_a_problem_naming_it(client, sample_weight, pointer, match):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": [0, 1], "sample_weight": sample_weight}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, pointer, match)


@pytest.mark.parametrize("datatype, dtype", [("FP16", np.float16), ("FP32", np.float32)])
def test_weights_whose_products_overflow_the_dtype_give_the_finite_weighted_loss(client, datatype, dtype):
    """A weight of 6e17 (or 1e38) on a float16 (float32) loss has no product in that dtype: the weighted
    mean and sum are sklearn's, finite (the contract draws met a 500 on /v2/models/cross-entropy/infer)."""
    z = np.array([[0.5, -0.5, 1.0], [1.0, 0.0, -1.0]], dtype=dtype)
    big = 6e17 if dtype == np.float16 else 1e38
    logits = {"datatype": datatype, "shape": [2, 3], "data": z.ravel().tolist()}
    p = softmax(z.astype(np.float64), axis=1)
    body = {"logits": logits, "labels": [1, 0], "sample_weight": [big, 1.0], "per_sample": True}
    mean = client.post("/v1/cross-entropy", json=body)
    assert mean.status_code == 200, mean.text
    expected = log_loss([1, 0], p, sample_weight=[big, 1.0], labels=[0, 1, 2])
    assert mean.json()["loss"] == pytest.approx(expected, rel=1e-3 if dtype == np.float16 else 1e-6)
    total = client.post("/v1/cross-entropy", json={**body, "reduction": "sum"})
    assert total.status_code == 200, total.text
    assert total.json()["loss"] == pytest.approx(
        expected * (big + 1.0), rel=1e-3 if dtype == np.float16 else 1e-6
    )


def test_weights_sent_as_a_float32_tensor_weigh_in_float64(client):
    """FP32 weights of 1e38 on FP32 losses: the products are past float32's range, as the contract draws
    sent them on /v2/models/cross-entropy/infer (a 500 when the product was taken in float32)."""
    z = np.array([[0.5, -0.5, 1.0], [1.0, 0.0, -1.0]], dtype=np.float32)
    logits = {"datatype": "FP32", "shape": [2, 3], "data": z.ravel().tolist()}
    weights = {"datatype": "FP32", "shape": [2], "data": [3e38, 1.0]}
    answer = _post(client, logits=logits, labels=[1, 0], sample_weight=weights)
    p = softmax(z.astype(np.float64), axis=1)
    w = np.array([3e38, 1.0], dtype=np.float32).astype(np.float64)
    assert answer["loss"] == pytest.approx(log_loss([1, 0], p, sample_weight=w, labels=[0, 1, 2]), rel=1e-6)
