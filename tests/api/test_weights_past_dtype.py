"""Weights past the range of FP32 predictions on /v1/cross-entropy: the losses they give, not a 500 or inf.

Found by the contract test: `pos_weight: 2.25e142` with BF16 probabilities was cast to float32
(an overflow warning, a 500 under the tests; +inf in production). Losses keep the predictions'
dtype where they fit it, as PyTorch's do, and are float64 where a weight or a product does not.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

N = 8


def _fp32(values):
    return {
        "shape": list(values.shape),
        "datatype": "FP32",
        "data": values.astype(np.float32).ravel().tolist(),
    }


def _post(client, **body):
    response = client.post("/v1/cross-entropy", json={**body, "per_sample": True})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def logits(rng):
    return (3 * rng.standard_normal(N)).astype(np.float32)


def _torch64(values):
    return torch.from_numpy(np.asarray(values, dtype=np.float64))


@pytest.mark.parametrize("pos_weight", [2.25e142, 1e300])
def test_pos_weight_past_fp32_on_binary_logits(client, rng, logits, pos_weight):
    labels = rng.integers(0, 2, N)
    labels[:2] = [0, 1]
    got = _post(client, logits=_fp32(logits), labels=labels.tolist(), pos_weight=pos_weight)
    expected = F.binary_cross_entropy_with_logits(
        _torch64(logits), _torch64(labels), pos_weight=_torch64(pos_weight), reduction="none"
    ).numpy()
    # the unweighted loss is FP32's (rel ~1e-7); its product with the weight is float64's
    np.testing.assert_allclose(got["losses"], expected, rtol=1e-6)
    assert got["loss"] == pytest.approx(expected.mean(), rel=1e-6)


def test_pos_weight_and_weight_past_fp32_on_binary_probs(client, rng):
    probs = rng.uniform(0.05, 0.95, N).astype(np.float32)
    labels = rng.integers(0, 2, N)
    weight = np.full(N, 1e250)
    weight[0] = 0.0  # a zero weight gives 0, not 0·inf
    got = _post(client, probs=_fp32(probs), labels=labels.tolist(), pos_weight=1e40, weight=weight.tolist())
    p = _torch64(probs)
    y = _torch64(labels)
    expected = (-(1e40 * y * torch.log(p) + (1 - y) * torch.log1p(-p)) * _torch64(weight)).numpy()
    np.testing.assert_allclose(got["losses"], expected, rtol=1e-6)
    assert got["losses"][0] == 0.0


def test_class_weights_past_fp32_on_categorical_logits(client, rng):
    z = (2 * rng.standard_normal((N, 3))).astype(np.float32)
    labels = rng.integers(0, 3, N)
    weights = np.array([1e300, 1.0, 1e39])
    got = _post(
        client, logits=_fp32(z), labels=labels.tolist(), class_weights=weights.tolist(), reduction="sum"
    )
    expected = F.cross_entropy(
        _torch64(z), torch.from_numpy(labels), weight=_torch64(weights), reduction="none"
    )
    np.testing.assert_allclose(got["losses"], expected.numpy(), rtol=1e-6)
    assert got["loss"] == pytest.approx(float(expected.sum()), rel=1e-6)


def test_multilabel_weights_past_fp32(client, rng):
    z = (2 * rng.standard_normal((N, 3))).astype(np.float32)
    targets = rng.integers(0, 2, (N, 3)).astype(np.float64)
    pos_weight = np.array([1e300, 2.0, 1e39])
    class_weights = np.array([1.0, 1e45, 0.0])
    got = _post(
        client,
        logits=_fp32(z),
        targets=targets.tolist(),
        multilabel=True,
        pos_weight=pos_weight.tolist(),
        class_weights=class_weights.tolist(),
        reduction="sum",
    )
    expected = F.binary_cross_entropy_with_logits(
        _torch64(z),
        _torch64(targets),
        weight=_torch64(class_weights),
        pos_weight=_torch64(pos_weight),
        reduction="none",
    )
    np.testing.assert_allclose(got["losses"], expected.numpy(), rtol=1e-6)
    assert got["loss"] == pytest.approx(float(expected.sum()), rel=1e-6)
