"""Issue 21: Xent as an Open Inference Protocol server, called by Triton's own HTTP client (tritonclient).

A client we did not write calls every model over a real socket, with JSON and with binary tensors,
and every output equals the field of the /v1 answer to the same request.
"""

import httpx
import ml_dtypes
import numpy as np
import pytest
import scipy.special as sp
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from service.api.openapi.examples import V1
from service.api.routes.oip import MODELS

DATATYPES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64"}


@pytest.fixture(scope="module")
def client(live_url):
    with triton.InferenceServerClient(url=live_url.removeprefix("http://")) as c:
        yield c


def _arrays(name: str, dtype=np.float32) -> tuple[dict[str, np.ndarray], dict]:
    """The example of model `name`: its arrays (floats as `dtype`, labels int64) and its options."""
    roles = MODELS[name].roles
    body = V1[name]
    arrays = {
        k: np.asarray(v, dtype=np.int64 if k == "labels" else dtype) for k, v in body.items() if k in roles
    }
    return arrays, {k: v for k, v in body.items() if k not in roles}


def _inputs(arrays: dict[str, np.ndarray], binary: bool) -> list[triton.InferInput]:
    inputs = []
    for role, a in arrays.items():
        tensor = triton.InferInput(role, list(a.shape), DATATYPES[a.dtype])
        tensor.set_data_from_numpy(a, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _v1(live_url: str, name: str, arrays: dict[str, np.ndarray], options: dict) -> dict:
    """The /v1 answer to the same arrays (as OIP tensors of the same datatype) and options."""
    body = {
        role: {"shape": list(a.shape), "datatype": DATATYPES[a.dtype], "data": a.ravel().tolist()}
        for role, a in arrays.items()
    }
    response = httpx.post(f"{live_url}/v1/{name}", json={**body, **options})
    assert response.status_code == 200, response.text
    return response.json()


def _field(answer: dict, name: str):
    for key in name.split("."):
        answer = answer[int(key)] if isinstance(answer, list) else answer[key]
    return answer


def _as_float(value) -> np.ndarray:
    return np.asarray(value, dtype=np.float64)  # numpy reads "Infinity"/"NaN" strings, None as NaN


def test_server_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "xent" and "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", list(MODELS))
def test_model_metadata_lists_roles_and_outputs_and_the_model_is_ready(client, live_url, name):
    assert client.is_model_ready(name)
    assert client.is_model_ready(name, model_version="1")
    metadata = client.get_model_metadata(name)
    assert metadata["name"] == name and metadata["versions"] == ["1"]
    assert [t["name"] for t in metadata["inputs"]] == list(MODELS[name].roles)
    for tensor in metadata["inputs"]:
        assert tensor["parameters"]["role"] == tensor["name"] and tensor["shape"][0] == -1
    # every output listed is one the example answers, with that datatype
    arrays, options = _arrays(name)
    result = client.infer(name, _inputs(arrays, binary=False), parameters=options or None)
    answered = {o["name"]: o["datatype"] for o in result.get_response()["outputs"]}
    listed = {o["name"]: o["datatype"] for o in metadata["outputs"] if not o.get("parameters")}
    assert listed and listed.items() <= answered.items()  # per-sample ones follow the input dtype


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", list(MODELS))
def test_every_model_answers_as_v1_does(client, live_url, name, binary):
    arrays, options = _arrays(name)
    result = client.infer(
        name, _inputs(arrays, binary), parameters=options or None, request_id=f"req-{name}"
    )  # no outputs named: tritonclient asks for every output in binary
    response = result.get_response()
    assert response["model_name"] == name and response["model_version"] == "1"
    assert response["id"] == f"req-{name}"
    v1 = _v1(live_url, name, arrays, options)
    assert response["outputs"], response
    for output in response["outputs"]:
        value, expected = result.as_numpy(output["name"]), _field(v1, output["name"])
        if output["datatype"] == "BYTES":
            assert value.tolist() == [expected.encode()], output["name"]
        elif output["datatype"] in ("INT64", "BOOL"):
            assert value.tolist() == [expected], output["name"]
        else:
            np.testing.assert_array_equal(
                value, _as_float(expected).reshape(value.shape), err_msg=output["name"]
            )
    for key, value in (response.get("parameters") or {}).items():  # the convention, field by field
        expected = v1["convention"][key]
        assert value == expected or value == str(expected).replace("'", '"'), key


