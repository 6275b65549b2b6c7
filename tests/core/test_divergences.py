import sys
import tracemalloc

import numpy as np
import pytest
import scipy.special as sp
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from service.core import (
    Distribution,
    cross_entropy_rows,
    divergence_rows,
    entropy,
    js_divergence,
    kl_divergence,
)
from tests.core.test_relative_entropy import _probs  # exact zeros and one-hot rows

kernel = sys.modules["service.core.divergence.rows"]
NAMES = ("kl_pq", "kl_qp", "js", "entropy_p", "entropy_q", "cross_entropy_pq")


def _whole_array(p: Distribution, q: Distribution) -> dict[str, np.ndarray]:
    """The same statistics from the whole-array formulas of service.core.entropy."""
    pp, lp, qq, lq = p.probs, p.log_probs, q.probs, q.log_probs
    return {
        "kl_pq": kl_divergence(pp, lp, lq),
        "kl_qp": kl_divergence(qq, lq, lp),
        "js": js_divergence(pp, qq),
        "entropy_p": entropy(pp, lp),
        "entropy_q": entropy(qq, lq),
        "cross_entropy_pq": cross_entropy_rows(pp, lq),
    }


@pytest.mark.parametrize("k", [3, 10, 80])  # narrow (einsum row sums) and wide rows
def test_matches_scipy_across_blocks_with_zeros(rng, monkeypatch, k):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 7 * k * 8)  # 7 rows a block
    n = 101  # not a multiple of the block
    p, q = _probs(rng, n, k, np.float64), sp.softmax(rng.standard_normal((n, k)), axis=1)
    rows = divergence_rows(Distribution.from_probs(p, eps=0), Distribution.from_probs(q, eps=0))
    tol = {"rtol": 1e-13, "atol": 1e-15}
    np.testing.assert_allclose(rows.kl_pq, sp.rel_entr(p, q).sum(axis=1), **tol)
    np.testing.assert_allclose(rows.kl_qp, sp.rel_entr(q, p).sum(axis=1), **tol)
    np.testing.assert_allclose(rows.entropy_p, scipy_entropy(p, axis=1), **tol)
    np.testing.assert_allclose(rows.entropy_q, scipy_entropy(q, axis=1), **tol)
    np.testing.assert_allclose(np.sqrt(rows.js), jensenshannon(p, q, axis=1), rtol=1e-12, atol=1e-15)
    # Identity: H(p, q) = H(p) + KL(p‖q)
    np.testing.assert_allclose(rows.cross_entropy_pq, rows.entropy_p + rows.kl_pq, **tol)


@pytest.mark.parametrize(
    ("p_kind", "q_kind"),
    [("probs", "probs"), ("logits", "logits"), ("probs", "logits"), ("binary_probs", "binary_logits")],
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_equals_the_whole_array_formulas(rng, monkeypatch, p_kind, q_kind, dtype):
    monkeypatch.setattr(kernel, "BLOCK_BYTES", 5 * 6 * np.dtype(dtype).itemsize)  # 5 rows a block
    n, k = 37, 6

    def make(kind: str) -> Distribution:
        if kind == "probs":
            return Distribution.from_probs(_probs(rng, n, k, dtype))  # default eps: zeros are clipped
        if kind == "logits":
            return Distribution.from_logits((4 * rng.standard_normal((n, k))).astype(dtype))
        if kind == "binary_probs":
            return Distribution.from_probs(np.r_[0.0, 1.0, rng.uniform(size=n - 2)].astype(dtype))
        return Distribution.from_logits((5 * rng.standard_normal(n)).astype(dtype))

    p, q = make(p_kind), make(q_kind)
    rows = divergence_rows(p, q)
    expected = _whole_array(p, q)
    eps = float(np.finfo(dtype).eps)
    for name in NAMES:
        got = getattr(rows, name)
        assert got.dtype == dtype, name
        np.testing.assert_allclose(got, expected[name], rtol=64 * eps, atol=64 * eps, err_msg=name)


def test_mixed_dtypes_give_float64(rng):
    p = Distribution.from_logits(rng.standard_normal((9, 4)).astype(np.float32))
    q = Distribution.from_probs(sp.softmax(rng.standard_normal((9, 4)), axis=1))
    rows = divergence_rows(p, q)
    assert {getattr(rows, name).dtype for name in NAMES} == {np.dtype(np.float64)}
    expected = sp.rel_entr(sp.softmax(p.logits.astype(np.float64), axis=1), q.sent_probs).sum(axis=1)
    np.testing.assert_allclose(rows.kl_pq, expected, rtol=1e-5)  # float32 logits


def test_disjoint_supports_at_eps_zero():
    p = Distribution.from_probs([[1.0, 0.0], [0.5, 0.5]], eps=0)
    q = Distribution.from_probs([[0.0, 1.0], [0.5, 0.5]], eps=0)
    rows = divergence_rows(p, q)
    assert rows.kl_pq[0] == np.inf and rows.kl_qp[0] == np.inf and rows.cross_entropy_pq[0] == np.inf
    assert rows.js[0] == pytest.approx(np.log(2), rel=1e-15)
    assert rows.js[1] == 0.0 and rows.kl_pq[1] == 0.0
    assert rows.entropy_p[0] == 0.0 and not np.signbit(rows.entropy_p[0])  # +0.0, never -0.0
    assert not np.isnan([getattr(rows, name) for name in NAMES]).any()


def test_allocates_no_n_by_k_array(rng):
    n, k = 20_000, 50  # 8 MB per side
    p = Distribution.from_probs(sp.softmax(rng.standard_normal((n, k)), axis=1))
    q = Distribution.from_logits(rng.standard_normal((n, k)))
    q.summarise()  # its N-vectors are the logits' own
    tracemalloc.start()
    try:
        divergence_rows(p, q)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    outputs = 6 * n * 8
    scratch = 6 * kernel.BLOCK_BYTES
    assert peak < outputs + 2 * scratch + (1 << 20) < n * k * 8 / 2
