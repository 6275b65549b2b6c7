import numpy as np
import pytest
from scipy.special import log_softmax
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from service.core import fit_metrics


def guo_ece(probs, labels, n_bins=15):
    """ECE as in Guo et al. 2017's reference code: bins (lower, upper], a loop over bins."""
    confidences = probs.max(axis=1)
    accuracies = probs.argmax(axis=1) == labels
    edges = np.linspace(0, 1, n_bins + 1)
    ece = 0.0
    for lower, upper in zip(edges[:-1], edges[1:], strict=True):
        in_bin = (confidences > lower) & (confidences <= upper)
        if in_bin.any():
            ece += in_bin.mean() * abs(accuracies[in_bin].mean() - confidences[in_bin].mean())
    return ece


def test_fit_metrics_match_sklearn_and_guo(rng):
    log_probs = log_softmax(2 * rng.standard_normal((500, 4)), axis=1)
    labels = rng.integers(0, 4, 500)
    probs = np.exp(log_probs)
    m = fit_metrics(log_probs, labels=labels)
    assert m.nll == pytest.approx(log_loss(labels, probs, labels=range(4)), rel=1e-12)
    assert m.brier == pytest.approx(brier_score_loss(labels, probs, labels=range(4)), rel=1e-12)
    assert m.accuracy == accuracy_score(labels, probs.argmax(axis=1))
    assert m.ece == pytest.approx(guo_ece(probs, labels), rel=1e-12)


def test_fit_metrics_binary_brier_is_sklearns(rng):
    p = rng.random(300)
    labels = (rng.random(300) < p).astype(int)
    m = fit_metrics(np.log(np.stack([1 - p, p], axis=1)), labels=labels)
    assert m.brier == pytest.approx(brier_score_loss(labels, p), rel=1e-12)


def test_fit_metrics_hard_targets_equal_labels(rng):
    log_probs = log_softmax(rng.standard_normal((50, 3)), axis=1)
    labels = rng.integers(0, 3, 50)
    assert fit_metrics(log_probs, targets=np.eye(3)[labels]) == pytest.approx(
        fit_metrics(log_probs, labels=labels)
    )
