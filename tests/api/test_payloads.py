"""OIP inference-request envelopes, the binary tensor extension and npz bodies."""

import io
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tests.conftest import assert_problem

URL = "/v1/cross-entropy"


def _expected(logits, labels):
    return F.cross_entropy(torch.from_numpy(logits.astype(np.float64)), torch.from_numpy(labels)).item()


def binary_request(inputs, parameters=None):
    """Frame `inputs` [(role, array, datatype)] as a Triton/KServe binary-extension body."""
    header = {
        "inputs": [
            {
                "name": f"output_{i}",
                "shape": list(array.shape),
                "datatype": datatype,
                "parameters": {"role": role, "binary_data_size": array.nbytes},
            }
            for i, (role, array, datatype) in enumerate(inputs)
        ]
    }
    if parameters:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    blob = head + b"".join(
        np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<")).tobytes() for _, a, _ in inputs
    )
    return blob, {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }


def test_inference_request_envelope(client, rng):
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=6)
    body = {
        "id": "batch-1",
        "inputs": [
            {
                "name": "output__0",
                "shape": [6, 4],
                "datatype": "FP32",
                "data": logits.ravel().tolist(),
                "parameters": {"role": "logits"},
            },
            {"name": "labels", "shape": [6], "datatype": "INT64", "data": labels.tolist()},
        ],
        "parameters": {"base": 2},
    }
    result = client.post(URL, json=body).json()
    assert result["loss"] == pytest.approx(_expected(logits, labels) / np.log(2), rel=1e-6)
    assert result["convention"]["dtype"] == "float32"
    assert result["convention"]["unit"] == "bits"


def test_envelope_accepts_nested_data(client):
    body = {
        "inputs": [
            {"name": "probs", "shape": [2, 2], "datatype": "FP64", "data": [[0.5, 0.5], [0.25, 0.75]]},
            {"name": "labels", "shape": [2], "datatype": "INT32", "data": [0, 1]},
        ]
    }
    assert client.post(URL, json=body).json()["loss"] == pytest.approx(-(np.log(0.5) + np.log(0.75)) / 2)


def test_envelope_errors_point_into_inputs(client):
    body = {
        "inputs": [
            {"name": "probs", "shape": [2, 2], "datatype": "FP64", "data": [0.5, 0.5, 0.9, 0.9]},
            {"name": "labels", "shape": [2], "datatype": "INT32", "data": [0, 1]},
        ]
    }
    assert_problem(client.post(URL, json=body), 422, "#/inputs/0/data/2", "must sum to 1")
    body["parameters"] = {"reduction": "avg"}
    body["inputs"][0]["data"] = [0.5, 0.5, 0.5, 0.5]
    assert_problem(client.post(URL, json=body), 422, "#/parameters/reduction")


@pytest.mark.parametrize(
    ("body", "pointer", "match"),
    [
        ({"inputs": []}, "#/inputs", "non-empty"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [0.0]}], "extra": 1},
            "#/extra",
            None,
        ),
        (
            {"inputs": [{"shape": [1], "datatype": "FP32", "data": [0.0]}]},
            "#/inputs/0/parameters/role",
            "required",
        ),
        (
            {
                "inputs": [
                    {"name": "labels", "shape": [1], "datatype": "INT32", "data": [0]},
                    {"name": "labels", "shape": [1], "datatype": "INT32", "data": [0]},
                ]
            },
            "#/inputs/1",
            "repeats the role",
        ),
        (
            {
                "inputs": [
                    {"name": "logits", "shape": [1, 2], "datatype": "FP32", "data": [0.0, 1.0]},
                    {"name": "weird", "shape": [1], "datatype": "INT32", "data": [0]},
                ]
            },
            "#/inputs/1/parameters/role",
            r"name 'weird' is not a field of this endpoint; set `parameters.role` to `logits`, `probs`",
        ),
    ],
)
def test_bad_envelopes_are_problem_json(client, body, pointer, match):
    assert_problem(client.post(URL, json=body), 422, pointer, match)


