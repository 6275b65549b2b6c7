"""`sequence_loss`: PyTorch's class weights, label smoothing and soft targets over (B, T, K)."""

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core import InputError
from service.core.language import blocks
from service.core.language.weighted import sequence_loss


def _batch(rng, b=4, t=9, k=37, dtype=np.float64):
    z = (4 * rng.standard_normal((b, t, k))).astype(dtype)
    y = rng.integers(0, k, (b, t))
    y[0, :3] = -100
    y[2, -2:] = -100
    return z, y


def _torch(z, truth, reduction, **kwargs):
    logits = torch.from_numpy(np.ascontiguousarray(z)).double().transpose(1, 2)  # (B, K, T)
    target = torch.from_numpy(np.ascontiguousarray(truth))
    if target.ndim == 3:
        target = target.double().transpose(1, 2)
    if "weight" in kwargs:
        kwargs["weight"] = torch.from_numpy(kwargs["weight"]).double()
    return F.cross_entropy(logits, target, reduction=reduction, **kwargs).numpy()


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 1.0])
@pytest.mark.parametrize("weighted", [False, True])
def test_labels_match_torch_each_reduction_and_per_sequence(rng, monkeypatch, smoothing, weighted):
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 5 * 37 * 8)  # blocks straddle sequences
    z, y = _batch(rng)
    w = rng.uniform(0.1, 3, 37) if weighted else None
    kw = {"label_smoothing": smoothing, "ignore_index": -100} | ({"weight": w} if weighted else {})
    s = sequence_loss(z, labels=y, class_weights=w, label_smoothing=smoothing)
    np.testing.assert_allclose(s.loss, _torch(z, y, "none", **kw), rtol=1e-12, atol=1e-13)
    assert s.loss.sum() == pytest.approx(float(_torch(z, y, "sum", **kw)), rel=1e-12)
    assert s.loss.sum() / s.weight.sum() == pytest.approx(float(_torch(z, y, "mean", **kw)), rel=1e-12)
    for i in range(z.shape[0]):  # each sequence alone: its sum and its own weighted mean
        one = _torch(z[i : i + 1], y[i : i + 1], "sum", **kw)
        mean = _torch(z[i : i + 1], y[i : i + 1], "mean", **kw)
        assert s.sequence_loss[i] == pytest.approx(float(one), rel=1e-12)
        assert s.sequence_loss[i] / s.sequence_weight[i] == pytest.approx(float(mean), rel=1e-12)


def test_mask_equals_ignore_index_and_non_contiguous_logits(rng, monkeypatch):
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 4 * 37 * 8)
    z, y = _batch(rng, t=10)
    w = rng.uniform(0.1, 3, 37)
    mask = rng.random((4, 9)) < 0.7
    shifted = z[:, :-1]  # logits[:, :-1]: not C-contiguous
    masked = sequence_loss(shifted, labels=y[:, 1:], mask=mask, class_weights=w, label_smoothing=0.2)
    y_ignored = np.where(mask, y[:, 1:], -100)
    kw = {"weight": w, "label_smoothing": 0.2}
    np.testing.assert_allclose(masked.loss, _torch(shifted, y_ignored, "none", **kw), rtol=1e-12, atol=1e-13)
    assert masked.loss.sum() / masked.weight.sum() == pytest.approx(
        float(_torch(shifted, y_ignored, "mean", **kw)), rel=1e-12
    )


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_soft_targets_match_torch_probability_targets(rng, monkeypatch, kind):
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 3 * 37 * 8)
    z, _ = _batch(rng)
    targets = rng.dirichlet(np.ones(37), (4, 9))
    w = rng.uniform(0.1, 3, 37)
    values = z if kind == "logits" else torch.softmax(torch.from_numpy(z), -1).numpy()
    s = sequence_loss(
        values, targets=targets, kind=kind, ignore_index=None, class_weights=w, label_smoothing=0.1
    )
    kw = {"weight": w, "label_smoothing": 0.1}
    np.testing.assert_allclose(s.loss, _torch(z, targets, "none", **kw), rtol=1e-10, atol=1e-12)
    # PyTorch's mean with probability targets divides by B·T, not by the weights
    assert s.loss.sum() / s.weight.sum() == pytest.approx(float(_torch(z, targets, "mean", **kw)), rel=1e-10)
    assert (s.correct == (z.argmax(-1) == targets.argmax(-1))).all()
    p = torch.softmax(torch.from_numpy(z), -1)
    entropy = -(p * torch.log_softmax(torch.from_numpy(z), -1)).sum(-1).numpy()
    np.testing.assert_allclose(s.entropy, entropy, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_inputs_equal_float32_on_the_same_values(rng, dtype):
    z, y = _batch(rng, k=300)
    tensor = torch.from_numpy(z).to(getattr(torch, dtype))
    if dtype == "bfloat16":
        sent, extra = tensor.view(torch.int16).numpy().view(np.uint16), {"bfloat16": True}
    else:
        sent, extra = tensor.numpy(), {}
    w = rng.uniform(0.1, 3, 300).astype(np.float32)
    s = sequence_loss(sent, labels=y, class_weights=w, label_smoothing=0.1, **extra)
    wide = sequence_loss(tensor.float().numpy(), labels=y, class_weights=w, label_smoothing=0.1)
    assert s.loss.dtype == np.float32
    np.testing.assert_array_equal(s.loss, wide.loss)
    kw = {"weight": w.astype(np.float64), "label_smoothing": 0.1, "ignore_index": -100}
    np.testing.assert_allclose(s.loss, _torch(tensor.double().numpy(), y, "none", **kw), rtol=1e-5, atol=1e-5)


def test_no_second_vocabulary_sized_array(rng):
    b, t, k = 4, 16, 150_000  # 38 MB of logits and as much of targets: one row per block
    z = rng.standard_normal((b, t, k), dtype=np.float32)
    targets = np.zeros_like(z)
    targets[..., 0] = 1
    tracemalloc.start()
    sequence_loss(z, targets=targets, ignore_index=None, label_smoothing=0.1)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.15 * z.nbytes, peak  # a few block-sized temporaries, not B·T·K


@pytest.mark.parametrize(
    ("kwargs", "field", "index"),
    [
        ({"targets": np.full((2, 3, 4), 0.3)}, "targets", (0, 0)),
        ({"targets": np.full((2, 3, 5), 0.25)}, "targets", None),
        ({"targets": np.full((2, 3, 4), 0.25), "ignore_index": -100}, "ignore_index", None),
        ({"labels": np.full((2, 3), 4)}, "labels", (0, 0)),
    ],
)
def test_bad_truth_names_field(kwargs, field, index):
    kwargs = {"ignore_index": None} | kwargs
    with pytest.raises(InputError) as error:
        sequence_loss(np.zeros((2, 3, 4)), **kwargs)
    assert error.value.field == field
    if index is not None:
        assert tuple(error.value.index[:2]) == index
