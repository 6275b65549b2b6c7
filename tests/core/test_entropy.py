import mpmath
import numpy as np
import pytest
import scipy.special as sp
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy
from sklearn.metrics import log_loss

from service.core import (
    Distribution,
    cross_entropy,
    cross_entropy_rows,
    entropy,
    js_divergence,
    kl_divergence,
    label_weights,
    log_softmax,
    nll,
    soft_cross_entropy,
    to_base,
)


def _softmax_rows(rng, n, k, scale=1.0):
    return sp.softmax(scale * rng.standard_normal((n, k)), axis=1)


@pytest.mark.parametrize("shape", [(1, 2), (64, 5), (3, 10_000)])
def test_log_softmax_matches_scipy(rng, shape):
    logits = 10 * rng.standard_normal(shape)
    np.testing.assert_allclose(log_softmax(logits), sp.log_softmax(logits, axis=1), rtol=1e-12, atol=1e-12)


def test_log_softmax_is_finite_for_extreme_logits():
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]])
    out = log_softmax(logits)
    np.testing.assert_allclose(out, sp.log_softmax(logits, axis=1), rtol=1e-12)
    np.testing.assert_allclose(out[0], [0.0, -2e4, -1e4])
    np.testing.assert_allclose(out[1], np.full(3, -np.log(3)))


def test_log_softmax_keeps_float32():
    logits = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    out = log_softmax(logits)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, sp.log_softmax(logits.astype(np.float64), axis=1), rtol=1e-5, atol=1e-6)


def test_float16_logits_are_computed_in_float32():
    logits = np.array([[1.0, 2.0, 3.0]], dtype=np.float16)
    dist = Distribution.from_logits(logits)
    assert dist.log_probs.dtype == np.float32
    np.testing.assert_allclose(dist.log_probs, sp.log_softmax([[1.0, 2.0, 3.0]], axis=1), rtol=1e-6)


def test_cross_entropy_matches_scipy(rng):
    logits = 10 * rng.standard_normal((64, 5))
    labels = rng.integers(0, 5, size=64)
    expected = -sp.log_softmax(logits, axis=1)[np.arange(64), labels]
    np.testing.assert_allclose(cross_entropy(labels, logits), expected, rtol=1e-12, atol=1e-15)


def _exact_cross_entropy(logits, labels):
    mpmath.mp.dps = 60
    out = []
    for row, label in zip(logits, labels, strict=True):
        lse = mpmath.log(mpmath.fsum(mpmath.exp(mpmath.mpf(float(v))) for v in row))
        out.append(float(lse - mpmath.mpf(float(row[label]))))
    return np.array(out)


def test_small_losses_are_exact_to_full_relative_precision(rng):
    """Where the true class dominates, CE ~ 1e-6..1e-14: scipy and torch lose digits, Xent must not."""
    logits = 10 * rng.standard_normal((200, 5))
    labels = logits.argmax(axis=1)
    logits[np.arange(200), labels] += rng.uniform(0, 25, size=200)
    exact = _exact_cross_entropy(logits, labels)
    assert exact.min() < 1e-10
    np.testing.assert_allclose(cross_entropy(labels, logits), exact, rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(1, 2), (200, 7), (4, 10_000)])
def test_cross_entropy_matches_torch(rng, dtype, shape):
    logits = (8 * rng.standard_normal(shape)).astype(dtype)
    labels = rng.integers(0, shape[1], size=shape[0])
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    got = cross_entropy(labels, logits)
    assert got.dtype == dtype
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=1e-5 if dtype == np.float32 else 1e-12)


