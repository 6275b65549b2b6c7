import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from service.core import Distribution, nll, softplus
from service.core import sigmoid as softplus_module
from service.core.sigmoid import binary_nll


def _mp_softplus(values: np.ndarray) -> np.ndarray:
    mpmath.mp.dps = 50
    return np.array([float(mpmath.log1p(mpmath.exp(mpmath.mpf(float(v))))) for v in values])


def _logits(rng: np.random.Generator, dtype: type, n: int) -> np.ndarray:
    extremes = [0.0, -0.0, 1e4, -1e4, 16.0, -16.0, 40.0, -40.0, 750.0, -750.0, 1e-30, -1e-30]
    return np.concatenate([30 * rng.standard_normal(n), extremes]).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_matches_mpmath_across_block_boundaries(rng, dtype, monkeypatch):
    monkeypatch.setattr(softplus_module, "BLOCK_BYTES", 64 * np.dtype(dtype).itemsize)  # 64 per block
    x = _logits(rng, dtype, 1000)  # 1012 values: not a multiple of the block
    got = softplus(x)
    assert got.dtype == dtype
    info = np.finfo(dtype)  # subnormal results carry fewer digits: absolute tolerance below `tiny`
    np.testing.assert_allclose(got, _mp_softplus(x), rtol=4 * info.eps, atol=info.tiny)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_nll_matches_torch_and_mpmath(rng, dtype, monkeypatch):
    monkeypatch.setattr(softplus_module, "BLOCK_BYTES", 100 * np.dtype(dtype).itemsize)
    z = _logits(rng, dtype, 1001)
    y = rng.integers(0, 2, size=z.size)
    got = binary_nll(y, z)
    assert got.dtype == dtype
    signed = np.where(y == 1, -z.astype(np.float64), z)
    info = np.finfo(dtype)
    np.testing.assert_allclose(got, _mp_softplus(signed), rtol=4 * info.eps, atol=info.tiny)
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(z.astype(np.float64)), torch.from_numpy(y.astype(np.float64)), reduction="none"
    ).numpy()
    # torch computes log(1 + exp(-|z|)) with log, not log1p: absolute error ~eps on small losses.
    np.testing.assert_allclose(got, expected, rtol=4 * info.eps, atol=64 * np.finfo(np.float64).eps)


def test_binary_nll_is_exact_at_extreme_logits():
    z = np.array([1e4, 1e4, -1e4, -1e4])
    got = binary_nll(np.array([1, 0, 1, 0]), z)
    np.testing.assert_array_equal(got, [0.0, 1e4, 1e4, 0.0])
    assert not np.signbit(got).any()  # +0.0, never -0.0


def test_binary_cross_entropy_from_logits_uses_the_fused_pass_through_nll(rng):
    z = 5 * rng.standard_normal(257)
    y = rng.integers(0, 2, size=257)
    losses = nll(y, Distribution.from_logits(z))
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(z), torch.from_numpy(y.astype(np.float64)), reduction="none"
    ).numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-14, atol=1e-15)  # torch's log form: absolute
    np.testing.assert_allclose(losses, _mp_softplus(np.where(y == 1, -z, z)), rtol=1e-15)
    np.testing.assert_array_equal(Distribution.from_logits(z).log_prob_at(y), -losses)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_of_infinities_nan_and_signed_zeros(dtype):
    got = softplus(np.array([np.inf, -np.inf, np.nan, -0.0, 0.0], dtype))
    np.testing.assert_array_equal(got[:3], [np.inf, 0.0, np.nan])
    np.testing.assert_array_equal(got[3:], dtype(np.log(2.0)))  # -|x| is set by the sign bit: -0.0 as 0.0
    assert got.dtype == dtype and not np.signbit(got[1])


def test_softplus_keeps_shape_of_2d_and_scalar_input():
    assert softplus(np.zeros((3, 4), np.float32)).shape == (3, 4)
    assert softplus(np.float64(0.0)).shape == ()
