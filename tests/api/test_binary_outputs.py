"""Per-sample arrays in responses: recalibrated probabilities as binary tensors, and the JSON path."""

import json

import numpy as np
import pytest
import scipy.special as sp
from scipy.spatial.distance import jensenshannon

from service.api.routes import json_response, respond
from service.api.schemas import CrossEntropyConvention, CrossEntropyResult
from service.client.encoding import decode_response
from tests.conftest import assert_problem


def _binary_answer(response) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON header and the output tensors (decoded as the Python client does) of a binary answer."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    size = response.headers["inference-header-content-length"]
    header = json.loads(response.content[: int(size)])
    sizes = [output["parameters"]["binary_data_size"] for output in header["outputs"]]
    assert int(size) + sum(sizes) == len(response.content)  # the tensors fill the rest, exactly
    decoded = decode_response(response.content, size)
    return header, {output["name"]: _at(decoded, output["name"]) for output in header["outputs"]}


def _at(body: dict, name: str) -> np.ndarray:
    """Where the client put output `name`: a dotted name in the nested object the JSON answer has."""
    for key in name.split("."):
        body = body[key]
    assert isinstance(body, np.ndarray)
    return body


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_sends_recalibrated_probs_as_a_binary_tensor(client, rng, dtype):
    logits = (3 * rng.standard_normal((9, 4))).astype(dtype)
    datatype = "FP32" if dtype == np.float32 else "FP64"
    tensor = {"shape": [9, 4], "datatype": datatype, "data": logits.ravel().tolist()}
    body = {"logits": tensor, "temperature": 2.0}
    as_json = client.post("/v1/apply", json=body).json()
    header, tensors = _binary_answer(client.post("/v1/apply", json={**body, "binary_data_output": True}))
    assert header["probs"] is None and header["n"] == 9 and header["method"] == as_json["method"]
    probs = tensors["probs"]
    assert probs.shape == (9, 4) and header["outputs"][0]["datatype"] == datatype  # float32 stays float32
    np.testing.assert_array_equal(probs, np.asarray(as_json["probs"], dtype=probs.dtype))
    expected = sp.softmax(logits.astype(np.float64) / 2.0, axis=1)
    np.testing.assert_allclose(probs, expected, rtol=1e-5 if dtype == np.float32 else 1e-12)


def test_binary_apply_sends_the_positive_class_vector(client):
    body = {"logits": [0.0, 2.0, -1.0], "temperature": 1.0, "binary_data_output": True}
    header, tensors = _binary_answer(client.post("/v1/apply", json=body))
    assert header["outputs"][0]["shape"] == [3]
    np.testing.assert_allclose(tensors["probs"], sp.expit([0.0, 2.0, -1.0]), rtol=1e-12)


@pytest.mark.parametrize("path", ["/v1/temperature", "/v1/recalibrate"])
def test_fits_send_their_probs_as_a_binary_tensor_when_returned(client, rng, path):
    logits = 3 * rng.standard_normal((40, 3))
    body = {"logits": logits.tolist(), "labels": rng.integers(0, 3, 40).tolist(), "return_probs": True}
    if path == "/v1/recalibrate":
        body["method"] = "vector"
    as_json = client.post(path, json=body).json()
    header, tensors = _binary_answer(client.post(path, json={**body, "binary_data_output": True}))
    np.testing.assert_array_equal(tensors["probs"], np.asarray(as_json["probs"]))
    assert header["probs"] is None and header["parameters"] == as_json["parameters"]
    # without return_probs there is no array to send: plain JSON
    plain = client.post(path, json={**body, "return_probs": False, "binary_data_output": True})
    assert plain.headers["content-type"] == "application/json" and plain.json()["probs"] is None


def _result() -> CrossEntropyResult:
    convention = CrossEntropyConvention(
        input="logits", form="categorical", truth="labels", dtype="float32", base="e", unit="nats",
        reduction="none", eps=0.0, n_clipped=0, tolerance=1e-6, n_normalized=0, label_smoothing=0.0,
        class_weights=False, ignore_index=None, matches="torch",
    )  # fmt: skip
    return CrossEntropyResult(
        n=3, n_ignored=0, loss=None, accuracy=0.5, mean_entropy=2.0, convention=convention
    )


