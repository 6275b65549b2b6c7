"""Divergence terms of nearly equal probabilities against mpmath (issue #20, disagreement 2)."""

import mpmath
import numpy as np
import pytest
import scipy.special as sp

from service.core import Distribution, divergence_rows, divergence_terms, js_divergence, relative_entropy
from service.core.divergence.log_ratio import log_ratio

mpmath.mp.prec = 200
P, Q = 0.9456657713430001, 0.9456657713430094  # the pair of the issue


def _mp_log_ratio(a: float, b: float) -> mpmath.mpf:
    return mpmath.log(mpmath.mpf(a) / mpmath.mpf(b))


def _ulps(got: np.ndarray, exact: list[mpmath.mpf], dtype: type) -> np.ndarray:
    """|got - exact| in units of the last place of the exact value in `dtype`."""
    ref = np.array([float(x) for x in exact])
    err = np.array([float(abs(mpmath.mpf(float(g)) - x)) for g, x in zip(got.ravel(), exact, strict=True)])
    spacing = np.abs(np.spacing(ref.astype(dtype))).astype(np.float64)
    return err / np.maximum(spacing, np.finfo(dtype).smallest_subnormal)


def _pairs(rng: np.random.Generator, dtype: type, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Probability pairs: nearly equal (a few ulps to 1e-4 apart), far apart, tiny."""
    p = 10 ** rng.uniform(-30, 0, n)
    near = p * (1 + rng.choice([-1, 1], n) * 10 ** rng.uniform(-15 if dtype is np.float64 else -7, -4, n))
    q = np.where(np.arange(n) % 3 == 0, 10 ** rng.uniform(-30, 0, n), near)
    p, q = p.astype(dtype), np.minimum(q, 1).astype(dtype)
    q[:8] = np.nextafter(p[:8], dtype(1))  # one ulp apart
    return p, q


def test_issue_pair_matches_scipy_rel_entr_and_mpmath():
    exact = float(mpmath.mpf(P) * _mp_log_ratio(P, Q))
    assert sp.rel_entr(P, Q) == exact == -9.325873406851269e-15
    assert P * log_ratio(P, Q) == exact
    # A one-column row's sum is the term itself.
    got = relative_entropy(
        Distribution.from_probs([[P]], validate=False), Distribution.from_probs([[Q]], validate=False)
    )
    assert got[0] == exact
    rows = divergence_rows(
        Distribution.from_probs([[P]], validate=False), Distribution.from_probs([[Q]], validate=False)
    )
    assert rows.kl_pq[0] == exact
    assert rows.kl_qp[0] == float(mpmath.mpf(Q) * _mp_log_ratio(Q, P))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_log_ratio_is_within_a_few_ulps_of_mpmath(rng, dtype):
    p, q = _pairs(rng, dtype)
    got = log_ratio(p, q)
    assert got.dtype == dtype
    exact = [_mp_log_ratio(float(a), float(b)) for a, b in zip(p, q, strict=True)]
    assert _ulps(got, exact, dtype).max() <= 4
    # The two-log form this replaces is thousands of ulps off on the same pairs.
    assert _ulps(np.log(p) - np.log(q), exact, dtype).max() > 1000


def test_log_ratio_edges_and_subnormal_overflow():
    with np.errstate(divide="ignore"):
        assert log_ratio(0.5, 0.0) == np.inf
        assert log_ratio(0.0, 0.5) == -np.inf
    assert np.isnan(log_ratio(0.0, 0.0))
    assert log_ratio(0.25, 0.25) == 0.0
    got = log_ratio(0.5, 1e-310)  # 0.5 / 1e-310 overflows: recomputed as log a - log b
    assert got == pytest.approx(float(_mp_log_ratio(0.5, 1e-310)), rel=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_kl_term_is_within_a_few_ulps_of_mpmath(rng, dtype):
    """Each term p log(p/q) of relative_entropy and of divergence_rows (both ways), as N×1 rows."""
    p, q = _pairs(rng, dtype)
    dp = Distribution.from_probs(p[:, None], eps=0, validate=False)
    dq = Distribution.from_probs(q[:, None], eps=0, validate=False)
    pq = [mpmath.mpf(float(a)) * _mp_log_ratio(float(a), float(b)) for a, b in zip(p, q, strict=True)]
    qp = [mpmath.mpf(float(b)) * _mp_log_ratio(float(b), float(a)) for a, b in zip(p, q, strict=True)]
    assert _ulps(relative_entropy(dp, dq), pq, dtype).max() <= 4
    rows = divergence_rows(dp, dq)
    assert _ulps(rows.kl_pq, pq, dtype).max() <= 4
    assert _ulps(rows.kl_qp, qp, dtype).max() <= 4
    floored = Distribution.from_probs(p[:, None], eps=1e-40, validate=False)  # floors that bind nowhere
    assert _ulps(relative_entropy(floored, dq), pq, dtype).max() <= 4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_js_term_is_within_a_few_ulps_of_mpmath(rng, dtype):
    """p log(p/m) and q log(q/m): their sum errs by a few ulps of |each| (it cancels as p → q)."""
    p, q = _pairs(rng, dtype)
    terms_p, terms_q = [], []
    for a, b in zip(p.astype(np.float64), q.astype(np.float64), strict=True):
        x, y = mpmath.mpf(a), mpmath.mpf(b)
        m = (x + y) / 2
        terms_p.append(x * mpmath.log(x / m))
        terms_q.append(y * mpmath.log(y / m))
    scale = np.array([float(abs(a) + abs(b)) for a, b in zip(terms_p, terms_q, strict=True)])
    exact = np.array([float((a + b) / 2) for a, b in zip(terms_p, terms_q, strict=True)])
    eps = np.finfo(dtype).eps
    js_rows = divergence_rows(
        Distribution.from_probs(p[:, None], eps=0, validate=False),
        Distribution.from_probs(q[:, None], eps=0, validate=False),
    ).js
    for got in (js_rows, js_divergence(p[:, None], q[:, None])):
        assert got.dtype == dtype
        assert (np.abs(got.astype(np.float64) - exact) <= 4 * eps * scale + np.finfo(dtype).tiny).all()


def test_kl_of_the_issue_pair_as_binary_rows_is_second_order():
    """KL([p, 1-p] ‖ [q, 1-q]) ≈ (p - q)² / (2 p (1 - p)) ≈ 9e-28: the two-log form gave -1.7e-17."""
    x, y = mpmath.mpf(P), mpmath.mpf(Q)
    exact = float(x * mpmath.log(x / y) + (1 - x) * mpmath.log((1 - x) / (1 - y)))
    assert 0 < exact < 1e-27
    p, q = np.array([[P, 1 - P]]), np.array([[Q, 1 - Q]])  # 1 - P and 1 - Q are exact (Sterbenz)
    dp, dq = Distribution.from_probs(p), Distribution.from_probs(q)
    terms = 2 * abs(P * float(mpmath.log(x / y)))  # what the row sum cancels down from
    for got in (relative_entropy(dp, dq)[0], divergence_rows(dp, dq).kl_pq[0]):
        assert abs(got - exact) <= 4 * np.finfo(np.float64).eps * terms
    binary = relative_entropy(Distribution.from_probs(np.array([P])), Distribution.from_probs(np.array([Q])))
    assert abs(binary[0] - exact) <= 4 * np.finfo(np.float64).eps * terms


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_terms_are_within_a_few_ulps_of_mpmath(rng, dtype):
    """divergence_terms: each p log(p/q) and q log(q/p) of an N×2 batch, against mpmath."""
    p, q = _pairs(rng, dtype, n=200)
    pp, qq = np.stack([p, q], axis=1), np.stack([q, p], axis=1)  # rows need not be normalised here
    terms = divergence_terms(
        Distribution.from_probs(pp, eps=0, validate=False), Distribution.from_probs(qq, eps=0, validate=False)
    )
    exact = [
        mpmath.mpf(float(a)) * _mp_log_ratio(float(a), float(b))
        for a, b in zip(pp.ravel(), qq.ravel(), strict=True)
    ]
    assert _ulps(terms.kl_pq, exact, dtype).max() <= 4
    exact_qp = [
        mpmath.mpf(float(b)) * _mp_log_ratio(float(b), float(a))
        for a, b in zip(pp.ravel(), qq.ravel(), strict=True)
    ]
    assert _ulps(terms.kl_qp, exact_qp, dtype).max() <= 4