def test_cross_entropy_of_extreme_logits_is_exact():
    logits = np.array([[1e4, -1e4], [1e4, -1e4], [-1e4, 1e4]])
    np.testing.assert_allclose(cross_entropy([0, 1, 0], logits), [0.0, 2e4, 2e4])


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.7])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("ignore", [None, -100, 2])
def test_nll_options_match_torch(rng, smoothing, weighted, ignore):
    n, k = 50, 4
    logits = 3 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    if ignore is not None:
        labels[::7] = ignore
    weights = rng.uniform(0.2, 3.0, size=k) if weighted else None
    kwargs = {"label_smoothing": smoothing, "weight": None if weights is None else torch.from_numpy(weights)}
    kwargs["ignore_index"] = -100 if ignore is None else ignore
    t_logits, t_labels = torch.from_numpy(logits), torch.from_numpy(labels)
    expected_none = F.cross_entropy(t_logits, t_labels, reduction="none", **kwargs).numpy()
    expected_mean = F.cross_entropy(t_logits, t_labels, reduction="mean", **kwargs).item()
    losses = nll(
        labels,
        Distribution.from_logits(logits),
        class_weights=weights,
        label_smoothing=smoothing,
        ignore_index=ignore,
    )
    np.testing.assert_allclose(losses, expected_none, rtol=1e-12, atol=1e-14)
    denominators = label_weights(labels, class_weights=weights, ignore_index=ignore)
    np.testing.assert_allclose(losses.sum() / denominators.sum(), expected_mean, rtol=1e-12)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_soft_cross_entropy_matches_torch(rng, smoothing, weighted):
    n, k = 40, 6
    logits = 3 * rng.standard_normal((n, k))
    targets = _softmax_rows(rng, n, k, 2.0)
    weights = rng.uniform(0.2, 3.0, size=k) if weighted else None
    expected = F.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(targets),
        weight=None if weights is None else torch.from_numpy(weights),
        label_smoothing=smoothing,
        reduction="none",
    ).numpy()
    got = soft_cross_entropy(
        targets, Distribution.from_logits(logits), class_weights=weights, label_smoothing=smoothing
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_matches_torch_with_logits(rng, dtype):
    z = np.concatenate([30 * rng.standard_normal(200), [1e4, -1e4, 0.0]]).astype(dtype)
    y = rng.integers(0, 2, size=z.size)
    y[-3:] = [0, 1, 1]
    expected = F.binary_cross_entropy_with_logits(
        torch.from_numpy(z), torch.from_numpy(y.astype(dtype)), reduction="none"
    ).numpy()
    got = nll(y, Distribution.from_logits(z))
    assert got.dtype == dtype
    # torch computes log(1 + exp(-|z|)) without log1p: losses below ~1e-7 carry its rounding error.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 if dtype == np.float32 else 1e-14)
    z64 = z.astype(np.float64)
    exact = np.where(y == 1, np.logaddexp(0, -z64), np.logaddexp(0, z64))
    np.testing.assert_allclose(got, exact, rtol=1e-6 if dtype == np.float32 else 1e-13)
    np.testing.assert_allclose(got[-3:], [1e4, 1e4, np.log(2)], rtol=1e-6)


def test_probabilities_match_sklearn_log_loss_with_exact_zeros_and_ones(rng):
    probs = _softmax_rows(rng, 30, 3)
    probs[0] = [1.0, 0.0, 0.0]
    probs[1] = [0.0, 1.0, 0.0]
    labels = rng.integers(0, 3, size=30)
    labels[:2] = [1, 1]  # row 0: true class has p = 0; row 1: p = 1
    dist = Distribution.from_probs(probs)
    ours = nll(labels, dist).mean()
    theirs = log_loss(labels, probs, labels=[0, 1, 2])
    # sklearn also lowers p = 1 to 1 - eps: the two differ by at most 2 eps per sample.
    assert abs(ours - theirs) < 1e-14
    assert dist.n_clipped == 4
    np.testing.assert_allclose(nll(labels, dist)[:1], [-np.log(np.finfo(float).eps)])


def test_binary_probabilities_match_sklearn_log_loss(rng):
    p = rng.uniform(size=100)
    p[:2] = [0.0, 1.0]
    y = rng.integers(0, 2, size=100)
    dist = Distribution.from_probs(p)
    assert abs(nll(y, dist).mean() - log_loss(y, p)) < 1e-14


def test_eps_zero_gives_honest_infinity():
    dist = Distribution.from_probs(np.array([[0.0, 1.0], [0.5, 0.5]]), eps=0)
    losses = nll([0, 0], dist)
    assert losses[0] == np.inf
    assert losses[1] == pytest.approx(np.log(2))
    assert dist.n_clipped == 0


def test_float32_probabilities_use_float32_eps():
    dist = Distribution.from_probs(np.array([[0.0, 1.0]], dtype=np.float32))
    assert dist.eps == np.finfo(np.float32).eps
    assert dist.log_probs.dtype == np.float32


def test_entropy_matches_scipy(rng):
    probs = _softmax_rows(rng, 20, 5)
    probs[0] = [0.5, 0.5, 0, 0, 0]
    dist = Distribution.from_probs(probs, eps=0)
    np.testing.assert_allclose(entropy(dist.probs, dist.log_probs), scipy_entropy(probs, axis=1), rtol=1e-12)


def test_kl_divergence_matches_rel_entr_and_torch(rng):
    p = _softmax_rows(rng, 20, 5)
    q = _softmax_rows(rng, 20, 5)
    p[0, :2] = [0.6, 0.0]
    p[0] /= p[0].sum()
    dp, dq = Distribution.from_probs(p, eps=0), Distribution.from_probs(q, eps=0)
    got = kl_divergence(dp.probs, dp.log_probs, dq.log_probs)
    np.testing.assert_allclose(got, sp.rel_entr(p, q).sum(axis=1), rtol=1e-12)
    by_torch = F.kl_div(torch.from_numpy(np.log(q)), torch.from_numpy(p), reduction="none").sum(1).numpy()
    np.testing.assert_allclose(got, by_torch, rtol=1e-10)


def test_kl_divergence_with_zero_in_q_is_infinite_at_eps_zero():
    p = Distribution.from_probs(np.array([[0.5, 0.5]]), eps=0)
    q = Distribution.from_probs(np.array([[1.0, 0.0]]), eps=0)
    assert kl_divergence(p.probs, p.log_probs, q.log_probs)[0] == np.inf
    assert kl_divergence(q.probs, q.log_probs, p.log_probs)[0] == pytest.approx(np.log(2))
    np.testing.assert_allclose(sp.rel_entr([0.5, 0.5], [1.0, 0.0]).sum(), np.inf)


def test_js_divergence_matches_scipy_distance(rng):
    p = _softmax_rows(rng, 25, 4, 3.0)
    q = _softmax_rows(rng, 25, 4, 3.0)
    p[0] = [1.0, 0.0, 0.0, 0.0]
    q[0] = [0.0, 0.0, 0.0, 1.0]
    dp, dq = Distribution.from_probs(p, eps=0), Distribution.from_probs(q, eps=0)
    js = js_divergence(dp.probs, dq.probs)
    np.testing.assert_allclose(np.sqrt(js), jensenshannon(p, q, axis=1), rtol=1e-10)
    assert js[0] == pytest.approx(np.log(2), rel=1e-15)
    np.testing.assert_allclose(np.sqrt(to_base(js, 2)), jensenshannon(p, q, axis=1, base=2), rtol=1e-10)


def test_divergences_from_logits_match_probabilities(rng):
    zp, zq = rng.standard_normal((10, 3)), rng.standard_normal((10, 3))
    dp, dq = Distribution.from_logits(zp), Distribution.from_logits(zq)
    p, q = sp.softmax(zp, axis=1), sp.softmax(zq, axis=1)
    np.testing.assert_allclose(
        kl_divergence(dp.probs, dp.log_probs, dq.log_probs), sp.rel_entr(p, q).sum(1), rtol=1e-12
    )
    np.testing.assert_allclose(
        cross_entropy_rows(dp.probs, dq.log_probs), -(p * np.log(q)).sum(1), rtol=1e-12
    )


def test_to_base_two_gives_bits():
    np.testing.assert_allclose(to_base(np.array([np.log(8)]), 2), [3.0])
    np.testing.assert_allclose(to_base(np.array([np.log(100)]), 10), [2.0])


def test_nll_takes_log_probability_arrays_as_logits(rng):
    logits = 3 * rng.standard_normal((20, 4))
    labels = rng.integers(0, 4, size=20)
    log_probs = sp.log_softmax(logits, axis=1)
    np.testing.assert_allclose(nll(labels, log_probs), -log_probs[np.arange(20), labels], rtol=1e-12)
    targets = sp.softmax(rng.standard_normal((20, 4)), axis=1)
    np.testing.assert_allclose(
        soft_cross_entropy(targets, log_probs), -(targets * log_probs).sum(1), rtol=1e-12
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softplus_matches_logaddexp_and_keeps_dtype(rng, dtype):
    from service.core import softplus

    x = np.concatenate([30 * rng.standard_normal(1000), [0.0, 1e4, -1e4, 50.0, -50.0]]).astype(dtype)
    got = softplus(x)
    assert got.dtype == dtype
    np.testing.assert_allclose(
        got, np.logaddexp(0, x.astype(np.float64)), rtol=4 * np.finfo(dtype).eps, atol=0
    )
    assert softplus(0) == pytest.approx(np.log(2))
