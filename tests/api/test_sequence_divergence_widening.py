"""/v1/divergence on B×T×K: float16, BF16 and JSON-integer sides widened a block of rows at a time."""

import numpy as np
import pytest
import torch
from scipy.special import softmax

from service.api.routes import divergence_sequences
from tests.api.test_payloads import binary_request
from tests.conftest import assert_problem

URL = "/v1/divergence"
OPTIONS = {"per_sample": True, "reduction": "sum"}


def _post(client, inputs, options=OPTIONS):
    blob, headers = binary_request(inputs, parameters=options)
    answer = client.post(URL, content=blob, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _pair(rng, b=3, t=8, k=50):
    teacher = 2.0 * rng.standard_normal((b, t, k))
    return teacher, teacher + rng.standard_normal((b, t, k))


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 3 rows: they straddle sequences and end mid-sequence."""
    monkeypatch.setattr(divergence_sequences, "WIDEN_BLOCK_BYTES", 3 * 50 * 8)


@pytest.mark.parametrize("kind", ["logits", "probs"])
@pytest.mark.parametrize("narrow", ["FP16", "BF16"])
def test_16_bit_sides_equal_float32_on_the_same_values(client, rng, kind, narrow):
    teacher, student = _pair(rng)
    if kind == "probs":
        teacher, student = softmax(teacher, -1), softmax(student, -1)
    dtype = torch.float16 if narrow == "FP16" else torch.bfloat16
    p16, q16 = (torch.from_numpy(a).to(dtype) for a in (teacher, student))
    mask = np.ones((3, 8), np.int64)
    mask[1, :3] = 0
    raw = [a.numpy() if narrow == "FP16" else a.view(torch.int16).numpy().view(np.uint16) for a in (p16, q16)]
    options = OPTIONS | {"tolerance": 1e-2}
    narrow_answer = _post(
        client,
        [(f"p_{kind}", raw[0], narrow), (f"q_{kind}", raw[1], narrow), ("mask", mask, "INT64")],
        options,
    )
    wide = [a.float().numpy() for a in (p16, q16)]
    float32 = _post(
        client,
        [(f"p_{kind}", wide[0], "FP32"), (f"q_{kind}", wide[1], "FP32"), ("mask", mask, "INT64")],
        options,
    )
    assert narrow_answer["per_sample"] == float32["per_sample"]
    assert narrow_answer["sum"] == float32["sum"]
    assert narrow_answer["sequences"] == float32["sequences"]
    assert narrow_answer["convention"]["dtype"] == "float32"
    # and against torch on those float32 values (KL(p‖q) per position)
    if kind == "logits":
        lp, lq = (torch.log_softmax(torch.from_numpy(a).double(), -1) for a in wide)
        kl = torch.nn.functional.kl_div(lq, lp, log_target=True, reduction="none").sum(-1).numpy() * mask
        np.testing.assert_allclose(np.array(narrow_answer["per_sample"]["kl_pq"]), kl, rtol=1e-4, atol=1e-6)


def test_one_narrow_side_against_a_float64_side(client, rng):
    teacher, student = _pair(rng)
    p16 = teacher.astype(np.float16)
    narrow = _post(client, [("p_logits", p16, "FP16"), ("q_logits", student, "FP64")])
    wide = _post(client, [("p_logits", p16.astype(np.float32), "FP32"), ("q_logits", student, "FP64")])
    assert narrow["per_sample"] == wide["per_sample"]
    assert narrow["convention"]["dtype"] == "float64"


def test_json_integer_sides_equal_float64(client, rng):
    teacher, student = (np.rint(a).astype(int) for a in _pair(rng))
    ints = client.post(
        URL, json={"p_logits": teacher.tolist(), "q_logits": student.tolist()} | OPTIONS
    ).json()
    floats = client.post(
        URL, json={"p_logits": (teacher + 0.0).tolist(), "q_logits": (student + 0.0).tolist()} | OPTIONS
    )
    assert ints["per_sample"] == floats.json()["per_sample"] and ints["sum"] == floats.json()["sum"]
    assert ints["convention"]["dtype"] == "float64"


def test_bad_narrow_values_are_located_in_the_b_t_k_array(client, rng):
    teacher, student = _pair(rng)
    p = softmax(teacher, -1).astype(np.float16)
    p[2, 5] = 0.5  # row sums far from 1
    blob, headers = binary_request([("p_probs", p, "FP16"), ("q_logits", student.astype(np.float16), "FP16")])
    problem = assert_problem(client.post(URL, content=blob, headers=headers), 422)
    assert problem["errors"][0]["pointer"].startswith("#/inputs/0/2/5")  # binary bodies point into `inputs`
    q = student.astype(np.float16)
    q[1, 7, 4] = np.inf
    blob, headers = binary_request(
        [("p_logits", teacher.astype(np.float16), "FP16"), ("q_logits", q, "FP16")]
    )
    problem = assert_problem(client.post(URL, content=blob, headers=headers), 422)
    assert problem["errors"][0]["pointer"] == "#/inputs/1/1/7/4"
