"""/v1/divergence whose per-row divergences are finite but whose sum passes float64's range.

Found by the contract test: KL rows near 1e308 overflowed the float64 sum (an overflow warning, a
500 under the tests; in production the mean was inf). The sum is +inf, the value it has; the mean
is taken as Σ (v / n), finite.
"""

import mpmath
import numpy as np
import pytest

URL = "/v1/divergence"
GAP = 1.5e308  # q's second logit below its first: log q1 ≈ −1.5e308


def _kl_row() -> float:
    """KL([½, ½] ‖ softmax([0, −GAP])) to double precision, by mpmath."""
    mpmath.mp.prec = 200
    log_q0 = -mpmath.log1p(mpmath.exp(-mpmath.mpf(GAP)))
    log_q1 = -mpmath.mpf(GAP) + log_q0
    half = mpmath.mpf(1) / 2
    return float(half * (mpmath.log(half) - log_q0) + half * (mpmath.log(half) - log_q1))


def _post(client, p, q, reduction):
    response = client.post(URL, json={"p_probs": p, "q_logits": q, "reduction": reduction})
    assert response.status_code == 200, response.text
    return response.json()


def test_rows_whose_sum_passes_the_range(client):
    rows = 4  # 4 × 7.5e307 = 3e308
    p, q = [[0.5, 0.5]] * rows, [[0.0, -GAP]] * rows
    assert _post(client, p, q, "mean")["mean"]["kl_pq"] == pytest.approx(_kl_row(), rel=1e-15)
    assert _post(client, p, q, "sum")["sum"]["kl_pq"] in ("Infinity", float("inf"))


def test_token_sequences_whose_sums_pass_the_range(client):
    b, t = 2, 3  # a sequence's sum: 3 × 7.5e307 = 2.25e308
    p = np.full((b, t, 2), 0.5).tolist()
    q = np.broadcast_to([0.0, -GAP], (b, t, 2)).tolist()
    assert _post(client, p, q, "mean")["mean"]["kl_pq"] == pytest.approx(_kl_row(), rel=1e-15)
    answer = _post(client, p, q, "sum")
    assert answer["sum"]["kl_pq"] in ("Infinity", float("inf"))
    assert (
        answer["sequences"]["sum"]["kl_pq"] == ["Infinity"] * b
        or answer["sequences"]["sum"]["kl_pq"] == [float("inf")] * b
    )
