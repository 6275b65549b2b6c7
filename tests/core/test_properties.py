"""Identities of DESIGN.md, checked on generated data."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from service.core import (
    Distribution,
    cross_entropy,
    cross_entropy_rows,
    entropy,
    js_divergence,
    kl_divergence,
    soft_cross_entropy,
)

shapes = st.tuples(st.integers(1, 16), st.integers(2, 8))
logit_arrays = shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(-1e4, 1e4)))
moderate_logits = shapes.flatmap(lambda s: arrays(np.float64, s, elements=st.floats(-30, 30)))


def _probabilities(shape):
    """Rows of non-negative weights (with exact zeros) normalised to sum to one."""
    weights = arrays(np.float64, shape, elements=st.one_of(st.just(0.0), st.floats(1e-6, 1.0)))
    return weights.filter(lambda w: bool((w.sum(axis=1) > 0).all())).map(
        lambda w: w / w.sum(axis=1, keepdims=True)
    )


prob_pairs = shapes.flatmap(lambda s: st.tuples(_probabilities(s), _probabilities(s)))


@given(logits=logit_arrays, shift=st.floats(-1e3, 1e3), data=st.data())
def test_cross_entropy_is_invariant_to_row_shift(logits, shift, data):
    labels = data.draw(arrays(np.int64, len(logits), elements=st.integers(0, logits.shape[1] - 1)))
    np.testing.assert_allclose(
        cross_entropy(labels, logits + shift), cross_entropy(labels, logits), rtol=1e-9, atol=1e-6
    )


@given(logits=logit_arrays, data=st.data())
def test_cross_entropy_is_finite_and_non_negative(logits, data):
    labels = data.draw(arrays(np.int64, len(logits), elements=st.integers(0, logits.shape[1] - 1)))
    losses = cross_entropy(labels, logits)
    assert np.isfinite(losses).all()
    assert (losses >= 0).all()


@given(pair=prob_pairs)
def test_cross_entropy_is_entropy_plus_kl(pair):
    p, q = pair
    dp, dq = Distribution.from_probs(p), Distribution.from_probs(q)
    ce = cross_entropy_rows(dp.probs, dq.log_probs)
    np.testing.assert_allclose(
        ce,
        entropy(dp.probs, dp.log_probs) + kl_divergence(dp.probs, dp.log_probs, dq.log_probs),
        rtol=1e-9,
        atol=1e-12,
    )
    np.testing.assert_allclose(soft_cross_entropy(p, dq), ce, rtol=1e-12)


@given(zp=moderate_logits, data=st.data())
def test_cross_entropy_is_entropy_plus_kl_from_logits(zp, data):
    zq = data.draw(arrays(np.float64, zp.shape, elements=st.floats(-30, 30)))
    dp, dq = Distribution.from_logits(zp), Distribution.from_logits(zq)
    np.testing.assert_allclose(
        cross_entropy_rows(dp.probs, dq.log_probs),
        entropy(dp.probs, dp.log_probs) + kl_divergence(dp.probs, dp.log_probs, dq.log_probs),
        rtol=1e-9,
        atol=1e-9,
    )


@given(pair=prob_pairs)
def test_kl_is_non_negative_and_zero_on_itself(pair):
    p, q = pair
    dp, dq = Distribution.from_probs(p), Distribution.from_probs(q)
    assert (kl_divergence(dp.probs, dp.log_probs, dq.log_probs) >= -1e-12).all()
    np.testing.assert_array_equal(kl_divergence(dp.probs, dp.log_probs, dp.log_probs), 0.0)


@settings(max_examples=200)
@given(pair=prob_pairs)
def test_js_is_bounded_by_log_two_and_symmetric(pair):
    p, q = pair
    dp, dq = Distribution.from_probs(p, eps=0), Distribution.from_probs(q, eps=0)
    js = js_divergence(dp.probs, dq.probs)
    assert (js >= 0).all()
    assert (js <= np.log(2) * (1 + 1e-12)).all()
    np.testing.assert_allclose(js, js_divergence(dq.probs, dp.probs), atol=1e-15)
