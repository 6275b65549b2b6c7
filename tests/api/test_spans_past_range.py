"""Logit rows spanning past their dtype's range (``z − max z`` overflows to −inf) score as their
limits: probability 0 there, a loss of +inf for a label there, 0 for one at the top, entropy 0 — no
500 (a RuntimeWarning under the tests' warnings-as-errors) and no NaN (``0 · −inf`` in the entropy).

Found by the contract test's draws (issue 21); production answered ``"mean_entropy": "NaN"``.
"""

import numpy as np
import pytest
from scipy.special import log_softmax
from scipy.stats import entropy

# (datatype, a logit `big` whose row [big, −big, 0] spans past the dtype's range: 2·big > max)
SPANS = [("FP64", 1.7e308), ("FP32", 3e38), ("BF16", 2.0**127)]
OTHER = [0.0, 1.0, 2.0]  # an ordinary row, scored by scipy below


def _tensor(datatype: str, rows: list[list[float]]) -> dict:
    return {"datatype": datatype, "shape": [len(rows), len(rows[0])], "data": [v for r in rows for v in r]}


def _rel(datatype: str) -> float:
    return 1e-12 if datatype == "FP64" else 1e-6


@pytest.mark.parametrize("datatype, big", SPANS)
def test_cross_entropy_of_a_row_spanning_past_the_range(client, datatype, big):
    rows = [[big, -big, 0.0], [big, -big, 0.0], OTHER]
    body = {"logits": _tensor(datatype, rows), "labels": [0, 1, 2], "per_sample": True}
    response = client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    other = -log_softmax(OTHER)[2]
    assert answer["losses"][0] == 0.0  # log Σ exp(z − big) = log1p(e^(−2·big) + e^(−big)) = 0
    assert answer["losses"][1] == "Infinity"  # 2·big + …, past the dtype's range
    assert answer["losses"][2] == pytest.approx(other, rel=_rel(datatype))
    assert answer["loss"] == "Infinity"
    assert answer["accuracy"] == pytest.approx(2 / 3)
    # entropy: 0 for both spanning rows (p = [1, 0, 0]), scipy's for the other
    assert answer["mean_entropy"] == pytest.approx(
        entropy(np.exp(log_softmax(OTHER))) / 3, rel=_rel(datatype)
    )


@pytest.mark.parametrize("datatype, big", SPANS)
def test_calibration_of_rows_spanning_past_the_range_equals_that_of_their_limit(client, datatype, big):
    """[big, −big, 0] has p = [1, 0, 0] in any float: every metric but the NLL is that of [60, −60, 0]
    (e^−60 is below half an ulp of 1 in float64, so p rounds to [1, 0, 0] there too)."""
    labels = [0, 1, 2]
    spanning = client.post(
        "/v1/calibration",
        json={"logits": _tensor(datatype, [[big, -big, 0.0], [big, -big, 0.0], OTHER]), "labels": labels},
    )
    limit = client.post(
        "/v1/calibration",
        json={"logits": _tensor(datatype, [[60.0, -60.0, 0.0], [60.0, -60.0, 0.0], OTHER]), "labels": labels},
    )
    assert spanning.status_code == limit.status_code == 200, spanning.text
    a, b = spanning.json(), limit.json()
    assert "NaN" not in spanning.text
    metrics = b["metrics"]
    assert metrics.keys() == a["metrics"].keys() and {"ece", "mce", "brier", "smooth_ece"} <= metrics.keys()
    assert a["metrics"]["nll"] == "Infinity"  # row 1's label lies 2·big below the top (60: 120)
    for name, value in metrics.items():
        if name == "nll":
            continue
        assert a["metrics"][name] == pytest.approx(value, rel=_rel(datatype), abs=1e-12), name


