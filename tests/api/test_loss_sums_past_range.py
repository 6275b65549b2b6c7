"""Losses whose sum passes float64's range (``pos_weight`` near 1e308): the mean is the mean, the sum +inf.

Found by the contract test's draws (issue 21): ``pos_weight: 1.6e308`` on /v2/models/cross-entropy/infer
was a 500 under the tests' warnings-as-errors (the float64 sum overflowed); in production the mean of
finite losses near 1e308 was answered ``"Infinity"`` (PyTorch, which sums first, answers inf too).
"""

import math

import mpmath
import pytest

POS_WEIGHT = 1e308
N = 3  # N · pos_weight · ln 2 = 2.08e308: past float64's range; pos_weight · ln 2 = 6.9e307 is not


def _exact_losses() -> list[mpmath.mpf]:
    # BCE with logits, y = 1, z = 0: pos_weight · softplus(−0) = pos_weight · ln 2 (torch's definition)
    return [mpmath.mpf(POS_WEIGHT) * mpmath.log(2) for _ in range(N)]


def _body(reduction: str) -> dict:
    return {"logits": [0.0] * N, "labels": [1] * N, "pos_weight": POS_WEIGHT, "reduction": reduction}


def test_the_mean_of_losses_whose_sum_overflows_is_their_mean(client):
    mpmath.mp.dps = 40
    exact = mpmath.fsum(_exact_losses()) / N
    response = client.post("/v1/cross-entropy", json=_body("mean"))
    assert response.status_code == 200, response.text
    loss = response.json()["loss"]
    assert isinstance(loss, float) and math.isfinite(loss)
    assert loss == pytest.approx(float(exact), rel=1e-15)


def test_a_sum_past_float64s_range_is_infinity(client):
    mpmath.mp.dps = 40
    assert mpmath.fsum(_exact_losses()) > mpmath.mpf(1.7976931348623157e308)  # (no float64 holds it)
    response = client.post("/v1/cross-entropy", json=_body("sum"))
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == "Infinity"


def test_the_inference_route_answers_the_same_mean(client):
    body = {
        "inputs": [
            {"name": "logits", "datatype": "FP64", "shape": [N], "data": [0.0] * N},
            {"name": "labels", "datatype": "INT64", "shape": [N], "data": [1] * N},
        ],
        "parameters": {"pos_weight": POS_WEIGHT},
    }
    response = client.post("/v2/models/cross-entropy/infer", json=body)
    assert response.status_code == 200, response.text
    loss = next(o for o in response.json()["outputs"] if o["name"] == "loss")["data"][0]
    assert loss == pytest.approx(float(mpmath.fsum(_exact_losses()) / N), rel=1e-15)
