"""`sample_weight` on /v1/calibration: sums of weights, so integer weights repeat rows (#20)."""

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import brier_score_loss, log_loss

from tests.conftest import assert_problem

WEIGHTED = [
    "calibration_error",
    "ece",
    "mce",
    "rmsce",
    "ace_netcal",
    "debiased_l2",
    "brier",
    "nll",
    "accuracy",
]
WEIGHTED += ["mean_confidence", "confidence_gap"]


def _post(client, **body):
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("k", [2, 4])
def test_brier_and_nll_match_sklearn_sample_weight(client, rng, k):
    probs = softmax(2 * rng.standard_normal((300, k)), axis=1)
    labels = rng.integers(0, k, size=300)
    s = rng.uniform(0, 3, size=300)
    sent = probs[:, 1] if k == 2 else probs
    got = _post(client, probs=sent.tolist(), labels=labels.tolist(), sample_weight=s.tolist())
    expected = brier_score_loss(labels, sent, sample_weight=s, labels=list(range(k)))
    assert got["metrics"]["brier"] == pytest.approx(expected, rel=1e-12)
    assert got["metrics"]["nll"] == pytest.approx(log_loss(labels, probs, sample_weight=s), rel=1e-12)
    assert got["convention"]["sample_weight"] and got["metrics"]["smooth_ece"] is None


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"preset": "torchmetrics"},
        {"target": "classwise", "min_bin_count": 3},
        {"norm": "l2", "n_bins": 7},
    ],
)
def test_integer_weights_equal_repeated_rows(client, rng, options):
    logits = 2 * rng.standard_normal((120, 4))
    labels = rng.integers(0, 4, size=120)
    s = rng.integers(0, 4, size=120)
    got = _post(
        client, logits=logits.tolist(), labels=labels.tolist(), sample_weight=s.tolist(), top_k=[2], **options
    )
    repeated = _post(
        client,
        logits=np.repeat(logits, s, axis=0).tolist(),
        labels=np.repeat(labels, s).tolist(),
        top_k=[2],
        metrics=WEIGHTED,
        **options,
    )
    for name, value in repeated["metrics"].items():
        if value is None:
            assert got["metrics"][name] is None, name
        else:
            assert got["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    assert got["top_k_accuracy"]["2"] == pytest.approx(repeated["top_k_accuracy"]["2"], abs=1e-12)
    for name, values in (repeated["per_class"] or {}).items():
        np.testing.assert_allclose(got["per_class"][name], values, rtol=1e-9, atol=1e-12)


def test_weights_follow_the_rows_ignore_index_drops(client, rng):
    probs = softmax(rng.standard_normal((80, 3)), axis=1)
    labels = rng.integers(0, 3, size=80)
    s = rng.uniform(0, 2, size=80)
    padded = labels.copy()
    padded[::5] = -100
    kept = padded != -100
    got = _post(
        client, probs=probs.tolist(), labels=padded.tolist(), sample_weight=s.tolist(), ignore_index=-100
    )
    dropped = _post(
        client, probs=probs[kept].tolist(), labels=labels[kept].tolist(), sample_weight=s[kept].tolist()
    )
    assert got["metrics"] == dropped["metrics"] and got["n_ignored"] == 16


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"metrics": ["smooth_ece"]}, "does not apply to smooth_ece: built from the order"),
        ({"metrics": ["ece", "ace_nixon"]}, "does not apply to ace_nixon: .*no peer"),
        ({"metrics": ["ks", "spiegelhalter"]}, "does not apply to ks, spiegelhalter"),
        ({"sample_weight": [0.0, 0.0, 0.0]}, "positive total"),
        ({"sample_weight": [1e308, 1.0, 1e308]}, r"must keep N × max\(sample_weight\) finite"),
        ({"sample_weight": [1.0, -1.0, 1.0]}, "non-negative"),
        ({"sample_weight": [1.0, 1.0]}, "one weight per sample"),
    ],
)
def test_what_sample_weight_does_not_apply_to_is_a_problem_naming_it(client, options, match):
    body = {"probs": [0.2, 0.7, 0.9], "labels": [0, 1, 1], "sample_weight": [1.0, 2.0, 0.5], **options}
    body = assert_problem(client.post("/v1/calibration", json=body), 422, match=match)
    assert body["errors"][0]["pointer"].startswith("#/sample_weight")