@pytest.mark.parametrize(
    "targets, loss", [([1, 0, 0], 0.0), ([0.5, 0, 0.5], 0.85e308), ([0.5, 0.5, 0], 1.7e308)]
)
def test_soft_targets_on_a_row_spanning_past_the_range_have_the_exact_loss(client, targets, loss):
    """−Σ t log p on [1.7e308, −1.7e308, 0]: log p = [0, −3.4e308, −1.7e308], so t = [½, ½, 0] gives
    1.7e308, finite although log p₁ is not: the loss is t·z − log-sum-exp, never log p₁ itself."""
    rows = [[1.7e308, -1.7e308, 0.0], OTHER]
    body = {"logits": _tensor("FP64", rows), "targets": [targets, [0, 0, 1]], "per_sample": True}
    response = client.post("/v1/cross-entropy", json=body)
    assert response.status_code == 200, response.text
    losses = response.json()["losses"]
    assert losses[0] == pytest.approx(loss, rel=1e-15)
    assert losses[1] == pytest.approx(-log_softmax(OTHER)[2], rel=1e-12)


@pytest.mark.parametrize("method", ["vector", "matrix"])
def test_affine_maps_refuse_logits_their_fit_would_overflow(client, method):
    rows = [[1e200, 0.0, 0.0], OTHER, [2.0, 1.0, 0.0]]
    response = client.post("/v1/recalibrate", json={"logits": rows, "labels": [0, 1, 1], "method": method})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["pointer"] == "#/logits" and "±2**500" in error["detail"]
    rows[0][0] = 2.0**500  # the bound itself is fitted
    assert (
        client.post(
            "/v1/recalibrate", json={"logits": rows, "labels": [0, 1, 1], "method": method}
        ).status_code
        == 200
    )


def test_an_affine_map_taking_a_row_past_the_range_is_refused_naming_it(client):
    rows = [OTHER, [1.7e308, -1.7e308, 0.0]]
    parameters = {"method": "vector", "scale": [2.0, 2.0, 2.0], "bias": [0.0, 0.0, 0.0]}
    response = client.post("/v1/apply", json={"logits": rows, "parameters": parameters})
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["pointer"] == "#/parameters" and "row 1 past float64's range" in error["detail"]
    parameters["scale"] = [0.5, 0.5, 0.5]  # within range: scipy's log_softmax of the mapped rows
    response = client.post("/v1/apply", json={"logits": rows, "parameters": parameters})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(
        response.json()["probs"], np.exp(log_softmax(np.array(rows) * 0.5, axis=1)), rtol=1e-12
    )


@pytest.mark.parametrize("datatype, big", SPANS[:2])  # (BF16 rounds the other rows: covered above)
def test_a_large_batch_with_a_row_spanning_past_the_range(client, rng, datatype, big):
    """The blocked pass (over ~4,000 values) shifts each block in place: the spanning row's −inf
    leaves the other rows' values as scipy's, and its entropy is 0."""
    z = rng.standard_normal((600, 10))
    z[0] = [big, -big] + [0.0] * 8
    labels = rng.integers(0, 10, 600)
    labels[0] = 0
    body = {"logits": _tensor(datatype, z.tolist()), "labels": labels.tolist(), "per_sample": True}
    answer = client.post("/v1/cross-entropy", json=body)
    assert answer.status_code == 200, answer.text
    sent = np.array(
        _tensor(datatype, z.tolist())["data"], dtype=np.float32 if datatype != "FP64" else np.float64
    )
    if datatype == "BF16":  # (the server reads BF16 as float32's upper half)
        sent = (sent.view(np.uint32) & 0xFFFF0000).view(np.float32)
    rows = sent.reshape(600, 10)[1:].astype(np.float64)
    expected = -log_softmax(rows, axis=1)[np.arange(599), labels[1:]]
    losses = answer.json()["losses"]
    assert losses[0] == 0.0
    np.testing.assert_allclose(
        losses[1:], expected, rtol=_rel(datatype) * 10, atol=1e-6 if datatype != "FP64" else 0
    )
    entropies = entropy(np.exp(log_softmax(rows, axis=1)), axis=1)
    assert answer.json()["mean_entropy"] == pytest.approx(entropies.sum() / 600, rel=_rel(datatype) * 10)
