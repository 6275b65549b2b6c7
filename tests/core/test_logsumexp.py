import numpy as np
import pytest
import scipy.special as sp
from scipy.stats import entropy as scipy_entropy

from service.core import Distribution
from service.core.logsumexp import BLOCK_BYTES, NARROW_K, softmax_summary


@pytest.mark.parametrize("k", [2, 10, NARROW_K - 1, NARROW_K, 300])
def test_summary_matches_scipy_across_block_boundaries(rng, k):
    rows_per_block = BLOCK_BYTES // (k * 8)
    n = 2 * rows_per_block + 7  # two full blocks and a ragged tail
    z = 5 * rng.standard_normal((n, k))
    s = softmax_summary(z)
    np.testing.assert_allclose(s.lse, sp.logsumexp(z, axis=1), rtol=1e-14, atol=1e-15)
    np.testing.assert_array_equal(s.top, z.argmax(axis=1))
    np.testing.assert_allclose(
        s.entropy, scipy_entropy(sp.softmax(z, axis=1), axis=1), rtol=1e-12, atol=1e-15
    )


def test_summary_ties_go_to_the_first_maximum():
    z = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 0.0]])
    s = softmax_summary(z)
    np.testing.assert_array_equal(s.top, [1, 0, 0])
    np.testing.assert_allclose(s.lse, sp.logsumexp(z, axis=1), rtol=1e-15)
    np.testing.assert_allclose(s.entropy[1], np.log(3), rtol=1e-15)


def test_summary_float32_stays_float32_and_accurate(rng):
    z = (4 * rng.standard_normal((5000, 10))).astype(np.float32)
    s = softmax_summary(z)
    assert s.lse.dtype == np.float32 and s.entropy.dtype == np.float32
    np.testing.assert_allclose(s.lse, sp.logsumexp(z.astype(np.float64), axis=1), rtol=2e-6)


def test_entropy_has_no_cancellation_at_extreme_logits():
    z = np.array([[1e4, 1e4 - 1.0]], dtype=np.float32)
    expected = scipy_entropy(sp.softmax(np.array([[0.0, -1.0]]), axis=1), axis=1)
    np.testing.assert_allclose(softmax_summary(z).entropy, expected, rtol=1e-6)


