"""Issue 21: the /v2 Open Inference Protocol routes over plain HTTP: wire shapes, errors, auth and limits."""

import json
import struct

import numpy as np
import pytest
import scipy.special as sp
from fastapi.testclient import TestClient
from pydantic import SecretStr

from service.api.routes.oip import MODELS, example_request
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

KEY = "k3y-Secret_0123456789"


def _outputs(response) -> dict[str, dict]:
    assert response.status_code == 200, response.text
    return {o["name"]: o for o in response.json()["outputs"]}


def test_json_outputs_are_flat_row_major_with_shapes(client, rng):
    logits = 3 * rng.standard_normal((6, 4))
    labels = rng.integers(0, 4, 6)
    request = {
        "inputs": [
            {"name": "logits", "shape": [6, 4], "datatype": "FP64", "data": logits.ravel().tolist()},
            {"name": "labels", "shape": [6], "datatype": "INT64", "data": labels.tolist()},
        ],
        "outputs": [{"name": "losses"}, {"name": "loss"}, {"name": "n"}],
    }
    out = _outputs(client.post("/v2/models/cross-entropy/infer", json=request))
    oracle = -sp.log_softmax(logits, axis=1)[np.arange(6), labels]
    assert out["losses"]["shape"] == [6] and out["losses"]["datatype"] == "FP64"
    np.testing.assert_allclose(out["losses"]["data"], oracle, rtol=1e-12)
    assert out["loss"]["shape"] == [1]
    np.testing.assert_allclose(out["loss"]["data"][0], oracle.mean(), rtol=1e-12)
    assert out["n"] == {"name": "n", "datatype": "INT64", "shape": [1], "data": [6]}


def test_non_finite_outputs_are_strings_in_json(client):
    request = {
        "inputs": [
            {"name": "probs", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 0.0]},
            {"name": "labels", "shape": [1], "datatype": "INT64", "data": [1]},
        ],
        "parameters": {"eps": 0},
    }
    assert _outputs(client.post("/v2/models/cross-entropy/infer", json=request))["loss"]["data"] == [
        "Infinity"
    ]


def test_binary_output_frames_bytes_and_strings(client):
    request = example_request("recalibrate")
    request["parameters"]["binary_data_output"] = True
    response = client.post("/v2/models/recalibrate/infer", json=request)
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:size])
    offsets, at = {}, size
    for output in header["outputs"]:
        offsets[output["name"]] = (at, output)
        at += output["parameters"]["binary_data_size"]
    assert at == len(response.content)
    start, method = offsets["method"]
    assert method["datatype"] == "BYTES"
    (length,) = struct.unpack("<I", response.content[start : start + 4])
    assert response.content[start + 4 : start + 4 + length] == b"temperature"
    start, temperature = offsets["parameters.temperature"]
    value = np.frombuffer(response.content[start : start + 8], "<f8")[0]
    v1 = client.post("/v1/recalibrate", json=example_request_as_v1("recalibrate")).json()
    assert value == v1["parameters"]["temperature"]


def example_request_as_v1(name: str) -> dict:
    from service.api.openapi.examples import V1

    return V1[name]


def test_outputs_not_asked_for_stay_out_and_the_id_is_echoed(client):
    request = {**example_request("divergence"), "id": "abc", "outputs": [{"name": "mean.kl_pq"}]}
    body = client.post("/v2/models/divergence/infer", json=request).json()
    assert body["id"] == "abc" and [o["name"] for o in body["outputs"]] == ["mean.kl_pq"]
    assert body["parameters"]["matches"].startswith("scipy")


def test_a_v1_body_at_v2_is_told_to_send_inputs(client):
    body = assert_problem(
        client.post("/v2/models/cross-entropy/infer", json={"logits": [[1, 2]], "labels": [0]}), 422
    )
    assert "`inputs` is required" in body["detail"] and body["error"] == body["detail"]


def test_v2_problems_carry_the_oip_error_member_and_v1_ones_do_not(client):
    v2 = assert_problem(client.get("/v2/models/nope"), 404, match="model 'nope' is not served")
    assert v2["error"] == v2["detail"] and "cross-entropy" in v2["detail"]
    v1 = assert_problem(client.post("/v1/cross-entropy", json={}), 422)
    assert "error" not in v1


def test_role_named_by_parameters_and_role_errors_on_v1_too(client):
    request = example_request("cross-entropy")
    request["inputs"][0] = {**request["inputs"][0], "name": "output__0", "parameters": {"role": "logits"}}
    assert client.post("/v2/models/cross-entropy/infer", json=request).status_code == 200
    request["inputs"][0]["parameters"] = {}
    for path in ("/v2/models/cross-entropy/infer", "/v1/cross-entropy"):
        body = assert_problem(client.post(path, json=request), 422, pointer="#/inputs/0/parameters/role")
        assert "set `parameters.role` to `logits`, `probs`" in body["detail"], body["detail"]


