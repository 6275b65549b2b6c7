"""/v1/divergence: reduction, elementwise terms, one-row broadcasting, any log base (issue #20)."""

import numpy as np
import pytest
import scipy.special as sp
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.stats import entropy as scipy_entropy

from service.client.encoding import decode_response
from tests.conftest import assert_problem


def _pq(rng, n=40, k=5):
    return sp.softmax(rng.standard_normal((n, k)), axis=1), sp.softmax(
        2 * rng.standard_normal((n, k)), axis=1
    )


def _post(client, p, q, **options):
    response = client.post("/v1/divergence", json={"p_probs": p.tolist(), "q_probs": q.tolist(), **options})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("reduction", ["mean", "batchmean", "sum"])
def test_reduction_matches_torch_kl_div(client, rng, reduction):
    p, q = _pq(rng)
    got = _post(client, p, q, reduction=reduction)
    torch_reduction = "sum" if reduction == "sum" else "batchmean"
    expected = F.kl_div(torch.log(torch.from_numpy(q)), torch.from_numpy(p), reduction=torch_reduction).item()
    reduced = got["sum"] if reduction == "sum" else got["mean"]
    assert (got["mean"] is None) == (reduction == "sum") and (got["sum"] is None) == (reduction != "sum")
    assert reduced["kl_pq"] == pytest.approx(expected, rel=1e-12)
    assert got["convention"]["reduction"] == reduction
    if reduction == "sum":  # PyTorch's elementwise reduction="mean" is the sum over N·K elements
        with pytest.warns(UserWarning, match="batchmean"):
            by_element = F.kl_div(
                torch.log(torch.from_numpy(q)), torch.from_numpy(p), reduction="mean"
            ).item()
        assert reduced["kl_pq"] / p.size == pytest.approx(by_element, rel=1e-12)
        assert reduced["entropy_p"] == pytest.approx(scipy_entropy(p, axis=1).sum(), rel=1e-12)


def test_reduction_none_returns_rows_only(client, rng):
    p, q = _pq(rng)
    got = _post(client, p, q, reduction="none")
    assert got["mean"] is None and got["sum"] is None
    np.testing.assert_allclose(got["per_sample"]["kl_pq"], sp.rel_entr(p, q).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got["per_sample"]["js_distance"], jensenshannon(p, q, axis=1), rtol=1e-12)


def test_elementwise_terms_match_rel_entr_and_torch(client, rng):
    p, q = _pq(rng)
    p[0, 1], p[0] = 0.0, p[0] / p[0].sum()  # an exact zero: 0 · log 0 = 0
    p[0] /= p[0].sum()
    got = _post(client, p, q, elementwise=True)
    terms = got["terms"]
    np.testing.assert_allclose(terms["kl_pq"], sp.rel_entr(p, q), rtol=1e-13, atol=1e-17)
    by_torch = F.kl_div(torch.log(torch.from_numpy(q)), torch.from_numpy(p), reduction="none").numpy()
    np.testing.assert_allclose(terms["kl_pq"], by_torch, rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(terms["kl_qp"], sp.rel_entr(q, p), rtol=1e-13, atol=1e-17)
    m = (p + q) / 2
    np.testing.assert_allclose(
        terms["js_divergence"], (sp.rel_entr(p, m) + sp.rel_entr(q, m)) / 2, rtol=1e-12, atol=1e-17
    )
    np.testing.assert_allclose(np.sum(terms["kl_pq"], axis=1).mean(), got["mean"]["kl_pq"], rtol=1e-13)
    assert got["convention"]["elementwise"]


def test_elementwise_terms_as_binary_tensors(client, rng):
    p, q = _pq(rng, n=6, k=3)
    body = {"p_probs": p.tolist(), "q_probs": q.tolist(), "elementwise": True, "binary_data_output": True}
    response = client.post("/v1/divergence", json=body)
    assert response.headers["content-type"] == "application/octet-stream"
    decoded = decode_response(response.content, response.headers["Inference-Header-Content-Length"])
    np.testing.assert_allclose(decoded["terms"]["kl_pq"], sp.rel_entr(p, q), rtol=1e-13)
    assert decoded["terms"]["kl_pq"].shape == (6, 3)


@pytest.mark.parametrize("side", ["q", "p"])
def test_one_row_broadcasts_against_every_row(client, rng, side):
    p, q = _pq(rng)
    if side == "q":
        q = q[:1]
    else:
        p = p[:1]
    got = _post(client, p, q, per_sample=True, elementwise=True)
    assert got["n"] == 40 and got["convention"]["broadcast"] == side
    np.testing.assert_allclose(got["per_sample"]["kl_pq"], sp.rel_entr(p, q).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(got["terms"]["kl_qp"], sp.rel_entr(q, p) + 0 * p * q, rtol=1e-12)
    np.testing.assert_allclose(
        got["per_sample"]["entropy_q"], scipy_entropy(np.broadcast_to(q, (40, 5)), axis=1)
    )


def test_one_logits_row_broadcasts(client, rng):
    zp, zq = rng.standard_normal((9, 4)), rng.standard_normal((1, 4))
    body = {"p_logits": zp.tolist(), "q_logits": zq.tolist(), "per_sample": True}
    got = client.post("/v1/divergence", json=body).json()
    expected = sp.rel_entr(sp.softmax(zp, axis=1), sp.softmax(zq, axis=1)).sum(axis=1)
    np.testing.assert_allclose(got["per_sample"]["kl_pq"], expected, rtol=1e-12)


@pytest.mark.parametrize("base", [3, 0.5, 1.7, 2, 10])
def test_any_log_base_matches_scipy_entropy(client, rng, base):
    p, q = _pq(rng)
    got = _post(client, p, q, base=base, per_sample=True)
    np.testing.assert_allclose(got["per_sample"]["kl_pq"], scipy_entropy(p, q, base=base, axis=1), rtol=1e-12)
    np.testing.assert_allclose(
        got["per_sample"]["entropy_q"], scipy_entropy(q, base=base, axis=1), rtol=1e-12
    )
    assert got["convention"]["base"] == base
    assert got["convention"]["unit"] == {2: "bits", 10: "hartleys"}.get(base, f"log base {base:g}")


@pytest.mark.parametrize(
    ("options", "pointer"),
    [
        ({"base": 1}, "#/base"),
        ({"base": 0}, "#/base"),
        ({"base": -2}, "#/base"),
        ({"base": "ten"}, "#/base"),
        ({"reduction": "max"}, "#/reduction"),
        ({"elementwise": "yes please"}, "#/elementwise"),
    ],
)
def test_bad_divergence_options_are_problems_naming_them(client, options, pointer):
    body = {"p_probs": [[0.5, 0.5]], "q_probs": [[0.25, 0.75]], **options}
    assert_problem(client.post("/v1/divergence", json=body), 422, pointer)
