import numpy as np
import pytest
import scipy.special as sp
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from tests.conftest import assert_problem

URL = "/v1/divergence"


def test_divergence_matches_scipy(client, rng):
    p = sp.softmax(rng.standard_normal((20, 5)), axis=1)
    q = sp.softmax(rng.standard_normal((20, 5)), axis=1)
    body = client.post(URL, json={"p_probs": p.tolist(), "q_probs": q.tolist(), "per_sample": True}).json()
    rows = body["per_sample"]
    np.testing.assert_allclose(rows["kl_pq"], sp.rel_entr(p, q).sum(1), rtol=1e-12)
    np.testing.assert_allclose(rows["kl_qp"], sp.rel_entr(q, p).sum(1), rtol=1e-12)
    np.testing.assert_allclose(rows["js_distance"], jensenshannon(p, q, axis=1), rtol=1e-10)
    np.testing.assert_allclose(rows["entropy_p"], scipy_entropy(p, axis=1), rtol=1e-12)
    np.testing.assert_allclose(rows["entropy_q"], scipy_entropy(q, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        rows["cross_entropy_pq"], scipy_entropy(p, axis=1) + sp.rel_entr(p, q).sum(1), rtol=1e-12
    )
    assert body["mean"]["kl_pq"] == pytest.approx(sp.rel_entr(p, q).sum(1).mean(), rel=1e-12)
    assert body["mean"]["js_divergence"] == pytest.approx(
        np.mean(jensenshannon(p, q, axis=1) ** 2), rel=1e-10
    )
    assert body["n"] == 20


def test_divergence_from_logits_in_bits(client, rng):
    zp, zq = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    body = client.post(URL, json={"p_logits": zp.tolist(), "q_logits": zq.tolist(), "base": 2}).json()
    p, q = sp.softmax(zp, axis=1), sp.softmax(zq, axis=1)
    assert body["mean"]["kl_pq"] == pytest.approx(sp.rel_entr(p, q).sum(1).mean() / np.log(2), rel=1e-12)
    assert body["mean"]["js_distance"] == pytest.approx(jensenshannon(p, q, axis=1, base=2).mean(), rel=1e-10)
    assert body["convention"]["unit"] == "bits"
    assert body["convention"]["p"] == "logits"


def test_disjoint_support_js_is_log_two_and_kl_infinite_at_eps_zero(client):
    body = client.post(URL, json={"p_probs": [[1.0, 0.0]], "q_probs": [[0.0, 1.0]], "eps": 0}).json()
    assert body["mean"]["js_divergence"] == pytest.approx(np.log(2), rel=1e-15)
    assert body["mean"]["kl_pq"] == "Infinity"
    assert body["mean"]["kl_qp"] == "Infinity"
    assert body["mean"]["entropy_p"] == 0.0


def test_default_eps_bounds_kl(client):
    body = client.post(URL, json={"p_probs": [[1.0, 0.0]], "q_probs": [[0.0, 1.0]]}).json()
    assert body["mean"]["kl_pq"] == pytest.approx(-np.log(np.finfo(float).eps), rel=1e-12)
    assert body["convention"]["n_clipped"] == 2


def test_binary_vectors_are_bernoulli(client):
    body = client.post(URL, json={"p_probs": [0.3], "q_probs": [0.6]}).json()
    p, q = np.array([0.7, 0.3]), np.array([0.4, 0.6])
    assert body["mean"]["kl_pq"] == pytest.approx(sp.rel_entr(p, q).sum(), rel=1e-12)


@pytest.mark.parametrize(
    ("body", "pointer", "match"),
    [
        ({"p_probs": [[0.5, 0.5]]}, "#/q_logits", "got neither"),
        ({"p_probs": [[0.5, 0.5]], "p_logits": [[0, 0]], "q_probs": [[0.5, 0.5]]}, "#/p_probs", "got both"),
        (  # neither side one row: no broadcasting
            {"p_probs": [[0.5, 0.5]] * 2, "q_probs": [[0.5, 0.5]] * 3},
            "#/q_probs",
            "must have the shape",
        ),
        ({"p_probs": [[0.5, 0.5]], "q_probs": [[0.2, 0.2, 0.6]]}, "#/q_probs", "must have the shape"),
        ({"p_probs": [[0.5, 0.6]], "q_probs": [[0.5, 0.5]]}, "#/p_probs/0", "must sum to 1"),
        ({"p_probs": [[0.5, 0.5]], "q_probs": [[0.5, 0.5]], "labels": [0]}, "#/labels", "Extra inputs"),
    ],
)
def test_bad_divergence_input_is_problem_json(client, body, pointer, match):
    assert_problem(client.post(URL, json=body), 422, pointer, match)
