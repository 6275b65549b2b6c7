import sys

import numpy as np
import pytest
from sklearn.metrics import log_loss

from service.core import Distribution, nll
from service.core.binary_probs import binary_nll_probs, count_clipped

kernel = sys.modules["service.core.binary_probs"]


def _probs(rng: np.random.Generator, n: int, dtype: type) -> np.ndarray:
    p = rng.random(n)
    p[::9], p[::13], p[5] = 0.0, 1.0, 1e-300  # exact 0 and 1, and a value below any eps
    return p.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_nll_probs_matches_sklearn_log_loss_across_blocks(rng, monkeypatch, dtype):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 50 * np.dtype(dtype).itemsize)  # 50 per block
    p = _probs(rng, 1013, dtype)  # not a multiple of the block
    y = rng.integers(0, 2, size=p.size)
    dist = Distribution.from_probs(p)
    losses = nll(y, dist)
    assert losses.dtype == dtype
    eps = float(np.finfo(dtype).eps)
    p64 = p.astype(np.float64)
    chosen = np.where(y == 1, p, 1 - p).astype(np.float64)  # 1 - p rounds in the input's dtype
    expected = -np.log(np.maximum(chosen, eps))  # the zero side clipped only
    np.testing.assert_allclose(losses, expected, rtol=4 * eps, atol=0)
    # scikit-learn also lowers p = 1 to 1 - eps: the same loss to within eps per sample.
    assert losses.mean(dtype=np.float64) == pytest.approx(log_loss(y, p), abs=4 * eps)
    assert not np.signbit(losses).any()  # +0.0 where p_y = 1
    ones, zeros = p64 == 1, p64 < eps
    assert dist.n_clipped == int(np.count_nonzero(zeros) + np.count_nonzero(ones))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_nll_probs_with_eps_zero_gives_inf_and_exact_zero(dtype):
    p = np.array([0.0, 0.0, 1.0, 1.0, 0.25], dtype)
    y = np.array([1, 0, 1, 0, 0])
    losses = nll(y, Distribution.from_probs(p, eps=0))
    np.testing.assert_array_equal(losses, np.array([np.inf, 0.0, 0.0, np.inf, -np.log(0.75)], dtype))
    assert not np.signbit(losses).any()
    np.testing.assert_array_equal(binary_nll_probs(y, p, 0.0), losses)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("eps", ["auto", 1e-7, 1e-15, 1e-300, 0.3, 0.6])
def test_count_clipped_agrees_with_its_definition_at_every_boundary(rng, monkeypatch, dtype, eps):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 16 * np.dtype(dtype).itemsize)
    eps = float(np.finfo(dtype).eps) if eps == "auto" else eps
    one, edges = np.array(1, dtype), []
    for start in (np.array(1 - eps, dtype), np.array(eps, dtype), one):  # ulps around both thresholds
        x = start
        for _ in range(6):
            x = np.nextafter(x, np.array(-1, dtype))
        for _ in range(12):
            edges.append(x[()])
            x = np.nextafter(x, np.array(2, dtype))
    p = np.concatenate(
        [np.array(edges, dtype), rng.random(50).astype(dtype), np.array([0, 1, np.nan], dtype)]
    )
    rng.shuffle(p)
    with np.errstate(invalid="ignore"):
        expected = int(np.count_nonzero(p < eps) + np.count_nonzero(np.subtract(1, p) < eps))
    assert count_clipped(p, eps) == expected > 0


def test_the_high_side_threshold_of_a_nan_eps_is_an_error_not_a_hang():
    with pytest.raises(ValueError, match="eps"):
        kernel.high_side_threshold(np.dtype(np.float32), float("nan"))


def test_count_clipped_counts_both_sides_across_blocks(rng, monkeypatch):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 8 * 7)
    p = _probs(rng, 100, np.float64)
    p[7] = 1 - 1e-17  # rounds to 1.0: 1 - p = 0 is clipped
    expected = int(np.count_nonzero(p < 1e-6) + np.count_nonzero(1 - p < 1e-6))
    assert count_clipped(p, 1e-6) == expected
    assert count_clipped(np.array([0.5]), 1e-6) == 0


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("eps", [0.0, 5e-324, 1e-7, 0.3, 1 - 2**-24, 1 - 2**-52, 0.9999999999999998])
def test_the_high_side_threshold_is_the_least_value_clipped_even_for_eps_near_one(dtype, eps):
    # eps finer than the dtype near 1 puts the threshold far from 1 - eps (the contract test's 500:
    # probabilities with eps 1 - 2**-52, whose threshold lies ~2**23 float32 ulps away, or ~2**50
    # float64 ones: the old search stepped 64 ulps from 1 - eps and gave up)
    t = kernel.high_side_threshold(np.dtype(dtype), eps)
    below = np.nextafter(t, np.array(-1, dtype))
    assert t.dtype == dtype
    assert np.subtract(1, t) < eps and not np.subtract(1, below) < eps  # the definition, both sides
    if dtype is np.float32 and eps in (1 - 2**-52, 0.9999999999999998):
        # eps rounds to 1.0 in float32; 1 - t rounds below 1 first just past half an ulp (ties to even)
        assert float(t) == 2**-25 + 2**-48
    if dtype is np.float64 and eps == 0.9999999999999998:
        # 1 - t rounds below 1 - 2 * 2**-53 (even) first just past the tie at 1 - 2.5 * 2**-53
        assert float(t) == 2.5 * 2**-53 + 2**-104
