import sys

import numpy as np
import pytest
import scipy.special as sp
import torch
import torch.nn.functional as F

from service.core import Distribution, kl_divergence, relative_entropy

kernel = sys.modules["service.core.divergence.relative_entropy"]


def _probs(rng: np.random.Generator, n: int, k: int, dtype: type) -> np.ndarray:
    p = sp.softmax(4 * rng.standard_normal((n, k)), axis=1)
    p[::7, 0] = 0.0  # exact zeros
    p[::11] = np.eye(k)[rng.integers(0, k, size=p[::11].shape[0])]  # one-hot rows: p = 1 exactly
    return (p / p.sum(axis=1, keepdims=True)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [3, 10, 80])  # narrow (einsum row sums) and wide rows
def test_relative_entropy_matches_scipy_rel_entr_across_blocks(rng, monkeypatch, dtype, k):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 7 * k * np.dtype(dtype).itemsize)  # 7 rows a block
    n = 101  # not a multiple of the block
    p, q = _probs(rng, n, k, dtype), _probs(rng, n, k, dtype)
    eps = float(np.finfo(dtype).eps)
    got = relative_entropy(Distribution.from_probs(p), Distribution.from_probs(q))
    assert got.dtype == dtype
    p64, q64 = p.astype(np.float64), q.astype(np.float64)
    expected = sp.rel_entr(p64, np.maximum(q64, eps)).sum(axis=1) + (
        sp.xlogy(p64, np.maximum(p64, eps)) - sp.xlogy(p64, p64)
    ).sum(axis=1)  # log max(p, eps) on the p side too
    np.testing.assert_allclose(got, expected, rtol=64 * eps, atol=64 * eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relative_entropy_with_eps_zero_matches_torch_and_gives_inf(rng, dtype):
    p, q = _probs(rng, 50, 5, dtype), _probs(rng, 50, 5, dtype)
    q[3] = [0.0, 0.25, 0.25, 0.25, 0.25]
    p[3] = [0.5, 0.5, 0.0, 0.0, 0.0]  # p > 0 = q: +inf
    p[4], q[4] = [0.0, 0.0, 0.5, 0.5, 0.0], [0.0, 0.25, 0.25, 0.5, 0.0]  # p = q = 0 in column 0: 0
    got = relative_entropy(Distribution.from_probs(p, eps=0), Distribution.from_probs(q, eps=0))
    expected = sp.rel_entr(p.astype(np.float64), q.astype(np.float64)).sum(axis=1)
    assert np.isinf(got[3]) and got[3] > 0
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=64 * np.finfo(dtype).eps, atol=1e-6)
    tp, tq = torch.from_numpy(p.astype(np.float64)), torch.from_numpy(q.astype(np.float64))
    with np.errstate(divide="ignore"):
        by_torch = F.kl_div(torch.log(tq), tp, reduction="none").sum(dim=1).numpy()
    rows = finite & np.isfinite(by_torch)  # torch's kl_div gives nan where p = q = 0 (0 · -inf)
    np.testing.assert_allclose(got[rows], by_torch[rows], rtol=64 * np.finfo(dtype).eps, atol=1e-6)


def test_relative_entropy_equals_the_materialised_path_for_every_eps_policy(rng):
    p, q = _probs(rng, 40, 6, np.float64), _probs(rng, 40, 6, np.float64)
    q[0, :2] = [1e-310, 0.5 - 1e-310]  # a subnormal q with eps 0: no overflow of p / q
    q[0, 2:] = 0.125
    for eps_p, eps_q in [("auto", "auto"), (0, "auto"), ("auto", 0), (0, 0), (1e-3, 1e-320)]:
        dp, dq = Distribution.from_probs(p, eps=eps_p), Distribution.from_probs(q, eps=eps_q)
        with np.errstate(divide="ignore"):
            expected = kl_divergence(dp.probs, dp.log_probs, dq.log_probs)
        np.testing.assert_allclose(relative_entropy(dp, dq), expected, rtol=1e-13, atol=1e-15)


def test_relative_entropy_of_identical_and_one_hot_rows_is_exact():
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    got = relative_entropy(Distribution.from_probs(p, eps=0), Distribution.from_probs(p, eps=0))
    np.testing.assert_array_equal(got, [0.0, 0.0])
    q = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    got = relative_entropy(Distribution.from_probs(p), Distribution.from_probs(q))
    np.testing.assert_allclose(got, [np.log(2), 0.0], atol=1e-15)


def test_relative_entropy_falls_back_for_logits_and_binary_input(rng):
    z = rng.standard_normal((9, 4))
    q = sp.softmax(rng.standard_normal((9, 4)), axis=1)
    expected = sp.rel_entr(sp.softmax(z, axis=1), q).sum(axis=1)
    got = relative_entropy(Distribution.from_logits(z), Distribution.from_probs(q, eps=0))
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    pb, qb = np.array([0.2, 0.9]), np.array([0.5, 0.6])
    got = relative_entropy(Distribution.from_probs(pb, eps=0), Distribution.from_probs(qb, eps=0))
    expected = sp.rel_entr(np.stack([1 - pb, pb], 1), np.stack([1 - qb, qb], 1)).sum(axis=1)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
