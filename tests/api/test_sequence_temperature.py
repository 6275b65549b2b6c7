"""/v1/temperature and /v1/recalibrate with B×T×K token logits: one T over every scored token."""

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

from tests.api.test_payloads import binary_request
from tests.conftest import assert_problem

URL = "/v1/temperature"


def _batch(rng, b=3, t=20, k=11, sharp=3.0):
    z = sharp * rng.standard_normal((b, t, k))
    y = np.where(rng.random((b, t)) < 0.6, z.argmax(-1), rng.integers(0, k, (b, t)))
    y[0, :3] = -100
    mask = np.ones((b, t), np.int64)
    mask[-1, -4:] = 0
    return z, y, mask


def _flat(z, y, mask):
    keep = (mask.astype(bool) & (y != -100)).reshape(-1)
    return z.reshape(-1, z.shape[-1])[keep], y.reshape(-1)[keep]


def _json(z, y, mask, **options):
    return {
        "logits": z.tolist(),
        "labels": y.tolist(),
        "mask": mask.tolist(),
        "ignore_index": -100,
        **options,
    }


def _torch_temperature(z, y, mask):
    """scipy's bounded Brent on torch's F.cross_entropy(z / T, ignore_index) over (B, K, T), float64."""
    zt = torch.from_numpy(np.asarray(z, np.float64)).transpose(1, 2)
    yt = torch.from_numpy(np.where(mask.astype(bool), y, -100))

    def loss(log_t: float) -> float:
        return float(F.cross_entropy(zt / np.exp(log_t), yt, ignore_index=-100))

    found = minimize_scalar(loss, bounds=(-5, 5), method="bounded", options={"xatol": 1e-10})
    return float(np.exp(found.x))


@pytest.mark.parametrize("k", [11, 70])
def test_sequence_fit_equals_the_flat_fit_of_the_scored_rows(client, rng, k):
    z, y, mask = _batch(rng, k=k)
    seq = client.post(URL, json=_json(z, y, mask))
    assert seq.status_code == 200, seq.text
    zf, yf = _flat(z, y, mask)
    flat = client.post(URL, json={"logits": zf.tolist(), "labels": yf.tolist()}).json()
    got = seq.json()
    for name in ("temperature", "converged", "reason", "iterations", "gradient", "n", "parameters"):
        assert got[name] == flat[name], name  # the same fit, bit for bit
    assert got["n_ignored"] == y.size - len(yf) == 7
    for side in ("before", "after"):
        for name, value in flat[side].items():
            assert got[side][name] == pytest.approx(value, rel=1e-12, abs=1e-15), (side, name)
    assert got["sequences"] == {"shape": [3, 20, k], "n_sequences": 3, "tokens": [17, 20, 16], "n_ignored": 7}
    convention = got["convention"]
    assert convention["form"] == "sequence" and convention["ignore_index"] == -100
    assert got["temperature"] == pytest.approx(_torch_temperature(z, y, mask), rel=1e-6)


def test_recalibrate_temperature_is_the_temperature_fit(client, rng):
    z, y, mask = _batch(rng)
    fit = client.post(URL, json=_json(z, y, mask, base=2)).json()
    body = client.post("/v1/recalibrate", json=_json(z, y, mask, method="temperature", base=2))
    assert body.status_code == 200, body.text
    got = body.json()
    assert got["parameters"] == fit["parameters"] and got["message"] == fit["reason"] == "optimum"
    assert got["before"] == fit["before"] and got["after"] == fit["after"]
    assert got["sequences"] == fit["sequences"] and got["convention"]["unit"] == "bits"
    zf, yf = _flat(z, y, mask)
    nats = F.cross_entropy(torch.from_numpy(zf) / fit["temperature"], torch.from_numpy(yf)).item()
    assert got["after"]["nll"] == pytest.approx(nats / np.log(2), rel=1e-12)


@pytest.mark.parametrize("datatype", ["FP32", "FP16", "BF16"])
def test_sequence_binary_tensors_match_torch_on_the_same_values(client, rng, datatype):
    z, y, mask = _batch(rng, b=2, t=64, k=100)
    tensor = torch.from_numpy(z).to(
        {"FP32": torch.float32, "FP16": torch.float16, "BF16": torch.bfloat16}[datatype]
    )
    sent = tensor.view(torch.int16).numpy().view(np.uint16) if datatype == "BF16" else tensor.numpy()
    blob, headers = binary_request(
        [("logits", sent, datatype), ("labels", y, "INT64"), ("mask", mask, "INT64")], {"ignore_index": -100}
    )
    got = client.post(URL, content=blob, headers=headers)
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["convention"]["dtype"] == "float32" and body["sequences"]["shape"] == [2, 64, 100]
    assert body["temperature"] == pytest.approx(
        _torch_temperature(tensor.double().numpy(), y, mask), rel=1e-6
    )
    zf, yf = _flat(tensor.float().numpy(), y, mask)
    flat = client.post(URL, json={"logits": zf.tolist(), "labels": yf.tolist()}).json()
    assert body["temperature"] == pytest.approx(flat["temperature"], rel=1e-12)


