"""`/v1/cross-entropy` on B×T×K sequences with class_weights, label_smoothing and soft targets."""

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
    y[2, -1] = -100
    return z, y


def _torch(z, truth, reduction, **kwargs):
    logits = torch.from_numpy(np.asarray(z, np.float64)).transpose(1, 2)
    target = torch.from_numpy(np.asarray(truth))
    if target.ndim == 3:
        target = target.double().transpose(1, 2)
    if kwargs.get("weight") is not None:
        kwargs["weight"] = torch.from_numpy(np.asarray(kwargs["weight"], np.float64))
    return F.cross_entropy(logits, target, reduction=reduction, **kwargs).numpy()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(("smoothing", "weighted"), [(0.0, True), (0.2, False), (0.2, True)])
def test_weights_and_smoothing_match_torch(client, rng, reduction, smoothing, weighted):
    z, y = _batch(rng)
    w = rng.uniform(0.2, 3, 11) if weighted else None
    payload = {"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, "reduction": reduction}
    payload["label_smoothing"] = smoothing
    if weighted:
        payload["class_weights"] = w.tolist()
    body = client.post(URL, json=payload).json()
    kw = {"weight": w, "label_smoothing": smoothing, "ignore_index": -100}
    if reduction == "none":
        np.testing.assert_allclose(body["losses"], _torch(z, y, "none", **kw), rtol=1e-12, atol=1e-14)
    else:
        assert body["loss"] == pytest.approx(float(_torch(z, y, reduction, **kw)), rel=1e-12)
    convention = body["convention"]
    assert convention["label_smoothing"] == smoothing and convention["class_weights"] is weighted
    per = body["sequence_loss"]
    for i in range(3):  # each sequence alone: its sum, and its weighted mean from loss / weight
        assert per["loss"][i] == pytest.approx(
            float(_torch(z[i : i + 1], y[i : i + 1], "sum", **kw)), rel=1e-12
        )
        mean = float(_torch(z[i : i + 1], y[i : i + 1], "mean", **kw))
        assert per["loss"][i] / per["weight"][i] == pytest.approx(mean, rel=1e-12)
    assert per["tokens"] == (y != -100).sum(1).tolist()
    # perplexities stay those of the plain token NLL, never weighted or smoothed
    plain = _torch(z, y, "none", ignore_index=-100).sum(1)
    np.testing.assert_allclose(body["language_model"]["per_sequence"]["nll"], plain, rtol=1e-12)


def test_weights_with_mask_and_bits(client, rng):
    z, y = _batch(rng)
    mask = (rng.random((3, 7)) < 0.7).astype(int)
    w = rng.uniform(0.2, 3, 11)
    payload = {"logits": z.tolist(), "labels": y.tolist(), "mask": mask.tolist(), "ignore_index": -100}
    body = client.post(
        URL, json=payload | {"class_weights": w.tolist(), "label_smoothing": 0.1, "base": 2}
    ).json()
    ignored = np.where(mask == 1, y, -100)
    expected = _torch(z, ignored, "mean", weight=w, label_smoothing=0.1, ignore_index=-100) / np.log(2)
    assert body["loss"] == pytest.approx(float(expected), rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_soft_targets_match_torch_probability_targets(client, rng, reduction):
    z, _ = _batch(rng)
    targets = rng.dirichlet(np.ones(11), (3, 7))
    w = rng.uniform(0.2, 3, 11)
    payload = {"logits": z.tolist(), "targets": targets.tolist(), "reduction": reduction}
    body = client.post(URL, json=payload | {"class_weights": w.tolist(), "label_smoothing": 0.1}).json()
    kw = {"weight": w, "label_smoothing": 0.1}
    if reduction == "none":
        np.testing.assert_allclose(body["losses"], _torch(z, targets, "none", **kw), rtol=1e-12, atol=1e-14)
    else:  # PyTorch's mean with probability targets divides by B·T
        assert body["loss"] == pytest.approx(float(_torch(z, targets, reduction, **kw)), rel=1e-12)
    assert body["convention"]["truth"] == "targets" and body["language_model"] is None
    assert body["n"] == 21
    assert body["accuracy"] == pytest.approx(float((z.argmax(-1) == targets.argmax(-1)).mean()))
    p = torch.softmax(torch.from_numpy(z), -1)
    entropy = -(p * torch.log_softmax(torch.from_numpy(z), -1)).sum(-1).numpy()
    assert body["mean_entropy"] == pytest.approx(float(entropy.mean()), rel=1e-12)
    sums = _torch(z, targets, "none", **kw).sum(1)
    np.testing.assert_allclose(body["sequence_loss"]["loss"], sums, rtol=1e-12)
    assert body["sequence_loss"]["weight"] == [7.0, 7.0, 7.0]


def test_soft_targets_equal_the_flattened_n_by_k_route(client, rng):
    z, _ = _batch(rng)
    p = torch.softmax(torch.from_numpy(z), -1).numpy()
    targets = rng.dirichlet(np.ones(11), (3, 7))
    mask = np.ones((3, 7), int)
    mask[1, 2:] = 0
    options = {"label_smoothing": 0.05, "class_weights": rng.uniform(0.5, 2, 11).tolist()}
    seq = client.post(
        URL, json={"probs": p.tolist(), "targets": targets.tolist(), "mask": mask.tolist(), **options}
    ).json()
    keep = mask.reshape(-1) == 1
    flat = client.post(
        URL,
        json={"probs": p.reshape(21, 11)[keep].tolist(), "targets": targets.reshape(21, 11)[keep].tolist()}
        | options,
    ).json()
    assert seq["n"] == flat["n"] == 16 and seq["n_ignored"] == 5
    for key in ("loss", "accuracy", "mean_entropy"):
        assert seq[key] == pytest.approx(flat[key], rel=1e-12), key


def test_bf16_logits_with_weights_equal_float32_on_the_same_values(client, rng):
    z, y = _batch(rng)
    bf16 = torch.from_numpy(z).to(torch.bfloat16)
    w = rng.uniform(0.2, 3, 11).astype(np.float32)
    raw = bf16.view(torch.int16).numpy().view(np.uint16)
    options = {"ignore_index": -100, "label_smoothing": 0.1, "per_sample": True}
    answers = []
    for logits, datatype in ((raw, "BF16"), (bf16.float().numpy(), "FP32")):
        blob, headers = binary_request(
            [("logits", logits, datatype), ("labels", y, "INT64"), ("class_weights", w, "FP32")],
            parameters=options,
        )
        answer = client.post(URL, content=blob, headers=headers)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    assert answers[0]["loss"] == answers[1]["loss"]
    expected = _torch(bf16.double().numpy(), y, "mean", weight=w, label_smoothing=0.1, ignore_index=-100)
    assert answers[0]["loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        (
            {"targets": np.full((3, 7, 10), 0.1).tolist()},
            "#/targets",
            "must have the shape of `logits` [3, 7, 11]",
        ),
        ({"targets": np.full((3, 7, 11), 0.2).tolist()}, "#/targets/0/0", "must sum to 1"),
        ({"targets": np.full((3, 7, 11), 1 / 11).tolist(), "ignore_index": -100}, "#/ignore_index", "hard"),
        ({"targets": np.full((3, 7, 11), 1 / 11).tolist(), "bytes": [1, 2, 3]}, "#/bytes", "B×T×K `targets`"),
        ({"labels": np.zeros((3, 7), int).tolist(), "class_weights": [0.0] * 11}, "#/class_weights", "zero"),
    ],
)
def test_bad_soft_or_weighted_input_names_the_field(client, rng, extra, pointer, match):
    z, _ = _batch(rng)
    problem = assert_problem(client.post(URL, json={"logits": z.tolist(), **extra}), 422)
    assert problem["errors"][0]["pointer"] == pointer
    assert match in problem["detail"]


def test_plain_sequences_and_rows_carry_no_sequence_loss(client, rng):
    z, y = _batch(rng)
    plain = client.post(URL, json={"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100}).json()
    rows = client.post(URL, json={"logits": z[0].tolist(), "labels": [0] * 7}).json()
    assert "sequence_loss" not in plain and "sequence_loss" not in rows
    assert plain["loss"] == pytest.approx(float(_torch(z, y, "mean", ignore_index=-100)), rel=1e-12)
