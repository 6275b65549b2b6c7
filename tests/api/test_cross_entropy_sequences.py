import io
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.api.test_payloads import binary_request
from tests.conftest import assert_problem

URL = "/v1/cross-entropy"


def _batch(rng, b=3, t=7, k=11):
    z = 3 * rng.standard_normal((b, t, k))
    y = rng.integers(0, k, (b, t))
    y[0, :2] = -100
    return z, y


def _torch(z, y, reduction, ignore_index=-100):
    logits = torch.from_numpy(np.asarray(z, np.float64)).transpose(1, 2)
    return F.cross_entropy(
        logits, torch.from_numpy(y), ignore_index=ignore_index, reduction=reduction
    ).numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_sequence_logits_match_torch_each_reduction(client, rng, reduction):
    z, y = _batch(rng)
    body = client.post(
        URL, json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, "reduction": reduction}
    ).json()
    if reduction == "none":
        np.testing.assert_allclose(body["losses"], _torch(z, y, "none"), rtol=1e-12, atol=1e-14)
        assert body["loss"] is None
    else:
        assert body["loss"] == pytest.approx(float(_torch(z, y, reduction)), rel=1e-12)
    assert body["n"] == 19 and body["n_ignored"] == 2
    assert body["convention"]["form"] == "sequence"
    ok = y != -100
    assert body["accuracy"] == pytest.approx(((z.argmax(-1) == y) & ok).sum() / ok.sum())
    p = torch.softmax(torch.from_numpy(z), -1)
    entropy = -(p * torch.log_softmax(torch.from_numpy(z), -1)).sum(-1).numpy()
    assert body["mean_entropy"] == pytest.approx(entropy[ok].mean(), rel=1e-12)


def test_sequence_perplexities_and_mergeable_totals(client, rng):
    z, y = _batch(rng)
    n_bytes = [30, 25, 40]
    body = client.post(
        URL, json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, "bytes": n_bytes}
    ).json()
    lm = body["language_model"]
    losses = _torch(z, y, "none")
    seq_nll = losses.sum(1)
    tokens = (y != -100).sum(1)
    np.testing.assert_allclose(lm["per_sequence"]["nll"], seq_nll, rtol=1e-12)
    assert lm["per_sequence"]["tokens"] == tokens.tolist()
    m = lm["metrics"]
    assert m["token_perplexity"] == pytest.approx(math.exp(seq_nll.sum() / tokens.sum()), rel=1e-12)
    assert m["lm_eval_perplexity"] == pytest.approx(math.exp(seq_nll.mean()), rel=1e-12)
    assert m["hf_mean_perplexity"] == pytest.approx(np.exp(seq_nll / tokens).mean(), rel=1e-12)
    assert m["bits_per_byte"] == pytest.approx(seq_nll.sum() / sum(n_bytes) / math.log(2), rel=1e-12)
    assert lm["totals"]["tokens"] == int(tokens.sum()) and lm["totals"]["bytes"] == sum(n_bytes)


def test_sequence_mask_matches_torch_with_masked_labels(client, rng):
    z, y = _batch(rng)
    y = np.where(y == -100, 0, y)
    mask = (rng.random(y.shape) < 0.6).astype(int)
    body = client.post(URL, json={"logits": z.tolist(), "labels": y.tolist(), "mask": mask.tolist()}).json()
    expected = _torch(z, np.where(mask == 1, y, -100), "mean")
    assert body["loss"] == pytest.approx(float(expected), rel=1e-12)
    assert body["n"] == int(mask.sum())


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "BF16"])
def test_sequence_binary_tensors_match_torch_on_the_same_values(client, rng, datatype):
    z, y = _batch(rng, k=300)
    tensor = torch.from_numpy(z).to(
        {"FP32": torch.float32, "FP16": torch.float16, "BF16": torch.bfloat16}[datatype]
    )
    sent = tensor.view(torch.int16).numpy().view(np.uint16) if datatype == "BF16" else tensor.numpy()
    blob, headers = binary_request(
        [("logits", sent, datatype), ("labels", y.astype(np.int64), "INT64")], {"ignore_index": -100}
    )
    body = client.post(URL, content=blob, headers=headers).json()
    expected = _torch(tensor.double().numpy(), y, "mean")
    assert body["loss"] == pytest.approx(float(expected), rel=2e-6)
    assert body["convention"]["dtype"] == "float32"