@pytest.mark.parametrize(
    ("datatype", "dtype"), [("FP32", np.float32), ("FP64", np.float64), ("FP16", np.float16)]
)
def test_binary_tensor_extension(client, rng, datatype, dtype):
    logits = rng.standard_normal((50, 5)).astype(dtype)
    labels = rng.integers(0, 5, size=50)
    content, headers = binary_request(
        [("logits", logits, datatype), ("labels", labels.astype(np.int32), "INT32")]
    )
    result = client.post(URL, content=content, headers=headers).json()
    assert result["loss"] == pytest.approx(
        _expected(logits, labels), rel=1e-6 if dtype != np.float64 else 1e-12
    )


def test_binary_tensor_extension_with_misaligned_offset(client, rng):
    probs = np.full((3, 2), 0.5)
    labels = np.array([0, 1, 1], dtype=np.int64)
    content, headers = binary_request(
        [("probs", probs, "FP64"), ("labels", labels, "INT64")], {"base": 2, "x": None}
    )
    headers_pad = dict(headers)
    # Pad the header with a space so the tensors start at an odd offset.
    head_len = int(headers["inference-header-content-length"])
    content = content[:head_len] + b" " + content[head_len:]
    headers_pad["inference-header-content-length"] = str(head_len + 1)
    response = client.post(URL, content=content, headers=headers_pad)
    assert_problem(
        response, 422, "#/parameters/x", "`x` is not a field of this request"
    )  # options are validated too


def test_binary_misaligned_tensors_are_copied_and_correct(client):
    probs = np.full((3, 2), 0.5)
    labels = np.array([0, 1, 1], dtype=np.int64)
    content, headers = binary_request([("probs", probs, "FP64"), ("labels", labels, "INT64")])
    head_len = int(headers["inference-header-content-length"])
    content = content[:head_len] + b" " + content[head_len:]
    headers["inference-header-content-length"] = str(head_len + 1)
    assert client.post(URL, content=content, headers=headers).json()["loss"] == pytest.approx(np.log(2))


def test_binary_size_that_lies_is_rejected_before_allocation(client):
    labels = np.array([0], dtype=np.int64)
    content, headers = binary_request(
        [("logits", np.zeros((1, 2), np.float32), "FP32"), ("labels", labels, "INT64")]
    )
    head = json.loads(content[: int(headers["inference-header-content-length"])])
    head["inputs"][0]["shape"] = [1_000_000_000, 2]
    new_head = json.dumps(head).encode()
    body = new_head + content[int(headers["inference-header-content-length"]) :]
    headers["inference-header-content-length"] = str(len(new_head))
    assert_problem(
        client.post(URL, content=body, headers=headers),
        422,
        "#/inputs/0/parameters/binary_data_size",
        "must equal prod",
    )


def test_binary_body_shorter_than_declared_is_400(client):
    content, headers = binary_request(
        [("logits", np.zeros((4, 2), np.float32), "FP32"), ("labels", np.zeros(4, np.int64), "INT64")]
    )
    assert_problem(client.post(URL, content=content[:-8], headers=headers), 400, match="needs bytes up to")
    assert_problem(client.post(URL, content=content + b"xx", headers=headers), 400, match="the body has")


def test_binary_without_header_length_is_400(client):
    response = client.post(URL, content=b"{}", headers={"content-type": "application/octet-stream"})
    assert_problem(response, 400, match="Inference-Header-Content-Length")


def test_binary_header_length_beyond_body_is_400(client):
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": "999"}
    assert_problem(client.post(URL, content=b"{}", headers=headers), 400)


