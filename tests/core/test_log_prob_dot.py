"""``Σ_c w[c] log p[c]`` from logits (label smoothing, soft targets) against log_softmax in float64.

Found by the contract test: logits near float32's limit with large class weights gave ``inf - inf``
(a NaN, a 500 under warnings-as-errors). The same shortcut, ``z @ w - lse · Σ w``, cancelled a large
common offset of the logits to noise (1e20 against 1e20): now every term is taken from ``z - max``.
"""

import numpy as np
import pytest
import scipy.special

from service.core import Distribution


def reference(z: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ w log_softmax(z) in float64 with 0 · (−inf) = 0, the shift exact (row maximum subtracted first)."""
    z = z.astype(np.float64)
    log_p = scipy.special.log_softmax(z - z.max(axis=1, keepdims=True), axis=1)
    w = np.broadcast_to(w, z.shape)
    return np.where(w != 0, w * log_p, 0.0).sum(axis=1)


@pytest.mark.parametrize("shape", ["vector", "matrix"])
def test_a_large_common_offset_of_the_logits_is_not_cancelled_to_noise(rng, shape):
    small = 3 * rng.standard_normal((50, 6))
    z = 1e20 + small * 2**14  # differences of tens of thousands, exact in float64 at this magnitude
    w = rng.random(6) if shape == "vector" else rng.random((50, 6))
    got = Distribution.from_logits(z).log_prob_dot(w)
    np.testing.assert_allclose(got, reference(z, w), rtol=1e-12)


def test_logits_near_the_float32_limit_with_large_weights():
    z = np.array([[3e38, 3e38, 0.0], [3.4e38, 1.0, -1.0]], np.float32)
    w = np.array([1e30, 1e30, 1e-3])
    got = Distribution.from_logits(z).log_prob_dot(w)  # no inf - inf (warnings are errors here)
    want = reference(z, w)
    assert np.all(np.isfinite(got)) and np.allclose(got, want, rtol=1e-6)


def test_a_row_past_the_range_has_the_exact_value_where_it_fits():
    """z − m past float32's range for the far class: its term w·(z − m) still fits (0.5 · −6e38)."""
    z = np.array([[3e38, -3e38, 0.0], [3e38, -3e38, 0.0], [1.0, 2.0, 3.0]], np.float32)
    w = np.array([[0.1, 0.0, 0.2], [0.1, 0.5, 0.2], [0.3, 0.3, 0.3]])
    got = Distribution.from_logits(z, validate=False).log_prob_dot(w)
    np.testing.assert_allclose(got, reference(z, w), rtol=1e-6)
    huge = np.array([1e300, 1e300, 1e300])  # a term past float64's range: −inf, the limit
    assert Distribution.from_logits(z[:2], validate=False).log_prob_dot(huge)[1] == -np.inf
    # a term that overflows though z − m does not (the batch spans elsewhere): −inf, not inf − inf
    z2 = np.array([[3e38, -3e38, 0.0], [3e38, 1e38, 0.0]], np.float32)
    assert Distribution.from_logits(z2, validate=False).log_prob_dot(huge)[1] == -np.inf