def test_sequence_probabilities_from_npz(client, rng):
    z, y = _batch(rng)
    p = torch.softmax(torch.from_numpy(z), -1).numpy().astype(np.float32)
    buffer = io.BytesIO()
    np.savez(buffer, probs=p, labels=y, parameters='{"ignore_index": -100}')
    body = client.post(URL, content=buffer.getvalue(), headers={"content-type": "application/x-npz"}).json()
    assert body["loss"] == pytest.approx(float(_torch(z, y, "mean")), rel=1e-5)
    assert body["convention"]["input"] == "probs"


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"labels": [[0, 1]]}, "#/labels", "must be B×T = 3×7"),
        ({"mask": [[1, 0]]}, "#/mask", "must be B×T = 3×7"),
        ({"labels": [[0] * 7, [0] * 7, [0] * 6 + [11]]}, "#/labels/2/6", "must lie in [0, 11)"),
        ({"targets": [[0.5, 0.5]]}, "#/targets", "must not be sent with `labels`"),
        ({"class_weights": [1.0] * 10}, "#/class_weights", "one weight per class (11)"),
        ({"normalize": True}, "#/normalize", "not supported with B×T×K"),
    ],
)
def test_sequence_bad_input_names_the_field(client, rng, extra, pointer, match):
    z, y = _batch(rng)
    payload = {"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, **extra}
    problem = assert_problem(client.post(URL, json=payload), 422)
    assert problem["errors"][0]["pointer"] == pointer
    assert match in problem["detail"]


def test_bf16_outside_sequences_is_widened_exactly(client, rng):
    """Issue 21: OIP BF16 input is accepted on N×K requests too, widened to float32 (exact)."""
    bf16 = torch.from_numpy(rng.standard_normal((4, 3))).to(torch.bfloat16)
    z = bf16.view(torch.int16).numpy().view(np.uint16)
    labels = np.array([0, 1, 2, 0])
    blob, headers = binary_request([("logits", z, "BF16"), ("labels", labels, "INT64")])
    answer = client.post(URL, content=blob, headers=headers)
    assert answer.status_code == 200, answer.text
    expected = torch.nn.functional.cross_entropy(bf16.float(), torch.from_numpy(labels))
    assert answer.json()["loss"] == pytest.approx(float(expected), rel=1e-6)
    assert answer.json()["convention"]["dtype"] == "float32"


def test_bf16_json_tensor_is_rounded_like_torch(client, rng):
    z, y = _batch(rng, b=2, t=3, k=5)
    body = client.post(
        URL,
        json={
            "logits": {"shape": [2, 3, 5], "datatype": "BF16", "data": z.ravel().tolist()},
            "labels": y.tolist(),
            "ignore_index": -100,
        },
    ).json()
    rounded = torch.from_numpy(z).to(torch.bfloat16).double().numpy()  # round to nearest even, as torch does
    assert body["loss"] == pytest.approx(float(_torch(rounded, y, "mean")), rel=2e-6)
    flat = client.post(  # an N×K BF16 JSON tensor: the same rounding, then float32
        URL, json={"logits": {"shape": [1, 2], "datatype": "BF16", "data": [0.0, 1.0]}, "labels": [0]}
    ).json()
    assert flat["loss"] == pytest.approx(math.log1p(math.e), rel=1e-6)


def test_sequence_top1_calibration_matches_torchmetrics(client, rng):
    from torchmetrics.functional.classification import multiclass_calibration_error

    z, y = _batch(rng, b=4, t=25, k=6)
    body = client.post(URL, json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100}).json()
    calibration = body["language_model"]["calibration"]
    ok = y != -100
    probs = torch.softmax(torch.from_numpy(z[ok]), -1)
    labels = torch.from_numpy(y[ok])
    expected = multiclass_calibration_error(probs, labels, num_classes=6, n_bins=15, norm="l1")
    # torchmetrics bins [a, b) on torch.linspace edges, Xent (a, b]: equal unless a confidence is on an edge
    assert calibration["ece"] == pytest.approx(float(expected), rel=1e-5)
    assert calibration["teacher_forced"] is True and calibration["n_tokens"] == int(ok.sum())


def test_ragged_sequence_logits_are_422_naming_the_row(client):
    ragged = [[[0.0, 1.0], [0.0, 1.0]], [[0.0, 1.0], [0.0]]]
    problem = assert_problem(client.post(URL, json={"logits": ragged, "labels": [[0, 1], [1, 0]]}), 422)
    assert problem["errors"][0]["pointer"] == "#/logits/1/1"
    assert "ragged" in problem["detail"]