def _npz(**arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_body(client, rng):
    logits = rng.standard_normal((20, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=20)
    content = _npz(logits=logits, labels=labels, parameters=np.array(json.dumps({"reduction": "sum"})))
    result = client.post(URL, content=content, headers={"content-type": "application/x-npz"}).json()
    assert result["loss"] == pytest.approx(20 * _expected(logits, labels), rel=1e-6)
    assert result["convention"]["dtype"] == "float32"


def test_npz_refuses_object_arrays(client):
    buffer = io.BytesIO()
    np.savez(buffer, logits=np.array([[0.0, 1.0]]), labels=np.array([{"a": 1}], dtype=object))
    response = client.post(URL, content=buffer.getvalue(), headers={"content-type": "application/x-npz"})
    assert_problem(response, 422, "#/labels", "never unpickled")


def test_npz_garbage_is_400(client):
    response = client.post(URL, content=b"PK\x03\x04garbage", headers={"content-type": "application/x-npz"})
    assert_problem(response, 400, match="npz")


def test_npz_element_limit_is_checked_from_the_header(rng):
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    content = _npz(logits=np.zeros((100, 10)), labels=np.zeros(100, np.int64))
    with TestClient(create_app(Settings(max_elements=500))) as small:
        response = small.post(URL, content=content, headers={"content-type": "application/x-npz"})
    assert_problem(response, 413, match="limit is 500")


def test_binary_data_output_returns_raw_losses(client, rng):
    logits = rng.standard_normal((7, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=7)
    content, headers = binary_request(
        [("logits", logits, "FP32"), ("labels", labels, "INT64")],
        {"reduction": "none", "binary_data_output": True},
    )
    response = client.post(URL, content=content, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    size = int(response.headers["inference-header-content-length"])
    header = json.loads(response.content[:size])
    (output,) = header["outputs"]
    assert output == {
        "name": "losses",
        "shape": [7],
        "datatype": "FP32",
        "parameters": {"binary_data_size": 28},
    }
    losses = np.frombuffer(response.content[size:], dtype="<f4")
    expected = F.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels), reduction="none").numpy()
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    assert header["loss"] is None and header["n"] == 7


def test_envelope_duplicate_keys_are_400_and_clean_envelopes_skip_the_reparse(client, monkeypatch):
    import service.api.formats.json_keys as json_keys

    body = (
        b'{"inputs": [{"name": "logits", "shape": [1, 2], "datatype": "FP64", "data": [0.0, 0.0]},'
        b' {"name": "labels", "shape": [1], "datatype": "INT64", "data": [1], "data": [0]}]}'
    )
    assert_problem(
        client.post(URL, content=body, headers={"content-type": "application/json"}), 400, match="repeats"
    )
    calls = []
    monkeypatch.setattr(json_keys.json, "loads", lambda *a, **k: calls.append(1))
    clean = body.replace(b', "data": [0]', b"")
    assert client.post(URL, content=clean, headers={"content-type": "application/json"}).status_code == 200
    assert calls == []


@pytest.mark.parametrize("pad", range(8))
def test_binary_tensors_are_aligned_views_into_the_body_whatever_the_header_length(pad, rng):
    from service.api.formats.arrays import ArrayReader
    from service.api.formats.binary import attach_binary, split_header
    from service.api.formats.envelope import unwrap

    logits = rng.standard_normal((32, 3)).astype(np.float32)  # 384 bytes: the labels after it stay aligned
    labels = rng.integers(0, 3, 32)
    blob, headers = binary_request([("logits", logits, "FP32"), ("labels", labels, "INT64")])
    length = int(headers["inference-header-content-length"])
    body = bytearray(blob[:length] + b" " * pad + blob[length:])  # JSON allows trailing spaces
    fields, header = split_header(body, length + pad)
    assert header == bytes(body[: length + pad])
    envelope = unwrap(fields)
    attach_binary(envelope, body, length + pad, ArrayReader(10**6, may_hold_booleans=False))
    raw = np.frombuffer(body, np.uint8)
    for role, expected in (("logits", logits), ("labels", labels)):
        array = envelope.fields[role]
        np.testing.assert_array_equal(array, expected)
        assert np.shares_memory(array, raw) and array.flags.aligned and not array.flags.writeable


@pytest.mark.parametrize("kind", ["binary", "npz"])
def test_bodies_over_a_mebibyte_are_scored_from_the_preallocated_buffer(client, rng, kind):
    from service.api.formats.body import PREALLOCATE_BYTES

    logits = rng.standard_normal((40_000, 10)).astype(np.float32)  # 1.6 MB
    labels = rng.integers(0, 10, 40_000)
    if kind == "binary":
        blob, headers = binary_request([("logits", logits, "FP32"), ("labels", labels, "INT64")])
    else:
        blob, headers = _npz(logits=logits, labels=labels), {"content-type": "application/x-npz"}
    assert len(blob) >= PREALLOCATE_BYTES
    response = client.post("/v1/cross-entropy", content=blob, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == pytest.approx(_expected(logits, labels), rel=1e-5)
    assert response.json()["n"] == 40_000