def test_bf16_json_numbers_and_binary_words_agree(client):
    words = np.array([0x3F80, 0x4000, 0xBF80, 0x0000], dtype="<u2")  # 1, 2, -1, 0
    values = [1.0, 2.0, -1.0, 0.0]
    head = {
        "inputs": [
            {"name": "logits", "shape": [2, 2], "datatype": "BF16", "parameters": {"binary_data_size": 8}},
            {"name": "labels", "shape": [2], "datatype": "INT64", "data": [0, 1]},
        ],
        "outputs": [{"name": "losses"}],
    }
    text = json.dumps(head).encode()
    binary = client.post(
        "/v2/models/cross-entropy/infer",
        content=text + words.tobytes(),
        headers={"Inference-Header-Content-Length": str(len(text))},
    )
    head["inputs"][0] = {"name": "logits", "shape": [2, 2], "datatype": "BF16", "data": values}
    as_json = client.post("/v2/models/cross-entropy/infer", json=head)
    oracle = -sp.log_softmax(np.reshape(values, (2, 2)), axis=1)[[0, 1], [0, 1]]
    assert _outputs(as_json)["losses"]["datatype"] == "FP32"
    np.testing.assert_allclose(_outputs(binary)["losses"]["data"], oracle, rtol=1e-6)
    assert _outputs(binary)["losses"]["data"] == _outputs(as_json)["losses"]["data"]


def test_npz_is_not_a_v2_body(client):
    response = client.post(
        "/v2/models/apply/infer", content=b"PK", headers={"content-type": "application/x-npz"}
    )
    assert_problem(response, 415)


@pytest.fixture(scope="module")
def guarded() -> TestClient:
    return TestClient(create_app(Settings(api_keys=SecretStr(KEY))))


@pytest.mark.parametrize("path", ["/v2", "/v2/models/apply", "/v2/models/apply/ready"])
def test_v2_is_guarded_like_v1(guarded, path):
    assert_problem(guarded.get(path), 401)
    assert guarded.get(path, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert_problem(guarded.post("/v2/models/apply/infer", json=example_request("apply")), 401)
    response = guarded.post(
        "/v2/models/apply/infer", json=example_request("apply"), headers={"X-API-Key": KEY}
    )
    assert response.status_code == 200


def test_v2_health_probes_stay_open_like_healthz(guarded):
    assert guarded.get("/v2/health/live").json() == {"live": True}
    assert guarded.get("/v2/health/ready").json() == {"ready": True}


def test_a_draining_server_is_not_ready_and_refuses_inference():
    with TestClient(create_app(Settings())) as client:
        client.app.state.gate.draining = True
        assert_problem(client.get("/v2/health/ready"), 503)
        assert_problem(client.get("/v2/models/apply/ready"), 503)
        assert_problem(client.post("/v2/models/apply/infer", json=example_request("apply")), 503)
        assert client.get("/v2/health/live").status_code == 200


@pytest.mark.parametrize("name", list(MODELS))
def test_versioned_paths_answer_as_the_plain_ones(client, name):
    assert client.get(f"/v2/models/{name}/versions/1").json() == client.get(f"/v2/models/{name}").json()
    plain = client.post(f"/v2/models/{name}/infer", json=example_request(name)).json()
    versioned = client.post(f"/v2/models/{name}/versions/1/infer", json=example_request(name)).json()
    assert plain == versioned
    assert_problem(client.get(f"/v2/models/{name}/versions/2/ready"), 404)


@pytest.mark.parametrize("path", ["/v1/apply", "/v2/models/apply/infer"])
def test_a_malformed_binary_header_is_a_400_with_any_body(client, path):
    from service.api.openapi.examples import V1

    body = V1["apply"] if path.startswith("/v1") else example_request("apply")
    response = client.post(path, json=body, headers={"Inference-Header-Content-Length": "-1"})
    assert_problem(response, 400, match="Inference-Header-Content-Length")


@pytest.mark.parametrize("declared", ["0", "7", "100000"])
def test_a_json_labelled_body_is_json_whatever_the_binary_header_says(client, declared):
    """The header describes binary bodies (tritonclient sends no Content-Type, KServe's client
    octet-stream); a body labelled application/json is read as JSON, as on /v1."""
    body = example_request("cross-entropy")
    plain = client.post("/v2/models/cross-entropy/infer", json=body)
    labelled = client.post(
        "/v2/models/cross-entropy/infer", json=body, headers={"Inference-Header-Content-Length": declared}
    )
    assert labelled.status_code == 200, labelled.text
    assert labelled.json() == plain.json()
    unlabelled = client.post(
        "/v2/models/cross-entropy/infer",
        content=json.dumps(body).encode(),
        headers={"Inference-Header-Content-Length": declared, "content-type": ""},
    )
    assert_problem(unlabelled, 400)  # no Content-Type: the binary extension, framed as declared
