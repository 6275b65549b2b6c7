"""`sample_weight` on /v1/divergence: weighted reductions, per-row values unchanged (#20)."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax
from scipy.stats import entropy

from tests.conftest import assert_problem


def _post(client, body):
    response = client.post("/v1/divergence", json=body)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def pq(rng):
    p = softmax(rng.standard_normal((300, 5)), axis=1)
    q = softmax(rng.standard_normal((300, 5)), axis=1)
    return p, q, rng.uniform(0, 3, size=300)


def _torch_kl_rows(p, q):
    return torch.nn.functional.kl_div(torch.tensor(q).log(), torch.tensor(p), reduction="none").sum(1).numpy()


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum"])
def test_weighted_reductions_match_torch_and_scipy(client, pq, reduction):
    p, q, s = pq
    body = {"p_probs": p.tolist(), "q_probs": q.tolist(), "sample_weight": s.tolist(), "reduction": reduction}
    got = _post(client, body)
    stats = got["sum" if reduction == "sum" else "mean"]
    total = 1.0 if reduction == "sum" else s.sum()
    expected = {
        "kl_pq": _torch_kl_rows(p, q),
        "kl_qp": _torch_kl_rows(q, p),
        "js_divergence": jensenshannon(p, q, axis=1) ** 2,
        "js_distance": jensenshannon(p, q, axis=1),
        "entropy_p": entropy(p, axis=1),
        "entropy_q": entropy(q, axis=1),
        "cross_entropy_pq": entropy(p, axis=1) + entropy(p, q, axis=1),
    }
    for name, rows in expected.items():
        assert stats[name] == pytest.approx(np.dot(s, rows) / total, rel=1e-10), name
    assert got["convention"]["sample_weight"] is True
    unweighted = _post(client, {k: v for k, v in body.items() if k != "sample_weight"})
    assert unweighted["convention"]["sample_weight"] is False
    assert abs(unweighted[reduction.replace("batch", "")]["kl_pq"] - stats["kl_pq"]) > 1e-6


def test_per_row_values_and_terms_are_not_weighted(client, pq):
    p, q, s = pq
    body = {"p_probs": p.tolist(), "q_probs": q.tolist(), "reduction": "none", "elementwise": True}
    weighted = _post(client, body | {"sample_weight": s.tolist()})
    plain = _post(client, body)
    assert weighted["per_sample"] == plain["per_sample"]
    assert weighted["terms"] == plain["terms"]
    assert weighted["mean"] is None and weighted["sum"] is None


@pytest.mark.parametrize("side", ["p", "q"])
def test_one_row_broadcast_takes_one_weight_per_compared_row(client, pq, side):
    p, q, s = pq
    one = q[:1] if side == "q" else p[:1]
    body = (
        {"p_probs": p.tolist(), "q_probs": one.tolist()}
        if side == "q"
        else {
            "p_probs": one.tolist(),
            "q_probs": q.tolist(),
        }
    )
    got = _post(client, body | {"sample_weight": s.tolist(), "base": 2})
    full_p, full_q = (p, np.repeat(one, 300, 0)) if side == "q" else (np.repeat(one, 300, 0), q)
    assert got["convention"]["broadcast"] == side
    kl = entropy(full_p, full_q, axis=1, base=2)
    assert got["mean"]["kl_pq"] == pytest.approx(np.dot(s, kl) / s.sum(), rel=1e-10)
    assert_problem(
        client.post("/v1/divergence", json=body | {"sample_weight": [1.0]}), 422, "#/sample_weight"
    )


def test_zero_weights_equal_dropped_rows_even_an_infinite_one(client):
    p = [[1.0, 0.0], [0.3, 0.7], [0.5, 0.5]]
    q = [[0.0, 1.0], [0.6, 0.4], [0.2, 0.8]]  # row 0: KL(p‖q) = inf at eps 0
    got = _post(client, {"p_probs": p, "q_probs": q, "eps": 0, "sample_weight": [0.0, 1.0, 2.0]})
    alone = _post(client, {"p_probs": p[1:], "q_probs": q[1:], "eps": 0, "sample_weight": [1.0, 2.0]})
    assert got["mean"] == alone["mean"]
    assert got["mean"]["kl_pq"] == pytest.approx(
        (entropy(p[1], q[1]) + 2 * entropy(p[2], q[2])) / 3, rel=1e-12
    )


def test_integer_weights_equal_repeated_rows(client, pq, rng):
    p, q, _ = pq
    s = rng.integers(0, 4, size=300)
    weighted = _post(client, {"p_probs": p.tolist(), "q_probs": q.tolist(), "sample_weight": s.tolist()})
    repeated = _post(client, {"p_probs": np.repeat(p, s, 0).tolist(), "q_probs": np.repeat(q, s, 0).tolist()})
    assert weighted["mean"] == pytest.approx(repeated["mean"], rel=1e-12)


@pytest.mark.parametrize(
    ("weights", "pointer", "match"),
    [
        ([0.0, 0.0], "#/sample_weight", "positive sum"),
        ([1.0, -1.0], "#/sample_weight/1", "non-negative"),
        ([1.0, 2.0, 3.0], "#/sample_weight", "one weight per sample"),
    ],
)
def test_bad_weights_are_problems_naming_sample_weight(client, weights, pointer, match):
    body = {
        "p_probs": [[0.5, 0.5], [0.2, 0.8]],
        "q_probs": [[0.4, 0.6], [0.3, 0.7]],
        "sample_weight": weights,
    }
    assert_problem(client.post("/v1/divergence", json=body), 422, pointer, match)


@pytest.mark.parametrize("payload", ["json", "binary"])
def test_the_python_client_sends_weights_in_both_payloads(live_url, pq, payload):
    from service.client import XentClient

    p, q, s = pq
    with XentClient(live_url, payload=payload) as xent:
        got = xent.divergence(p_probs=p, q_probs=q, sample_weight=s, reduction="sum")
    assert got.convention.sample_weight
    assert got.sum.kl_pq == pytest.approx(np.dot(s, entropy(p, q, axis=1)), rel=1e-10)


def test_weights_as_a_binary_tensor(client, pq):
    from tests.api.test_payloads import binary_request

    p, q, s = pq
    content, headers = binary_request(
        [("p_probs", p, "FP64"), ("q_probs", q, "FP64"), ("sample_weight", s.astype(np.float32), "FP32")]
    )
    response = client.post("/v1/divergence", content=content, headers=headers)
    assert response.status_code == 200, response.text
    expected = np.dot(s.astype(np.float32), entropy(p, q, axis=1)) / s.astype(np.float32).sum(
        dtype=np.float64
    )
    assert response.json()["mean"]["kl_pq"] == pytest.approx(expected, rel=1e-10)
