"""/v1/divergence with B×T×K token sequences: teacher vs student per position, with a mask."""

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.spatial.distance import jensenshannon
from scipy.special import softmax

from tests.conftest import assert_problem

URL = "/v1/divergence"
DOCUMENT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def _conforms(answer: dict) -> bool:
    """Whether an answer is valid against the committed document's DivergenceResult."""
    components = json.loads(DOCUMENT.read_text())["components"]
    schema = {**components["schemas"]["DivergenceResult"], "components": components}
    return jsonschema.Draft202012Validator(schema).is_valid(answer)


def _pair(rng, b=3, t=8, k=7):
    teacher = 2.0 * rng.standard_normal((b, t, k))
    student = teacher + rng.standard_normal((b, t, k))
    mask = np.ones((b, t), np.int64)
    mask[0, -3:] = 0
    return teacher, student, mask


def test_distillation_kl_matches_torch_and_the_flattened_rows(client, rng):
    teacher, student, mask = _pair(rng)
    body = {
        "p_logits": teacher.tolist(),
        "q_logits": student.tolist(),
        "mask": mask.tolist(),
        "per_sample": True,
    }
    got = client.post(URL, json=body)
    assert got.status_code == 200, got.text
    answer = got.json()
    keep = mask.astype(bool)
    # torch's distillation loss: kl_div(log q, log p, log_target) summed over the vocabulary
    t_log = F.log_softmax(torch.from_numpy(teacher), -1)
    s_log = F.log_softmax(torch.from_numpy(student), -1)
    kl = F.kl_div(s_log, t_log, log_target=True, reduction="none").sum(-1).numpy()
    assert answer["n"] == keep.sum()
    assert answer["mean"]["kl_pq"] == pytest.approx(kl[keep].mean(), rel=1e-12)
    seq = answer["sequences"]
    assert seq["n_sequences"] == 3 and seq["n_ignored"] == 3 and seq["tokens"] == keep.sum(1).tolist()
    np.testing.assert_allclose(seq["sum"]["kl_pq"], np.where(keep, kl, 0).sum(1), rtol=1e-12)
    js = jensenshannon(softmax(teacher, -1), softmax(student, -1), axis=-1) ** 2
    np.testing.assert_allclose(seq["sum"]["js_divergence"], np.where(keep, js, 0).sum(1), rtol=1e-9)
    np.testing.assert_allclose(answer["per_sample"]["kl_pq"], np.where(keep, kl, 0), rtol=1e-12, atol=1e-15)
    # (B×T per position, as the document states: it said N, found by the contract test)
    assert _conforms(answer)
    # the N×K route on the scored rows gives the same means
    flat = client.post(
        URL, json={"p_logits": teacher[keep].tolist(), "q_logits": student[keep].tolist()}
    ).json()
    for name, value in flat["mean"].items():
        assert answer["mean"][name] == pytest.approx(value, rel=1e-12), name


def test_sequence_probabilities_in_bits_with_reduction_sum(client, rng):
    teacher, student, _ = _pair(rng)
    p, q = softmax(teacher, -1), softmax(student, -1)
    answer = client.post(
        URL, json={"p_probs": p.tolist(), "q_logits": student.tolist(), "base": 2, "reduction": "sum"}
    ).json()
    kl = (p * (np.log(p) - np.log(q))).sum(-1) / np.log(2)
    assert answer["sum"]["kl_pq"] == pytest.approx(kl.sum(), rel=1e-9)
    assert answer["mean"] is None and answer["n"] == p.shape[0] * p.shape[1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.update(q_logits=np.zeros((3, 8, 6)).tolist()), "q_logits"),
        (lambda b: b.update(mask=[[1] * 7] * 3), "mask"),
        (lambda b: b.update(mask=[[0] * 8] * 3), "mask"),
        (lambda b: b.update(elementwise=True), "elementwise"),
    ],
)
def test_bad_sequence_inputs_are_422(client, rng, change, field):
    teacher, student, _ = _pair(rng)
    body = {"p_logits": teacher.tolist(), "q_logits": student.tolist()}
    change(body)
    assert_problem(client.post(URL, json=body), 422, f"#/{field}")


def test_mask_on_rows_is_422(client):
    body = {"p_probs": [[0.5, 0.5]], "q_probs": [[0.5, 0.5]], "mask": [[1]]}
    assert_problem(client.post(URL, json=body), 422, "#/mask")


def test_bad_values_are_located_in_the_b_t_k_array(client, rng):
    teacher, student, _ = _pair(rng)
    from tests.api.test_payloads import binary_request

    z = teacher.astype(np.float32)
    z[1, 2, 3] = np.inf
    q = student.astype(np.float32)
    body, headers = binary_request([("p_logits", z, "FP32"), ("q_logits", q, "FP32")])
    problem = assert_problem(client.post(URL, content=body, headers=headers), 422)
    assert problem["errors"][0]["pointer"] == "#/inputs/0/1/2/3"  # the OIP input, at [b, t, k]
    p = softmax(teacher, -1)
    p[2, 5] *= 1.1  # a row summing past 1
    problem = assert_problem(
        client.post(URL, json={"p_probs": p.tolist(), "q_logits": student.tolist()}), 422
    )
    assert problem["errors"][0]["pointer"].startswith("#/p_probs/2/5")


def test_float32_binary_sequences_are_read_in_place(client, rng):
    from tests.api.test_payloads import binary_request

    teacher, student, mask = _pair(rng)
    p, q = teacher.astype(np.float32), student.astype(np.float32)
    body, headers = binary_request(
        [("p_logits", p, "FP32"), ("q_logits", q, "FP32"), ("mask", mask, "INT64")]
    )
    answer = client.post(URL, content=body, headers=headers).json()
    keep = mask.astype(bool)
    kl = (softmax(teacher, -1) * (np.log(softmax(teacher, -1)) - np.log(softmax(student, -1)))).sum(-1)
    assert answer["mean"]["kl_pq"] == pytest.approx(kl[keep].mean(), rel=1e-4)
    assert answer["convention"]["dtype"] == "float32"
