"""/v1/calibration with sample_weight and no binned metric (found by the #20 audit over HTTP)."""

import pytest
from sklearn.metrics import brier_score_loss


def _post(client, **body):
    response = client.post("/v1/calibration", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("metrics", [["brier"], ["nll"], ["accuracy", "mean_confidence"]])
def test_weighted_calibration_without_a_binned_metric_is_answered(client, rng, metrics):
    """Was a 500 (KeyError '_means'): with sample_weight, no binned metric skipped the bins."""
    p = rng.uniform(0.05, 0.95, size=80)
    y = (rng.uniform(size=80) < p).astype(int)
    w = rng.uniform(0.1, 2.0, size=80)
    got = _post(client, probs=p.tolist(), labels=y.tolist(), sample_weight=w.tolist(), metrics=metrics)
    if metrics == ["brier"]:
        assert got["metrics"]["brier"] == pytest.approx(brier_score_loss(y, p, sample_weight=w), rel=1e-12)
    assert got["metrics"]["ece"] is None