@pytest.mark.parametrize(
    "values",
    [
        np.array([0.1, 1e-7, 2.0, 5e-324, 1.7976931348623157e308, 1 / 3, 0.0]),
        np.array([0.1, 1e-7, 2.0, 3.4e38, 1e-45, 1 / 3], dtype=np.float32),  # printed as the doubles they are
        np.arange(6, dtype=np.int64),
    ],
)
def test_json_arrays_from_buffers_print_exactly_what_the_pydantic_path_printed(values):
    result = _result()
    fast = respond(result, {"losses": values}, binary=False).body
    # Validated as the route's model would be (ints under `losses` become floats).
    slow = json_response(
        CrossEntropyResult.model_validate({**result.model_dump(), "losses": values.tolist()})
    ).body
    assert fast == slow


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_finite_values_keep_their_string_form(dtype):
    values = np.array([np.inf, np.nan, 1.0, -np.inf, 0.1], dtype)
    answer = respond(_result(), {"losses": values}, binary=False).body
    assert json.loads(answer)["losses"] == ["Infinity", "NaN", 1.0, "-Infinity", float(dtype(0.1))]
    assert answer == json_response(_result().model_copy(update={"losses": values.tolist()})).body


def test_non_finite_values_of_a_matrix_are_replaced_in_place():
    from service.api.routes import _with_non_finite_strings

    a = np.array([[0.5, np.inf], [-np.inf, np.nan], [1.0, 2.0]])
    got = _with_non_finite_strings(a.tolist(), a, np.isfinite(a))
    assert got == [[0.5, "Infinity"], ["-Infinity", "NaN"], [1.0, 2.0]]


def test_divergence_rows_come_as_binary_tensors_named_under_per_sample(client, rng):
    p = sp.softmax(rng.standard_normal((12, 4)), axis=1).astype(np.float32)
    q = sp.softmax(rng.standard_normal((12, 4)), axis=1).astype(np.float32)
    body = {
        name: {"shape": [12, 4], "datatype": "FP32", "data": values.ravel().tolist()}
        for name, values in (("p_probs", p), ("q_probs", q))
    }
    body["per_sample"] = True
    as_json = client.post("/v1/divergence", json=body).json()
    header, tensors = _binary_answer(client.post("/v1/divergence", json={**body, "binary_data_output": True}))
    assert header["per_sample"] is None and header["mean"] == as_json["mean"]
    assert list(tensors) == [f"per_sample.{name}" for name in as_json["per_sample"]]
    for name, values in as_json["per_sample"].items():
        tensor = tensors[f"per_sample.{name}"]
        assert tensor.dtype == np.float32 and tensor.shape == (12,)  # float32 rows stay float32
        np.testing.assert_array_equal(tensor, np.asarray(values, np.float32))
    np.testing.assert_allclose(tensors["per_sample.kl_pq"], sp.rel_entr(p, q).sum(axis=1), rtol=1e-5)
    # without per_sample there is no array to send: plain JSON
    plain = client.post("/v1/divergence", json={**body, "per_sample": False, "binary_data_output": True})
    assert plain.headers["content-type"] == "application/json" and plain.json()["per_sample"] is None


def test_divergence_rows_with_infinities_keep_their_strings_in_json(client):
    body = {
        "p_probs": [[0.5, 0.5], [1.0, 0.0]],
        "q_probs": [[1.0, 0.0], [0.5, 0.5]],
        "eps": 0,
        "per_sample": True,
    }
    rows = client.post("/v1/divergence", json=body).json()["per_sample"]
    assert rows["kl_pq"] == ["Infinity", pytest.approx(np.log(2))]
    assert rows["kl_qp"] == [pytest.approx(np.log(2)), "Infinity"]
    np.testing.assert_allclose(rows["js_divergence"], jensenshannon([0.5, 0.5], [1.0, 0.0]) ** 2, rtol=1e-12)


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/v1/apply", {"logits": [[1.0, 0.0]], "temperature": 1.0}),
        ("/v1/temperature", {"logits": [[1.0, 0.0]], "labels": [0]}),
        ("/v1/divergence", {"p_probs": [[0.5, 0.5]], "q_probs": [[0.5, 0.5]], "per_sample": True}),
    ],
)
def test_a_binary_data_output_that_is_not_a_boolean_is_a_422_naming_it(client, path, fields):
    body = {**fields, "binary_data_output": "sometimes"}
    assert_problem(client.post(path, json=body), 422, "#/binary_data_output", "boolean")