def test_binary_entropy_is_exact_for_large_logits():
    z = np.array([0.0, 50.0, -50.0, 1e4])
    p = sp.expit(z)
    expected = -(sp.xlogy(p, p) + sp.xlogy(1 - p, 1 - p))
    expected[1] = expected[2] = 50 * np.exp(-50) + np.log1p(np.exp(-50))  # 1 - p rounds to 0 above
    np.testing.assert_allclose(Distribution.from_logits(z).entropy(), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("weights_kind", ["vector", "matrix"])
def test_log_prob_dot_from_logits_matches_probs(rng, weights_kind):
    z = 3 * rng.standard_normal((50, 6))
    w = rng.uniform(size=6) if weights_kind == "vector" else rng.uniform(size=(50, 6))
    from_logits = Distribution.from_logits(z)
    from_probs = Distribution.from_probs(sp.softmax(z, axis=1), eps=0)
    np.testing.assert_allclose(from_logits.log_prob_dot(w), from_probs.log_prob_dot(w), rtol=1e-10)
    np.testing.assert_allclose(
        from_logits.log_prob_dot(w),
        (np.broadcast_to(w, z.shape) * sp.log_softmax(z, axis=1)).sum(1),
        rtol=1e-12,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_log1p_is_accurate_to_a_few_ulps(dtype):
    from service.core.logsumexp import log1p

    x = np.concatenate([[0.0], np.logspace(-30, 4, 20_000)]).astype(dtype)
    expected = np.log1p(x.astype(np.float64))
    got = log1p(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(got, expected, rtol=4 * np.finfo(dtype).eps, atol=0)


def test_binary_probabilities_count_clipping_on_both_sides():
    dist = Distribution.from_probs(np.array([0.0, 1.0, 0.5]))
    assert dist.n_clipped == 2
    np.testing.assert_allclose(
        dist.log_prob_at(np.array([1, 0, 1])), np.log([np.finfo(float).eps] * 2 + [0.5])
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [2, 10, NARROW_K - 1, NARROW_K, 300])
def test_labelled_summary_gathers_the_label_logit_across_blocks(rng, dtype, k):
    from service.core import logsumexp

    block_bytes = logsumexp.BLOCK_BYTES if k < NARROW_K else logsumexp.WIDE_BLOCK_BYTES
    rows_per_block = block_bytes // (k * np.dtype(dtype).itemsize)
    n = 2 * rows_per_block + 5  # two full blocks and a ragged tail
    z = (5 * rng.standard_normal((n, k))).astype(dtype)
    z[0, :] = 1e4
    z[1, 0], z[2, -1] = 1e4, -1e4  # extreme logits
    labels = rng.integers(0, k, size=n).astype(np.int32)  # any integer dtype
    s = softmax_summary(z, top=False, entropy=False, labels=labels)
    np.testing.assert_array_equal(s.picked, z[np.arange(n), labels] - s.shift)  # same float operations
    expected = -sp.log_softmax(z.astype(np.float64), axis=1)[np.arange(n), labels]
    losses = Distribution.from_logits(z).nll_at(labels)
    assert losses.dtype == dtype
    # scipy's log_softmax has absolute (not relative) error ~eps on small losses: atol. In float32,
    # z - m itself rounds (ulp(16) ~ 2e-6 absolute), so a tiny loss exp(z - m) carries ~10 ulps.
    np.testing.assert_allclose(losses, expected, rtol=64 * np.finfo(dtype).eps, atol=1e-14)
    assert not np.signbit(losses).any()  # +0.0 where p = 1, never -0.0
    # The loss alone is shifted by the label's logit, the summaries by the row maximum: the same
    # value to an ulp or two, each within the tolerance above.
    cached = Distribution.from_logits(z)
    cached.summarise(top=True, entropy=True)  # the gather then runs on the cached summary
    np.testing.assert_allclose(cached.nll_at(labels), losses, rtol=4 * np.finfo(dtype).eps, atol=0)
    np.testing.assert_allclose(cached.nll_at(labels), expected, rtol=64 * np.finfo(dtype).eps, atol=1e-14)
    fused = Distribution.from_logits(z)
    full = fused.summarise(top=True, entropy=True, labels=labels)  # gathered inside the full pass
    np.testing.assert_array_equal(full.picked, s.picked)
    np.testing.assert_array_equal(fused.nll_at(labels), cached.nll_at(labels))
    np.testing.assert_array_equal(fused.nll_at(labels[::-1].copy()), cached.nll_at(labels[::-1].copy()))


@pytest.mark.parametrize("eps", ["auto", 0])
def test_nll_from_probabilities_logs_only_the_gathered_values(rng, eps):
    p = sp.softmax(3 * rng.standard_normal((40, 5)), axis=1)
    p[0], p[1] = [1.0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0]
    labels = rng.integers(0, 5, size=40)
    labels[:2] = [0, 0]  # p_y = 1 and p_y = 0
    dist = Distribution.from_probs(p, eps=eps)
    floor = np.finfo(float).eps if eps == "auto" else 0.0
    with np.errstate(divide="ignore"):
        expected = -np.log(np.maximum(p[np.arange(40), labels], floor))
    losses = dist.nll_at(labels)
    np.testing.assert_array_equal(losses, expected)
    assert losses[0] == 0.0 and not np.signbit(losses[0])
    assert losses[1] == (np.inf if eps == 0 else -np.log(floor))
    np.testing.assert_array_equal(dist.log_probs[np.arange(40), labels], -losses)  # materialised: same
    np.testing.assert_array_equal(dist.nll_at(labels), losses)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_label_shifted_loss_redoes_rows_whose_exp_overflows(dtype):
    from service.core.logsumexp import label_nll

    big = 100.0 if dtype == np.float32 else 800.0  # exp(big) overflows in this dtype
    z = np.array([[0.0, big, 1.0], [big, 0.0, 1.0], [-np.inf, 0.0, 1.0], [2.0, 2.0, 2.0]], dtype)
    labels = np.array([0, 0, 0, 1])
    with np.errstate(over="raise", invalid="raise"):  # nothing escapes: overflowing rows are redone
        losses = label_nll(z, labels)
    expected = -sp.log_softmax(z.astype(np.float64), axis=1)[np.arange(4), labels]
    assert losses.dtype == dtype
    rows = [0, 2, 3]  # row 1's loss is exp(-big)-small: scipy's float64 log_softmax gives -0.0 there
    np.testing.assert_allclose(losses[rows], expected[rows], rtol=4 * np.finfo(dtype).eps)
    assert losses[0] == big and losses[2] == np.inf
    tiny = np.log1p(np.exp(-big) + np.exp(1 - big))  # float32: a subnormal, 1.4e-43 (ulp 1.4e-45)
    assert losses[1] == pytest.approx(tiny, rel=1e-2 if dtype == np.float32 else 0, abs=0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(32, 10), (3, 1000), (1, 2), (60, 63), (50, 64)])
def test_small_inputs_agree_with_the_blocked_pass(monkeypatch, rng, dtype, shape):
    from service.core import logsumexp

    z = (6 * rng.standard_normal(shape)).astype(dtype)
    z[0, :2] = z[0].max() + 1  # a tie at the maximum: the first one is the top class
    labels = rng.integers(0, shape[1], size=shape[0])
    small = softmax_summary(z, labels=labels)
    monkeypatch.setattr(logsumexp, "SMALL_ELEMENTS", 0)
    blocked = softmax_summary(z, labels=labels)
    assert small.top is not None and small.top[0] == 0
    np.testing.assert_array_equal(small.top, blocked.top)
    np.testing.assert_array_equal(small.shift, blocked.shift)
    np.testing.assert_array_equal(small.picked, blocked.picked)
    np.testing.assert_array_equal(small.log_norm, blocked.log_norm)  # bit for bit: a row's values
    np.testing.assert_array_equal(small.entropy, blocked.entropy)  # do not depend on N (monitors)
    eps = np.finfo(dtype).eps
    expected = scipy_entropy(sp.softmax(z.astype(np.float64), axis=1), axis=1)
    np.testing.assert_allclose(small.entropy, expected, rtol=64 * eps, atol=4 * eps)
    np.testing.assert_allclose(small.lse, sp.logsumexp(z.astype(np.float64), axis=1), rtol=4 * eps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_row_gives_the_same_bits_alone_and_among_others(rng, dtype):
    """A lone row (and a one-row tail block) is summed in the order of a row among others.

    A K×1 column is reduced pairwise by NumPy where K×rows are reduced row by row: before the
    fix, a single float32 row with K = 10, 13, 18, ... came out an ulp apart (monitors and
    offline scoring merge batches, so their answers depended on how rows were batched).
    """
    from service.core.logsumexp import label_nll

    for k in range(2, NARROW_K + 3):
        z = (5 * rng.standard_normal((1, k))).astype(dtype)
        y = np.array([k // 2])
        others = (5 * rng.standard_normal((4096 // k + 3, k))).astype(dtype)
        many, labels = np.concatenate([z, others]), np.concatenate([y, np.zeros(len(others), int)])
        alone, among = softmax_summary(z, labels=y), softmax_summary(many, labels=labels)
        for field in ("shift", "log_norm", "top", "entropy", "picked"):
            np.testing.assert_array_equal(getattr(alone, field), getattr(among, field)[:1], err_msg=f"{k}")
        np.testing.assert_array_equal(label_nll(z, y), label_nll(many, labels)[:1], err_msg=f"{k}")
    k = 10
    n = 2 * (BLOCK_BYTES // (k * np.dtype(dtype).itemsize)) + 1  # blocks, then a one-row tail
    z = (5 * rng.standard_normal((n, k))).astype(dtype)
    y = rng.integers(0, k, n)
    tail, head = np.concatenate([z[-1:], z[:3]]), np.concatenate([y[-1:], y[:3]])
    np.testing.assert_array_equal(softmax_summary(z).lse[-1:], softmax_summary(tail).lse[:1])
    np.testing.assert_array_equal(label_nll(z, y)[-1:], label_nll(tail, head)[:1])
