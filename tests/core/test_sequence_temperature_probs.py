"""Temperature fit over B×T×K token probabilities: the N×K probs fit of the scored rows, exactly."""

import tracemalloc

import numpy as np
import pytest

from service.core import (
    Distribution,
    InputError,
    apply_temperature,
    fit_metrics,
    fit_sequence_temperature,
    fit_temperature,
    sequence_temperature_metrics,
)
from service.core.language import blocks


def _batch(rng, b=3, t=40, k=9, dtype=np.float64, sharp=2.0):
    """Softmax probabilities (rows summing to 1 in float64, then cast), some exact zeros, labels, mask."""
    z = sharp * rng.standard_normal((b, t, k))
    p = np.exp(z - z.max(-1, keepdims=True))
    p[rng.random((b, t)) < 0.2, 1] = 0.0  # below any eps: clipped
    p /= p.sum(-1, keepdims=True)
    y = np.where(rng.random((b, t)) < 0.6, p.argmax(-1), rng.integers(0, k, (b, t)))
    y[0, :4] = -100
    mask = np.ones((b, t), np.int64)
    mask[-1, -7:] = 0
    return p.astype(dtype), y, mask


def _flat(p, y, mask):
    keep = (mask.astype(bool) & (y != -100)).reshape(-1)
    return p.reshape(-1, p.shape[-1])[keep], y.reshape(-1)[keep]


@pytest.mark.parametrize("k", [9, 80])  # below 64 classes the N×K fit works transposed (K×N)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("eps", ["auto", 1e-3])
def test_probs_fit_is_the_flat_probs_fit_of_the_scored_rows(rng, monkeypatch, k, dtype, eps):
    """log(max(p, eps)) per block, as Distribution.from_probs: the same fit, bit for bit."""
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 7 * k * 16)  # blocks straddle sequences
    p, y, mask = _batch(rng, k=k, dtype=dtype)
    found = fit_sequence_temperature(y, p, mask=mask, probabilities=True, eps=eps)
    pf, yf = _flat(p, y, mask)
    dist = Distribution.from_probs(pf, eps=eps)  # float16 checked as float32, as the N×K route
    flat = fit_temperature(dist.log_probs, labels=yf)
    assert found.fit == flat
    assert (found.fit.temperature, found.fit.iterations, found.fit.reason) == (
        flat.temperature,
        flat.iterations,
        "optimum",
    )
    assert found.eps == dist.eps and found.n_clipped == dist.n_clipped > 0
    assert found.tokens.tolist() == [36, 40, 33]
    before = fit_metrics(dist.log_probs, labels=yf)
    after = fit_metrics(apply_temperature(dist.log_probs, flat.temperature), labels=yf)
    # `after` of a float32 batch: the N×K apply rounds log_softmax(log p / T) in float32, the
    # streamed one accumulates in float64 (as for logits): they agree to float32's rounding
    late = 1e-12 if dtype == np.float64 else 1e-7
    for got, want, tol in ((found.before, before, 1e-12), (found.after, after, late)):
        for name in ("nll", "ece", "brier", "accuracy"):
            assert getattr(got, name) == pytest.approx(getattr(want, name), rel=tol, abs=tol), name
    applied, scored, clipped = sequence_temperature_metrics(
        y, p, flat.temperature, mask=mask, probabilities=True, eps=eps
    )
    assert applied == found.after and clipped == found.n_clipped and (scored == found.scored).all()


def test_probs_fit_of_bfloat16_is_the_float32_fit(rng, monkeypatch):
    """BF16 bit patterns widen a block at a time: the fit of the same values sent as float32."""
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 5 * 9 * 16)
    p, y, mask = _batch(rng)
    bits = (p.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)
    wide = (bits.astype(np.uint32) << 16).view(np.float32)
    found = fit_sequence_temperature(y, bits, mask=mask, bfloat16=True, probabilities=True, tolerance=1e-2)
    same = fit_sequence_temperature(y, wide, mask=mask, probabilities=True, tolerance=1e-2)
    assert found.fit == same.fit and found.n_clipped == same.n_clipped
    pf, yf = _flat(wide, y, mask)
    assert found.fit == fit_temperature(Distribution.from_probs(pf, validate=False).log_probs, labels=yf)


def test_probs_fit_refuses_what_the_flat_route_refuses(rng):
    p, y, mask = _batch(rng)
    bad = p.copy()
    bad[1, 2, 3] = 1.5
    with pytest.raises(InputError, match="must lie in") as raised:
        fit_sequence_temperature(y, bad, probabilities=True, field="probs")
    assert raised.value.field == "probs" and raised.value.index == (1, 2, 3)
    off = p.copy()
    off[2, 5] *= 1.1
    with pytest.raises(InputError, match="must sum to 1") as raised:
        fit_sequence_temperature(y, off, probabilities=True, field="probs")
    assert raised.value.index == (2, 5)
    with pytest.raises(InputError, match="log 0") as raised:  # a zero with eps = 0: -inf is not a logit
        fit_sequence_temperature(y, p, probabilities=True, eps=0)
    assert raised.value.field == "eps"


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_probs_fit_memory_is_a_scratch_not_a_copy(rng, dtype):
    """Checks, logs and the float64 polish work a block at a time: no second B×T×K array."""
    z = rng.standard_normal((4, 256, 4000), dtype=np.float32)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p = p.astype(dtype)
    y = rng.integers(0, 4000, (4, 256))
    tracemalloc.start()
    found = fit_sequence_temperature(y, p, probabilities=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found.fit.reason == "optimum"
    assert peak < 0.3 * p.size * 4, peak  # a float32 copy (widened, or its logs) would be 16 MiB