PER_SAMPLE = {
    "cross-entropy": "losses",
    "divergence": "per_sample.kl_pq",
    "temperature": "probs",
    "recalibrate": "probs",
    "apply": "probs",
}
V1_SWITCH = {"cross-entropy": "per_sample", "divergence": "per_sample", "temperature": "return_probs",
             "recalibrate": "return_probs"}  # fmt: skip


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", list(PER_SAMPLE))
def test_requested_per_sample_output_equals_v1_in_the_input_dtype(client, live_url, name, binary):
    arrays, options = _arrays(name, np.float32)
    wanted = PER_SAMPLE[name]
    outputs = [triton.InferRequestedOutput(wanted, binary_data=binary), triton.InferRequestedOutput("n")]
    result = client.infer(name, _inputs(arrays, binary), parameters=options or None, outputs=outputs)
    response = result.get_response()
    assert [o["name"] for o in response["outputs"]] == [wanted, "n"]  # only what was asked, in order
    assert ("data" not in response["outputs"][0]) is binary
    value = result.as_numpy(wanted)
    assert value.dtype == np.float32  # float32 in, float32 out
    switch = {V1_SWITCH[name]: True} if name in V1_SWITCH else {}
    expected = _as_float(_field(_v1(live_url, name, arrays, {**options, **switch}), wanted))
    np.testing.assert_array_equal(value.astype(np.float64), expected)
    if name == "cross-entropy":  # and an oracle of our own: -log_softmax at the label
        logits, labels = arrays["logits"].astype(np.float64), arrays["labels"]
        oracle = -sp.log_softmax(logits, axis=1)[np.arange(len(labels)), labels]
        np.testing.assert_allclose(value, oracle, rtol=1e-6)


def test_bf16_logits_are_widened_to_float32(client, live_url, rng):
    logits = (3 * rng.standard_normal((16, 4))).astype(ml_dtypes.bfloat16)
    labels = rng.integers(0, 4, 16)
    inputs = [triton.InferInput("logits", [16, 4], "BF16"), triton.InferInput("labels", [16], "INT64")]
    inputs[0].set_data_from_numpy(logits, binary_data=True)
    inputs[1].set_data_from_numpy(labels, binary_data=True)
    outputs = [triton.InferRequestedOutput("losses", binary_data=True), triton.InferRequestedOutput("loss")]
    result = client.infer("cross-entropy", inputs, outputs=outputs)
    widened = logits.astype(np.float32)  # exact: bfloat16 is the top half of a float32
    oracle = -sp.log_softmax(widened.astype(np.float64), axis=1)[np.arange(16), labels]
    np.testing.assert_allclose(result.as_numpy("losses"), oracle, rtol=1e-6)
    v1 = _v1(live_url, "cross-entropy", {"logits": widened, "labels": labels}, {"per_sample": True})
    np.testing.assert_array_equal(result.as_numpy("losses"), np.float32(v1["losses"]))
    assert result.as_numpy("loss")[0] == v1["loss"]


def test_object_options_go_as_json_text(client, live_url):
    arrays, _ = _arrays("apply")
    parameters = '{"method": "vector", "scale": [1.0, 0.5, 2.0], "bias": [0.0, 0.1, -0.1]}'
    result = client.infer("apply", _inputs(arrays, True), parameters={"parameters": parameters})
    logits = arrays["logits"].astype(np.float64)
    expected = sp.softmax(logits * [1.0, 0.5, 2.0] + [0.0, 0.1, -0.1], axis=1)
    np.testing.assert_allclose(result.as_numpy("probs"), expected, rtol=1e-5)
    assert result.as_numpy("method").tolist() == [b"vector"]


def test_a_triton_output_name_without_role_says_to_set_the_role(client):
    tensor = triton.InferInput("output__0", [2, 3], "FP32")
    tensor.set_data_from_numpy(np.zeros((2, 3), np.float32))
    labels = triton.InferInput("labels", [2], "INT64")
    labels.set_data_from_numpy(np.array([0, 1]))
    with pytest.raises(InferenceServerException, match=r"set `parameters.role` to `logits`, `probs`") as info:
        client.infer("cross-entropy", [tensor, labels])
    assert info.value.status() == "422"


def test_unknown_model_and_output_are_errors_the_client_reports(client):
    arrays, _ = _arrays("cross-entropy")
    with pytest.raises(InferenceServerException, match="model 'nope' is not served") as info:
        client.infer("nope", _inputs(arrays, False))
    assert info.value.status() == "404"
    with pytest.raises(InferenceServerException, match=r"`outputs.0.name` must name an output"):
        client.infer("cross-entropy", _inputs(arrays, False), outputs=[triton.InferRequestedOutput("nope")])
    with pytest.raises(InferenceServerException, match="has version '1' only"):
        client.infer("cross-entropy", _inputs(arrays, False), model_version="2")


def test_refusals_before_any_route_carry_the_oip_error_the_client_reports():
    """The 401 of the key check and the 503 of a draining server answer before any route runs:
    they too carry OIP's `error` member, which tritonclient raises as the message."""
    from pydantic import SecretStr

    from service.app import create_app
    from service.settings import Settings
    from tests.live import running

    app = create_app(Settings(api_keys=SecretStr("k3y-Secret_0123456789")))
    arrays, _ = _arrays("cross-entropy")
    with running(app) as url, triton.InferenceServerClient(url=url.removeprefix("http://")) as client:
        with pytest.raises(InferenceServerException, match="an API key is required") as info:
            client.infer("cross-entropy", _inputs(arrays, True))
        assert info.value.status() == "401"
        headers = {"X-API-Key": "k3y-Secret_0123456789"}
        assert client.infer("cross-entropy", _inputs(arrays, True), headers=headers).as_numpy(
            "loss"
        ).shape == (1,)
        app.state.gate.draining = True
        with pytest.raises(InferenceServerException, match="shutting down|draining") as info:
            client.infer("cross-entropy", _inputs(arrays, False), headers=headers)
        assert info.value.status() == "503"
        app.state.gate.draining = False
