"""Finite values whose sums or spans pass float64's range: the limits, not a warning (a 500 under tests).

A logit row spanning past the dtype's range (1.7e308 and -1.7e308) has ``z - max`` = -inf at the
small one: its probability 0, its log-probability -inf, its entropy term 0 (x·eˣ → 0). The fit
metrics' mean of NLLs near 1e308 is finite although their sum is not.
"""

import numpy as np
import pytest

from service.core import Distribution, fit_metrics
from service.core.logsumexp import softmax_summary


@pytest.mark.parametrize(("n", "k"), [(1, 3), (5, 3), (5, 40), (5000, 3), (5000, 40)])
def test_a_row_spanning_past_the_range_has_its_limits(n, k):
    # (5000 rows: the blocked pass; fewer: the whole-array pass)
    z = np.zeros((n, k))
    z[:, 0], z[:, 1] = 1.7e308, -1.7e308
    summary = softmax_summary(z, labels=np.full(n, 1))
    np.testing.assert_array_equal(summary.lse, np.full(n, 1.7e308))  # log Σ exp(z) = max + log 1
    np.testing.assert_array_equal(summary.entropy, np.zeros(n))  # one class holds all the mass
    np.testing.assert_array_equal(summary.picked, np.full(n, -np.inf))
    np.testing.assert_array_equal(summary.top, np.zeros(n))
    log_probs = Distribution.from_logits(z).log_probs
    assert np.all(log_probs[:, 0] == 0) and np.all(np.isneginf(log_probs[:, 1]))
    np.testing.assert_array_equal(log_probs[:, 2:], np.full((n, k - 2), -1.7e308))


def test_fit_metrics_mean_nll_past_the_sums_range_is_finite():
    log_probs = np.array([[-1e308, 0.0], [-1e308, 0.0], [-1.5e308, 0.0]])
    metrics = fit_metrics(log_probs, labels=np.array([0, 0, 0]))
    assert metrics.nll == pytest.approx(2 * (1e308 / 3) + 1.5e308 / 3, rel=1e-15)  # (their sum is not)
    weighted = fit_metrics(log_probs[:2], labels=np.array([0, 0]), sample_weight=np.array([1.0, 3.0]))
    assert weighted.nll == pytest.approx(1e308, rel=1e-15)


def test_cross_entropy_and_calibration_answer_such_a_row(client):
    # the contract test's 500 on /v2/models/calibration/infer, reduced: one row spanning past float64
    logits = [[1.7e308, -1.7e308, 0.0], [0.0, 1.0, 2.0]]
    answer = client.post("/v1/cross-entropy", json={"logits": logits, "labels": [1, 2], "per_sample": True})
    assert answer.status_code == 200, answer.text
    second = float(np.log(np.exp([0.0, 1.0, 2.0]).sum()) - 2.0)  # -log softmax([0, 1, 2])[2]
    assert answer.json()["losses"] == ["Infinity", pytest.approx(second, rel=1e-12)]
    calibration = client.post("/v1/calibration", json={"logits": logits, "labels": [1, 2]})
    assert calibration.status_code == 200, calibration.text
    # top-label ECE over 15 bins: row 0 says 1.0 and is wrong, row 1 says softmax([0, 1, 2])[2] and is right
    confidence = float(np.exp(-second))
    expected = (abs(0 - 1.0) + abs(1 - confidence)) / 2
    assert calibration.json()["metrics"]["ece"] == pytest.approx(expected, rel=1e-12)
