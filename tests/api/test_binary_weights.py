"""PyTorch's `pos_weight` and per-element `weight` of binary cross-entropy on /v1/cross-entropy (#20)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import expit
from sklearn.metrics import log_loss

from tests.conftest import assert_problem


def _post(client, **body):
    response = client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def _tensor(values, dtype):
    datatype = {np.float32: "FP32", np.float64: "FP64"}[dtype]
    return {"shape": list(values.shape), "datatype": datatype, "data": values.astype(dtype).ravel().tolist()}


def _check(got, expected_per, reduction, rtol):
    if reduction == "none":
        assert got["loss"] is None
        # torch's (1 - t)·z + (1 + (p - 1)·t)·softplus(-z) cancels to a few ulps of |z| on small losses
        np.testing.assert_allclose(got["losses"], expected_per, rtol=rtol, atol=1e-13)
    elif reduction == "sum":
        assert got["loss"] == pytest.approx(float(expected_per.sum(dtype=np.float64)), rel=rtol)
    else:  # PyTorch's mean: Σ v·loss / N, never / Σ v
        assert got["loss"] == pytest.approx(float(expected_per.mean(dtype=np.float64)), rel=rtol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("truth", ["labels", "targets"])
def test_logits_match_binary_cross_entropy_with_logits(client, rng, reduction, dtype, truth):
    n = 400
    z = (4 * rng.standard_normal(n)).astype(dtype)
    z[:4] = [80.0, -80.0, 35.0, -35.0]  # extreme logits: the softplus form keeps every term finite
    y = rng.integers(0, 2, size=n)
    y[:4] = [0, 1, 0, 1]  # the far wrong side of each extreme
    t = y.astype(dtype) if truth == "labels" else rng.uniform(0, 1, size=n).astype(dtype)
    v = rng.uniform(0, 3, size=n).astype(dtype)
    pos_weight = 2.5
    truth_value = y.tolist() if truth == "labels" else _tensor(t, dtype)
    got = _post(
        client,
        logits=_tensor(z, dtype),
        **{truth: truth_value},
        pos_weight=pos_weight,
        weight=_tensor(v, dtype),
        reduction=reduction,
    )
    # torch in float64 on the very float32 values sent: torch's own float32 form
    # (1 - t)·z + (1 + (p - 1)·t)·softplus(-z) cancels on small losses (3e-3 relative off), Xent does not
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(z.astype(np.float64)),
        torch.from_numpy(t.astype(np.float64)),
        weight=torch.from_numpy(v.astype(np.float64)),
        pos_weight=torch.tensor(pos_weight, dtype=torch.float64),
        reduction="none",
    ).numpy()
    assert np.isfinite(expected).all()
    _check(got, expected, reduction, 1e-5 if dtype == np.float32 else 1e-12)
    convention = got["convention"]
    assert convention["pos_weight"] == pos_weight and convention["weight"]
    assert convention["dtype"] == np.dtype(dtype).name
    assert not convention["class_weights"]
    assert "binary_cross_entropy_with_logits" in convention["matches"]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probabilities_weight_matches_binary_cross_entropy(client, rng, reduction, dtype):
    n = 300
    p = rng.uniform(0.01, 0.99, size=n).astype(dtype)
    y = rng.integers(0, 2, size=n)
    v = rng.uniform(0, 3, size=n).astype(dtype)
    got = _post(
        client, probs=_tensor(p, dtype), labels=y.tolist(), weight=_tensor(v, dtype), reduction=reduction
    )
    expected = F.binary_cross_entropy(  # float64 on the values sent, as for logits
        torch.from_numpy(p.astype(np.float64)),
        torch.from_numpy(y.astype(np.float64)),
        weight=torch.from_numpy(v.astype(np.float64)),
        reduction="none",
    ).numpy()
    _check(got, expected, reduction, 1e-5 if dtype == np.float32 else 1e-12)
    assert got["convention"]["weight"] and got["convention"]["pos_weight"] is None
    assert "binary_cross_entropy(weight=)" in got["convention"]["matches"]


def test_weight_mean_divides_by_n_not_by_the_weights(client, rng):
    z = rng.standard_normal(50)
    y = rng.integers(0, 2, size=50)
    v = rng.uniform(0.5, 3, size=50)
    weighted = _post(client, logits=z.tolist(), labels=y.tolist(), weight=v.tolist())["loss"]
    by_sample_weight = _post(client, logits=z.tolist(), labels=y.tolist(), sample_weight=v.tolist())["loss"]
    per = log_loss(y, expit(z), sample_weight=v)  # Σ v·loss / Σ v
    assert by_sample_weight == pytest.approx(per, rel=1e-12)
    assert weighted == pytest.approx(per * v.sum() / v.size, rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_pos_weight_on_probabilities_is_the_logits_definition(client, rng, reduction):
    """torch's binary_cross_entropy has no pos_weight: Xent's equals the logits form at logit(p)."""
    p = rng.uniform(0.01, 0.99, size=200)
    y = rng.integers(0, 2, size=200)
    got = _post(client, probs=p.tolist(), labels=y.tolist(), pos_weight=3.0, reduction=reduction)
    expected = F.binary_cross_entropy_with_logits(
        torch.logit(torch.from_numpy(p)),
        torch.from_numpy(y.astype(np.float64)),
        pos_weight=torch.tensor(3.0, dtype=torch.float64),
        reduction="none",
    ).numpy()
    _check(got, expected, reduction, 1e-10)
    assert "torch has none" in got["convention"]["matches"]


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"pos_weight": 0}, "#/pos_weight", "greater than 0"),
        ({"pos_weight": -1.5}, "#/pos_weight", "greater than 0"),
        ({"weight": [1.0, -1.0]}, "#/weight/1", "non-negative"),
        ({"weight": [1.0]}, "#/weight", "one weight per sample"),
        ({"weight": [1.0, 1.0], "sample_weight": [1.0, 1.0]}, "#/weight", "sample_weight"),
        ({"pos_weight": 2.0, "class_weights": [1.0, 2.0]}, "#/pos_weight", "class_weights"),
        ({"pos_weight": 2.0, "label_smoothing": 0.1}, "#/pos_weight", "label_smoothing"),
        ({"weight": [1.0, 1.0], "ignore_index": -100}, "#/weight", "ignore_index"),
    ],
)
def test_bad_binary_weights_are_a_problem_naming_the_field(client, extra, pointer, match):
    body = {"logits": [0.5, -1.0], "labels": [0, 1], **extra}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, pointer, match)


def test_binary_weights_refused_for_categorical_input(client):
    body = {"logits": [[0.0, 1.0], [1.0, 0.0]], "labels": [0, 1], "pos_weight": 2.0}
    assert_problem(client.post("/v1/cross-entropy", json=body), 422, "#/pos_weight", "binary input only")
