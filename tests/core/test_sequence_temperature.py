"""Temperature fit over B×T×K token logits: equal to the N×K fit of the scored rows, and to torch."""

import tracemalloc

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from service.core import InputError, fit_metrics, fit_sequence_temperature, fit_temperature, log_softmax
from service.core.language import blocks


def _batch(rng, b=3, t=40, k=9, dtype=np.float64, sharp=2.0):
    z = (sharp * rng.standard_normal((b, t, k))).astype(dtype)
    y = np.where(rng.random((b, t)) < 0.6, z.argmax(-1), rng.integers(0, k, (b, t)))
    y[0, :4] = -100
    mask = np.ones((b, t), np.int64)
    mask[-1, -7:] = 0
    return z, y, mask


def _flat(z, y, mask):
    keep = (mask.astype(bool) & (y != -100)).reshape(-1)
    return z.reshape(-1, z.shape[-1])[keep], y.reshape(-1)[keep]


def _torch_temperature(z, y, mask):
    """scipy's bounded Brent on torch's F.cross_entropy(z / T, ignore_index) over (B, K, T), float64."""
    zt = torch.from_numpy(np.asarray(z, np.float64)).transpose(1, 2)
    yt = torch.from_numpy(np.where(mask.astype(bool), y, -100))

    def loss(log_t: float) -> float:
        return float(F.cross_entropy(zt / np.exp(log_t), yt, ignore_index=-100))

    found = minimize_scalar(loss, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(found.x)), float(found.fun)


@pytest.mark.parametrize("k", [9, 80])  # below 64 classes the N×K fit works transposed (K×N)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sequence_fit_is_the_flat_fit_of_the_scored_rows(rng, monkeypatch, k, dtype):
    """Same per-row terms, same means, same Newton path: identical numbers, bit for bit."""
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 7 * k * 16)  # blocks straddle sequences
    z, y, mask = _batch(rng, k=k, dtype=dtype)
    found = fit_sequence_temperature(y, z, mask=mask)
    zf, yf = _flat(z, y, mask)
    flat = fit_temperature(zf, labels=yf)
    assert found.fit == flat
    assert found.fit.reason == "optimum"
    assert found.tokens.tolist() == [36, 40, 33]


def test_sequence_fit_matches_torch_cross_entropy(rng):
    z, y, mask = _batch(rng, k=50, sharp=4.0)
    found = fit_sequence_temperature(y, z, mask=mask)
    temperature, loss = _torch_temperature(z, y, mask)
    assert found.fit.temperature == pytest.approx(temperature, rel=1e-6)
    assert found.fit.nll == pytest.approx(loss, rel=1e-9)
    assert found.fit.temperature > 1.2  # sharp logits: a real fit, away from T = 1


def test_sequence_fit_gradient_is_zero_by_torch_autograd(rng):
    z, y, mask = _batch(rng, k=30, sharp=3.0)
    found = fit_sequence_temperature(y, z, mask=mask)
    t = torch.tensor(found.fit.temperature, dtype=torch.float64, requires_grad=True)
    yt = torch.from_numpy(np.where(mask.astype(bool), y, -100))
    F.cross_entropy(torch.from_numpy(z).transpose(1, 2) / t, yt).backward()
    assert abs(float(t.grad)) < 1e-9


def test_sequence_fit_of_non_contiguous_logits(rng, monkeypatch):
    """``logits[:, :-1]`` (the usual shift to next-token labels) is read in place, per sequence."""
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 5 * 12 * 16)
    z, y, mask = _batch(rng, t=41, k=12)
    shifted = z[:, :-1]
    found = fit_sequence_temperature(y[:, 1:], shifted, mask=mask[:, 1:])
    zf, yf = _flat(np.ascontiguousarray(shifted), y[:, 1:], mask[:, 1:])
    assert found.fit == fit_temperature(zf, labels=yf)


def test_sequence_fit_of_half_precision_widens_a_block_at_a_time(rng, monkeypatch):
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 6 * 70 * 16)
    z, y, mask = _batch(rng, k=70, dtype=np.float32, sharp=3.0)
    half = torch.from_numpy(z).to(torch.bfloat16)
    bits = half.view(torch.int16).numpy().view(np.uint16)
    found = fit_sequence_temperature(y, bits, mask=mask, bfloat16=True)
    assert found.fit == fit_sequence_temperature(y, half.float().numpy(), mask=mask).fit
    temperature, _ = _torch_temperature(half.double().numpy(), y, mask)
    assert found.fit.temperature == pytest.approx(temperature, rel=1e-6)
    f16 = z.astype(np.float16)
    assert fit_sequence_temperature(y, f16, mask=mask).fit == fit_temperature(
        _flat(f16.astype(np.float32), y, mask)[0], labels=_flat(z, y, mask)[1]
    )


@pytest.mark.parametrize("k", [2, 9, 80])
def test_sequence_fit_metrics_equal_fit_metrics_before_and_after(rng, k):
    z, y, mask = _batch(rng, k=k, sharp=3.0)
    found = fit_sequence_temperature(y, z, mask=mask)
    zf, yf = _flat(z, y, mask)
    for got, temperature in ((found.before, 1.0), (found.after, found.fit.temperature)):
        want = fit_metrics(log_softmax(zf / temperature), labels=yf)
        for name in ("nll", "ece", "brier", "accuracy"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=1e-10, abs=1e-13), name


def test_sequence_fit_degenerate_batches_as_the_flat_fit(rng):
    z, y, mask = _batch(rng)
    top = z.argmax(-1)
    separable = fit_sequence_temperature(top, z)
    assert separable.fit.reason == "separable" and separable.fit.temperature == 0
    assert separable.after.accuracy == 1 and separable.after.nll == 0
    worst = z.argmin(-1)
    uninformative = fit_sequence_temperature(worst, z)
    assert uninformative.fit.reason == "uninformative" and uninformative.fit.temperature == np.inf
    assert uninformative.fit.nll == np.log(9)  # the limit log K
    assert uninformative.after.nll == pytest.approx(np.log(9), rel=1e-12)
    assert uninformative.after.accuracy == np.mean(worst == 0)
    constant = fit_sequence_temperature(y, np.ones_like(z), mask=mask)
    assert constant.fit == fit_temperature(np.ones((109, 9)), labels=_flat(z, y, mask)[1])
    assert constant.fit.reason == "constant_logits"


def test_sequence_fit_refuses_bad_input(rng):
    z, y, mask = _batch(rng)
    z[1, 2, 3] = np.nan
    with pytest.raises(InputError, match=r"`logits\[1\]\[2\]\[3\]` must be finite; got nan") as raised:
        fit_sequence_temperature(y, z)
    assert raised.value.index == (1, 2, 3)
    with pytest.raises(InputError, match="must leave at least one position scored"):
        fit_sequence_temperature(np.full(y.shape, -100), z)
    with pytest.raises(InputError, match=r"`mask` must be B×T = 3×40"):
        fit_sequence_temperature(y, np.abs(z), mask=mask[:, :5])


def test_sequence_fit_memory_is_a_scratch_not_a_copy(rng):
    z = rng.standard_normal((4, 256, 4000), dtype=np.float32)  # 16 MiB
    y = rng.integers(0, 4000, (4, 256))
    tracemalloc.start()
    fit_sequence_temperature(y, z)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.3 * z.nbytes, peak
