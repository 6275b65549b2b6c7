"""Temperature fits on logits spanning past the square root of their dtype's range (contract test,
issue 21: a 500 from `exp(β z') z'²` overflowing float32) answer the fit the other rows decide."""

import numpy as np
import pytest
import scipy.optimize
import scipy.special

# Row 0 is right by a margin of 1e35: its loss and slope vanish at every β that is not tiny
ROWS = [[1e35, 0.0], [2.0, 0.0], [0.0, 2.0], [1.0, 0.0]]
LABELS = [0, 0, 1, 1]


def _optimum_of_the_other_rows() -> float:
    """T at the root of dL/dβ = mean(E_p[z] - z_y) over rows 1-3 (β = 1/T), by brentq."""
    z, y = np.array(ROWS[1:]), np.array(LABELS[1:])

    def slope(beta: float) -> float:
        p = scipy.special.softmax(beta * z, axis=1)
        return float(np.mean((p * z).sum(axis=1) - z[np.arange(3), y]))

    return 1.0 / scipy.optimize.brentq(slope, 1e-3, 10.0, xtol=1e-15, rtol=1e-15)


@pytest.mark.parametrize("datatype", ["FP32", "BF16", "FP64"])
def test_a_huge_margin_leaves_the_fit_to_the_other_rows(client, datatype):
    logits = {"datatype": datatype, "shape": [4, 2], "data": [v for row in ROWS for v in row]}
    response = client.post("/v1/temperature", json={"logits": logits, "labels": LABELS})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["converged"] and answer["reason"] == "optimum"
    assert answer["temperature"] == pytest.approx(_optimum_of_the_other_rows(), rel=1e-9)


@pytest.mark.parametrize(
    "datatype, big", [("FP32", 1.7e38), ("FP32", 3.4e38), ("BF16", 2.0**127), ("FP64", 1.7e308)]
)
def test_logits_spanning_past_their_dtypes_range_with_both_rows_wrong(client, datatype, big):
    """Both rows wrong: dL/dβ ≥ 0 at β = 0, so T = ∞ ("uninformative"); row 0's loss at T = 1 is
    2·big, past the dtype's range (+inf) when big is over half of it, and the NLL before is +inf."""
    logits = {"datatype": datatype, "shape": [2, 2], "data": [big, -big, 0.0, 1.0]}
    response = client.post("/v1/temperature", json={"logits": logits, "labels": [1, 0]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["reason"], answer["temperature"]) == ("uninformative", "Infinity")
    assert answer["after"]["nll"] == pytest.approx(np.log(2))
    finite = 2 * big < float(np.finfo(np.float32 if datatype != "FP64" else np.float64).max)
    expected = pytest.approx((2 * big + np.log1p(np.e)) / 2, rel=1e-6) if finite else "Infinity"
    assert answer["before"]["nll"] == expected  # rows: 2·big + log1p(e^(−2·big)) and log(1 + e)


@pytest.mark.parametrize("datatype, big", [("FP32", 3.4e38), ("BF16", 2.0**127), ("FP64", 1.7e308)])
def test_logits_spanning_past_their_dtypes_range_fit_as_halved(client, datatype, big):
    """Row 0 right by M = 2·big (past the dtype's range: z − max z = −inf), row 1 wrong by 1: the
    optimum solves M σ(−βM) = σ(β) (mpmath), and the fit of z/2 gives it: T is 1/β, within range."""
    import mpmath

    mpmath.mp.dps = 60
    dtype = np.float64 if datatype == "FP64" else np.float32
    m = 2 * mpmath.mpf(float(dtype(big)))

    def slope(u):  # 2 L'(β) at β = u / M
        return 1 / (1 + mpmath.exp(-u / m)) - m / (1 + mpmath.exp(u))

    beta = mpmath.findroot(slope, (mpmath.log(m), mpmath.log(4 * m)), solver="anderson") / m
    logits = {"datatype": datatype, "shape": [2, 2], "data": [big, -big, 0.0, 1.0]}
    response = client.post("/v1/temperature", json={"logits": logits, "labels": [0, 0]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["converged"], answer["reason"]) == (True, "optimum")
    assert answer["temperature"] == pytest.approx(float(1 / beta), rel=1e-9)
    assert answer["before"]["nll"] == pytest.approx(float(mpmath.log1p(mpmath.e)) / 2)  # row 1: log(1 + e)
    rel = 1e-9 if datatype == "FP64" else 1e-6  # (the metrics are computed in the dtype sent)
    assert answer["after"]["nll"] == pytest.approx(np.log(2) / 2, rel=rel)  # row 0: ~0, row 1: log 2


def test_row_sums_past_float64_keep_the_slopes_sign(client):
    """Row 0's labelled logit is its minimum, -1e308: dL/dβ at β = 0 is mean_c z' - z'_y = +2.5e307 there
    (Σ_c z' = -3e308 overflows float64 unless divided by K first), so the NLL falls as T grows: T = ∞."""
    logits = [[0.0, -1e308, -1e308, -1e308], [0.0, 1.0, 0.0, 0.0]]
    response = client.post("/v1/temperature", json={"logits": logits, "labels": [1, 1]})
    assert response.status_code == 200, response.text
    assert response.json()["reason"] == "uninformative"
    assert response.json()["temperature"] == "Infinity"


@pytest.mark.parametrize("datatype, big", [("FP32", 3.4e38), ("BF16", 2.0**127), ("FP64", 1.7e308)])
@pytest.mark.parametrize("labels", [[0, 0], [1, 0]])
def test_sequences_spanning_past_the_range_fit_as_their_rows_do(client, datatype, big, labels):
    """B×T×K logits are read halved as the N×K fit halves them: the same T, reason and NLLs."""
    data = [big, -big, 0.0, 1.0]
    rows = client.post(
        "/v1/temperature",
        json={"logits": {"datatype": datatype, "shape": [2, 2], "data": data}, "labels": labels},
    )
    tokens = client.post(
        "/v1/temperature",
        json={"logits": {"datatype": datatype, "shape": [1, 2, 2], "data": data}, "labels": [labels]},
    )
    assert rows.status_code == tokens.status_code == 200, tokens.text
    a, b = rows.json(), tokens.json()
    assert (b["reason"], b["converged"]) == (a["reason"], a["converged"])
    assert b["temperature"] == (
        a["temperature"] if isinstance(a["temperature"], str) else pytest.approx(a["temperature"], rel=1e-12)
    )
    assert b["after"]["nll"] == pytest.approx(a["after"]["nll"], rel=1e-6)
    assert (b["before"]["nll"] == "Infinity") == (a["before"]["nll"] == "Infinity")
