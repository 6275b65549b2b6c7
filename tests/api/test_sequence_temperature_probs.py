"""/v1/temperature, /v1/recalibrate and /v1/apply with B×T×K token probabilities: the N×K probs answers."""

import numpy as np
import pytest

from tests.api.test_payloads import binary_request
from tests.conftest import assert_problem

URL = "/v1/temperature"
FIT = ("temperature", "converged", "reason", "iterations", "gradient", "n", "parameters")


def _batch(rng, b=3, t=20, k=11, sharp=3.0):
    z = sharp * rng.standard_normal((b, t, k))
    p = np.exp(z - z.max(-1, keepdims=True))
    p[rng.random((b, t)) < 0.3, 2] = 0.0  # clipped at eps
    p /= p.sum(-1, keepdims=True)
    y = np.where(rng.random((b, t)) < 0.6, p.argmax(-1), rng.integers(0, k, (b, t)))
    y[0, :3] = -100
    mask = np.ones((b, t), np.int64)
    mask[-1, -4:] = 0
    return p, y, mask


def _flat(p, y, mask):
    keep = (mask.astype(bool) & (y != -100)).reshape(-1)
    return p.reshape(-1, p.shape[-1])[keep], y.reshape(-1)[keep]


def _json(p, y, mask, **options):
    return {"probs": p.tolist(), "labels": y.tolist(), "mask": mask.tolist(), "ignore_index": -100, **options}


def _same_answer(got, flat, tol):
    for name in FIT:
        assert got[name] == flat[name], name  # the same fit, bit for bit
    for side, rel in (("before", 1e-12), ("after", tol)):
        for name, value in flat[side].items():
            assert got[side][name] == pytest.approx(value, rel=rel, abs=rel), (side, name)
    for name in ("input", "eps", "n_clipped", "tolerance", "dtype"):
        assert got["convention"][name] == flat["convention"][name], name


@pytest.mark.parametrize("eps", ["auto", 1e-3])
def test_sequence_probs_fit_is_the_flat_probs_fit(client, rng, eps):
    p, y, mask = _batch(rng, k=70)
    seq = client.post(URL, json=_json(p, y, mask, eps=eps))
    assert seq.status_code == 200, seq.text
    pf, yf = _flat(p, y, mask)
    flat = client.post(URL, json={"probs": pf.tolist(), "labels": yf.tolist(), "eps": eps}).json()
    got = seq.json()
    _same_answer(got, flat, 1e-12)
    assert got["convention"]["input"] == "probs" and got["convention"]["n_clipped"] > 0
    assert got["sequences"]["tokens"] == [17, 20, 16] and got["n_ignored"] == 7
    recal = client.post("/v1/recalibrate", json=_json(p, y, mask, eps=eps, method="temperature")).json()
    assert recal["parameters"] == got["parameters"] and recal["after"] == got["after"]
    assert recal["convention"] == got["convention"] | {"matches": recal["convention"]["matches"]}


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "FP64"])
def test_sequence_probs_binary_tensors_are_the_flat_binary_fit(client, rng, datatype):
    p, y, mask = _batch(rng, b=2, t=64, k=100)
    sent = p.astype({"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}[datatype])
    options = {"ignore_index": -100}
    blob, headers = binary_request(
        [("probs", sent, datatype), ("labels", y, "INT64"), ("mask", mask, "INT64")], options
    )
    got = client.post(URL, content=blob, headers=headers)
    assert got.status_code == 200, got.text
    pf, yf = _flat(sent, y, mask)
    blob, headers = binary_request([("probs", pf, datatype), ("labels", yf, "INT64")])
    flat = client.post(URL, content=blob, headers=headers)
    assert flat.status_code == 200, flat.text
    # `after` of float32: the N×K apply rounds log_softmax in float32, the streamed one accumulates in float64
    _same_answer(got.json(), flat.json(), 1e-12 if datatype == "FP64" else 1e-7)


def test_apply_a_temperature_to_sequence_probs_is_the_flat_apply(client, rng):
    p, y, mask = _batch(rng)
    fit = client.post(URL, json=_json(p, y, mask)).json()
    applied = client.post("/v1/apply", json=_json(p, y, mask, parameters=fit["parameters"]))
    assert applied.status_code == 200, applied.text
    got = applied.json()
    assert got["metrics"] == fit["after"] and got["probs"] is None
    pf, yf = _flat(p, y, mask)
    flat = client.post("/v1/apply", json={"probs": pf.tolist(), "labels": yf.tolist(), "temperature": 0.7})
    bare = client.post("/v1/apply", json=_json(p, y, mask, temperature=0.7)).json()
    for name, value in flat.json()["metrics"].items():
        assert bare["metrics"][name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert bare["convention"]["n_clipped"] == flat.json()["convention"]["n_clipped"] > 0


def test_sequence_probs_refusals_name_the_field(client, rng):
    p, y, mask = _batch(rng)
    assert_problem(client.post(URL, json=_json(p, y, mask, eps=0)), 422, "#/eps", "log 0 = -inf")
    bad = p.copy()
    bad[1, 2, 3] = -0.5
    assert_problem(client.post(URL, json=_json(bad, y, mask)), 422, "#/probs/1/2/3", r"must lie in \[0, 1\]")
    off = p.copy()
    off[2, 5] *= 1.01
    assert_problem(client.post(URL, json=_json(off, y, mask)), 422, "#/probs/2/5", "must sum to 1 within")


def test_sequence_probs_bf16_is_the_flat_fit_of_the_same_values(client, rng):
    """BF16 bit patterns, widened a block at a time: the N×K fit of the same values as float32."""
    p, y, mask = _batch(rng, b=2, t=64, k=100)
    bits = (p.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)  # truncated to bfloat16
    wide = (bits.astype(np.uint32) << 16).view(np.float32)
    options = {"ignore_index": -100, "tolerance": 0.05}
    blob, headers = binary_request(
        [("probs", bits, "BF16"), ("labels", y, "INT64"), ("mask", mask, "INT64")], options
    )
    got = client.post(URL, content=blob, headers=headers)
    assert got.status_code == 200, got.text
    pf, yf = _flat(wide, y, mask)
    blob, headers = binary_request([("probs", pf, "FP32"), ("labels", yf, "INT64")], {"tolerance": 0.05})
    flat = client.post(URL, content=blob, headers=headers)
    assert flat.status_code == 200, flat.text
    _same_answer(got.json(), flat.json(), 1e-7)