def test_sequence_fit_from_npz_and_v2(client, rng):
    z, y, mask = _batch(rng)
    want = client.post(URL, json=_json(z, y, mask)).json()
    buffer = io.BytesIO()
    np.savez(buffer, logits=z, labels=y, mask=mask, parameters='{"ignore_index": -100}')
    npz = client.post(URL, content=buffer.getvalue(), headers={"content-type": "application/x-npz"})
    assert npz.status_code == 200, npz.text
    assert npz.json()["temperature"] == want["temperature"]
    request = {
        "inputs": [
            {"name": "logits", "shape": list(z.shape), "datatype": "FP64", "data": z.ravel().tolist()},
            {"name": "labels", "shape": list(y.shape), "datatype": "INT64", "data": y.ravel().tolist()},
            {"name": "mask", "shape": list(mask.shape), "datatype": "INT64", "data": mask.ravel().tolist()},
        ],
        "parameters": {"ignore_index": -100},
    }
    v2 = client.post("/v2/models/temperature/infer", json=request)
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["temperature"] == [want["temperature"]]


@pytest.mark.parametrize("method", ["vector", "matrix", "platt", "beta", "isotonic", "histogram"])
def test_recalibrate_other_methods_on_sequences_are_422_naming_the_method(client, rng, method):
    z, y, mask = _batch(rng)
    response = client.post("/v1/recalibrate", json=_json(z, y, mask, method=method))
    assert_problem(response, 422, "#/method", f'"{method}" is not supported with B×T×K sequence inputs')


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"return_probs": True}, "#/return_probs", "second B×T×K tensor"),
        ({"validation": {"holdout": 0.3}}, "#/validation", "not supported with B×T×K"),
        ({"sample_weight": [1.0, 2.0, 3.0]}, "#/sample_weight", "not supported with B×T×K"),
        ({"labels": None}, "#/labels", r"are required \(B×T token ids\)"),
        ({"mask": [[1, 0]]}, "#/mask", "must be B×T = 3×20"),
        ({"ignore_index": None}, "#/labels/0/0", r"must lie in \[0, 11\) at scored positions; got -100"),
    ],
)
def test_sequence_bad_input_names_the_field(client, rng, extra, pointer, match):
    z, y, mask = _batch(rng)
    body = {k: v for k, v in {**_json(z, y, mask), **extra}.items() if v is not None}
    assert_problem(client.post(URL, json=body), 422, pointer, match)


def test_sequence_normalize_and_mask_on_rows_are_422(client, rng):
    z, y, mask = _batch(rng)
    probs = torch.softmax(torch.from_numpy(z), -1).numpy()
    body = {"probs": probs.tolist(), "labels": y.tolist(), "ignore_index": -100, "normalize": True}
    assert_problem(client.post(URL, json=body), 422, "#/normalize", "not supported with B×T×K")
    flat = {"logits": [[0.0, 1.0]], "labels": [1], "mask": [[1]]}
    assert_problem(client.post(URL, json=flat), 422, "#/mask", "applies to B×T×K sequence inputs only")
    assert_problem(
        client.post("/v1/recalibrate", json={**flat, "method": "vector"}), 422, "#/mask", "B×T×K sequence"
    )


def test_apply_a_fitted_temperature_reproduces_the_fit_after_metrics(client, rng):
    z, y, mask = _batch(rng, k=70)
    fit = client.post(URL, json=_json(z, y, mask)).json()
    applied = client.post("/v1/apply", json=_json(z, y, mask, parameters=fit["parameters"]))
    assert applied.status_code == 200, applied.text
    got = applied.json()
    assert got["metrics"] == fit["after"] and got["probs"] is None
    assert got["sequences"] == fit["sequences"] and got["n"] == fit["n"] == 53
    bare = client.post("/v1/apply", json=_json(z, y, mask, temperature=0.5)).json()
    zf, yf = _flat(z, y, mask)
    flat = client.post("/v1/apply", json={"logits": zf.tolist(), "labels": yf.tolist(), "temperature": 0.5})
    for name, value in flat.json()["metrics"].items():
        assert bare["metrics"][name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    nats = F.cross_entropy(
        torch.from_numpy(z).transpose(1, 2) / 0.5, torch.from_numpy(np.where(mask == 1, y, -100))
    )
    assert bare["metrics"]["nll"] == pytest.approx(nats.item(), rel=1e-12)


@pytest.mark.parametrize(
    ("extra", "pointer", "match"),
    [
        ({"labels": None}, "#/labels", "they score softmax"),
        ({"binary_data_output": True}, "#/binary_data_output", "second B×T×K tensor"),
        ({"parameters": {"method": "vector", "scale": [1.0] * 11, "bias": [0.0] * 11}, "temperature": None},
         "#/parameters/method", '"vector" is not supported with B×T×K'),
    ],
)  # fmt: skip
def test_apply_on_sequences_refusals_name_the_field(client, rng, extra, pointer, match):
    z, y, mask = _batch(rng)
    body = {k: v for k, v in {**_json(z, y, mask, temperature=2.0), **extra}.items() if v is not None}
    assert_problem(client.post("/v1/apply", json=body), 422, pointer, match)


def test_apply_ignore_index_on_rows_is_422(client):
    body = {"logits": [[0.0, 1.0]], "labels": [1], "temperature": 2.0, "ignore_index": -100}
    assert_problem(client.post("/v1/apply", json=body), 422, "#/ignore_index", "B×T×K sequence inputs only")
