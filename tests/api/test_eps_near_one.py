"""An `eps` just below 1 (valid: the document and the server take [0, 1)) on binary probabilities.

The contract test met it as a 500 on /v2/models/recalibrate/infer: the high-side clipping threshold
was searched 64 ulps from ``1 - eps`` and gave up. Every p and 1 - p below eps is raised to it, so
each loss is ``-log max(p_y, eps)`` by hand.
"""

import math

import pytest

EPS = 1 - 2**-52  # 0.9999999999999998
PROBS = [0.5, 1.0, 0.0, 0.25]
LABELS = [1, 1, 0, 0]


@pytest.mark.parametrize("form", ["list", "FP64"])
def test_binary_probs_with_eps_just_below_one_are_scored(client, form):
    probs = PROBS if form == "list" else {"datatype": "FP64", "shape": [4], "data": PROBS}
    response = client.post("/v1/cross-entropy", json={"probs": probs, "labels": LABELS, "eps": EPS})
    assert response.status_code == 200, response.text
    answer = response.json()
    chosen = [p if y == 1 else 1 - p for p, y in zip(PROBS, LABELS, strict=True)]  # 0.5, 1, 1, 0.75
    expected = sum(-math.log(max(p, EPS)) for p in chosen) / len(chosen)
    assert answer["loss"] == pytest.approx(expected, rel=1e-12, abs=0)
    assert answer["loss"] > 0  # two losses of -log(eps) = 2**-52, the others 0
    # p below eps: 0.5, 0.0, 0.25; 1 - p below eps: 0.5, 0.0, 0.75 (1 - 0.0 = 1 is not)
    assert answer["convention"]["n_clipped"] == 6


def test_fp32_probs_with_eps_just_below_one_are_scored(client):
    # in float32 eps rounds to 1.0: every p_y below 1 is raised to 1, so every loss is 0
    probs = {"datatype": "FP32", "shape": [4], "data": PROBS}
    response = client.post("/v1/cross-entropy", json={"probs": probs, "labels": LABELS, "eps": EPS})
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == 0.0
    assert response.json()["convention"]["n_clipped"] == 6


def test_recalibrate_inference_request_with_eps_just_below_one_is_answered(client):
    # the request the contract test met, reduced: binary probabilities on /v2/models/recalibrate/infer
    body = {
        "inputs": [
            {"name": "probs", "shape": [4], "datatype": "FP32", "data": PROBS},
            {"name": "labels", "shape": [4], "datatype": "INT64", "data": LABELS},
        ],
        "parameters": {"eps": EPS, "method": "isotonic"},
    }
    response = client.post("/v2/models/recalibrate/infer", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    outputs = {output["name"]: output["data"] for output in answer["outputs"]}
    # the same clipping as /v1/cross-entropy's FP32 answer above: six clipped, a loss of 0 before
    assert answer["parameters"]["n_clipped"] == 6
    assert outputs["before.nll"] == [0.0]
