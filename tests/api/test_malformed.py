"""Issue 6: every kind of malformed input is a 4xx problem+json, never a 500 and never a hang."""

import io
import json
import zipfile

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

from .routes import post_routes

ROUTES = post_routes()
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def strict() -> TestClient:
    """Default limits, and server errors turned into responses so a 500 would show as one."""
    return TestClient(create_app(Settings()), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def small() -> TestClient:
    return TestClient(
        create_app(Settings(max_body_bytes=4096, max_elements=100)), raise_server_exceptions=False
    )


BODY_LEVEL = {
    "truncated": (b'{"logits": [[1.0, 2.0], [3.0', 400, "not valid JSON"),
    "truncated mid-string": (b'{"log', 400, "not valid JSON"),
    "nested 10,000 levels": (b'{"logits": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", 400, "not valid JSON"),
    "objects nested 10,000 levels": (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "not valid JSON"),
    "1e999": (b'{"logits": [[1e999, 0]], "labels": [0]}', 400, "infinity"),
    "-1e999 option": (b'{"logits": [[1, 0]], "labels": [0], "eps": -1e999}', 400, "infinity"),
    "NaN literal": (b'{"logits": [[NaN, 0]], "labels": [0]}', 400, "not valid JSON"),
    "Infinity literal": (b'{"logits": [[Infinity, 0]], "labels": [0]}', 400, "not valid JSON"),
    "-Infinity literal": (b'{"logits": [[-Infinity, 0]], "labels": [0]}', 400, "not valid JSON"),
    "duplicate top-level key": (b'{"logits": [[9, 0]], "logits": [[0, 9]], "labels": [0]}', 400, "repeats"),
    "duplicate tensor key": (
        b'{"logits": {"shape": [1, 2], "shape": [2, 1], "datatype": "FP32", "data": [1, 2]}}',
        400,
        "repeats the key 'shape'",
    ),
    "duplicate key spelled with an escape": (b'{"logits": 1, "logit\\u0073": 2}', 400, "repeats"),
    "non-UTF-8 in a string": (b'{"logits": [[1, 0]], "labels": [0], "name": "\xff\xfe"}', 400, "UTF-8"),
    "non-UTF-8 bytes": (b"\xff\xfe\x00{}", 400, "not valid JSON"),
    "latin-1 key": (b'{"caf\xe9": 1}', 400, "UTF-8"),
    "empty body": (b"", 400, "empty"),
    "whitespace body": (b"  \n ", 400, "empty"),
    "JSON array body": (b"[[1, 0]]", 400, "must be a JSON object; got an array"),
    "JSON null body": (b"null", 400, "must be a JSON object; got null"),
    "JSON string body": (b'"logits"', 400, "must be a JSON object; got a string"),
    "trailing garbage": (b'{"logits": [[1, 0]]} {}', 400, "not valid JSON"),
}


#: A KServe logger event's attributes, so the events route reads its (malformed) body.
EVENT = {
    "ce-id": "malformed-1",
    "ce-type": "org.kubeflow.serving.inference.response",
    "ce-source": "tests",
    "ce-specversion": "1.0",
}


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("case", BODY_LEVEL)
def test_malformed_body_is_problem_json(strict, path, case):
    body, status, match = BODY_LEVEL[case]
    headers = JSON | EVENT if path.endswith("/events") else JSON  # (a CloudEvent's body: the same checks)
    assert_problem(strict.post(path, content=body, headers=headers), status, match=match)


def test_duplicate_keys_are_not_flagged_when_colons_sit_in_strings(strict):
    """A colon inside a string (a tensor named like TensorFlow's "logits:0") takes the slow path."""
    body = {
        "logits": {"name": "logits:0", "shape": [1, 2], "datatype": "FP32", "data": [1, 0]},
        "labels": [0],
    }
    response = strict.post("/v1/cross-entropy", content=json.dumps(body), headers=JSON)
    assert response.status_code == 200, response.text


def test_duplicate_keys_in_different_objects_are_fine(strict):
    tensor = {"shape": [2], "datatype": "FP64", "data": [0.5, 0.5]}
    body = json.dumps({"p_probs": tensor, "q_probs": tensor})
    assert strict.post("/v1/divergence", content=body, headers=JSON).status_code == 200


FIELD_LEVEL = {
    "string in logits": (
        {"logits": [[1, "a"]], "labels": [0]},
        "#/logits/0/1",
        "must be a number; got a string",
    ),
    "boolean in logits": ({"logits": [[True, 0]], "labels": [0]}, "#/logits/0/0", "got a boolean"),
    "boolean in labels": ({"logits": [[1, 0]], "labels": [False]}, "#/labels/0", "got a boolean"),
    "null in probs": ({"probs": [[None, 1]], "labels": [0]}, "#/probs/0/0", "got null"),
    "object in logits": ({"logits": [[{}, 1]], "labels": [0]}, "#/logits/0/0", "got an object"),
    "string as logits": ({"logits": "[[1, 0]]", "labels": [0]}, "#/logits", "got a string"),
    "ragged rows": ({"logits": [[1, 0], [1]], "labels": [0, 1]}, "#/logits/1", "ragged"),
    "four levels": ({"logits": [[[[1, 0]]]], "labels": [0]}, "#/logits", None),
    "three levels, labels not B×T": ({"logits": [[[1, 0]]], "labels": [0]}, "#/labels", "B×T"),
    "label too big for 64 bits": ({"logits": [[1, 0]], "labels": [2**70]}, "#/labels", None),
    "negative shape": (
        {"logits": {"shape": [-1, 2], "datatype": "FP32", "data": [1, 2]}, "labels": [0]},
        "#/logits/shape",
        "non-negative",
    ),
    "boolean shape": (
        {"logits": {"shape": [True, 2], "datatype": "FP32", "data": [1, 2]}, "labels": [0]},
        "#/logits/shape",
        None,
    ),
    "4-D shape": (
        {"logits": {"shape": [1, 1, 1, 2], "datatype": "FP32", "data": [1, 2]}, "labels": [0]},
        "#/logits/shape",
        None,
    ),
    "shape/data mismatch": (
        {"logits": {"shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}, "labels": [0, 1]},
        "#/logits/data",
        r"prod\(shape\) = 4",
    ),
    "unknown datatype": (
        {"logits": {"shape": [1, 2], "datatype": "FP8", "data": [1, 2]}, "labels": [0]},
        "#/logits/datatype",
        None,
    ),
    "datatype of the wrong JSON type": (
        {"logits": {"shape": [1, 2], "datatype": {}, "data": [1, 2]}, "labels": [0]},
        "#/logits/datatype",
        None,
    ),
    "datatype as a list": (
        {"logits": {"shape": [1, 2], "datatype": ["FP32"], "data": [1, 2]}, "labels": [0]},
        "#/logits/datatype",
        None,
    ),
    "floats for an INT datatype": (
        {"logits": [[1, 0]], "labels": {"shape": [1], "datatype": "INT64", "data": [0.5]}},
        "#/labels/data",
        "integers",
    ),
    "unknown tensor key": (
        {"logits": {"shape": [1, 2], "datatype": "FP32", "data": [1, 2], "strides": [2, 1]}, "labels": [0]},
        "#/logits/strides",
        None,
    ),
    "unknown option": ({"logits": [[1, 0]], "labels": [0], "temperature": 2}, "#/temperature", None),
    "option of the wrong type": ({"logits": [[1, 0]], "labels": [0], "reduction": 3}, "#/reduction", None),
    "labels shorter than logits": ({"logits": [[1, 0], [0, 1]], "labels": [0]}, "#/labels", None),
    "label out of range": ({"logits": [[1, 0]], "labels": [2]}, "#/labels/0", r"\[0, 2\)"),
    "finite but huge exponent string": ({"logits": [["1e999", 0]], "labels": [0]}, "#/logits/0/0", None),
}


@pytest.mark.parametrize("case", FIELD_LEVEL)
def test_malformed_field_is_422_naming_it(strict, case):
    body, pointer, match = FIELD_LEVEL[case]
    response = strict.post("/v1/cross-entropy", content=json.dumps(body), headers=JSON)
    assert_problem(response, 422, pointer=pointer, match=match)


def test_oversize_body_is_413_from_content_length(small):
    body = b'{"logits": [' + b"[1, 0], " * 1000 + b'[1, 0]], "labels": [0]}'
    assert_problem(small.post("/v1/cross-entropy", content=body, headers=JSON), 413, match="limit is 4096")


def test_oversize_chunked_body_is_413_while_streaming(small):
    """No Content-Length: the limit is enforced on the bytes read so far, not after buffering."""
    sent = []

    def chunks():
        yield b'{"logits": ['
        for _ in range(10_000):
            sent.append(1)
            yield b"[1, 0], " * 10
        yield b"[1, 0]]}"

    response = small.post("/v1/cross-entropy", content=chunks(), headers=JSON)
    assert_problem(response, 413, match="exceeds the limit of 4096 bytes")


def test_lying_content_length_is_not_trusted(small):
    """A small declared length does not let a larger body through."""
    body = b'{"logits": [' + b"[1, 0], " * 1000 + b'[1, 0]], "labels": [0]}'

    def chunks():
        yield body

    headers = {**JSON, "content-length": "10"}
    response = small.post("/v1/cross-entropy", content=chunks(), headers=headers)
    assert 400 <= response.status_code < 500


def test_element_count_over_limit_is_413_before_decoding(small):
    body = {"logits": [[1, 0]] * 60, "labels": [0] * 60}
    assert_problem(small.post("/v1/cross-entropy", json=body), 413, pointer="#/logits", match="limit is 100")


def test_declared_shape_over_limit_is_413_before_allocation(strict):
    """A tensor header claiming 10^22 elements is refused from the header: nothing is allocated."""
    tensor = {"shape": [10**11, 10**11], "datatype": "FP64", "data": [1.0, 2.0]}
    response = strict.post("/v1/cross-entropy", json={"logits": tensor, "labels": [0]})
    assert_problem(response, 413, pointer="#/logits", match="10000000000000000000000 elements")


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"]
)
def test_wrong_content_type_is_415(strict, path, content_type):
    response = strict.post(path, content=b'{"logits": [[1, 0]]}', headers={"content-type": content_type})
    body = assert_problem(response, 415, match="application/json")
    assert body["detail"].startswith("Content-Type")
    assert "application/json" in response.headers["accept-post"]


@pytest.mark.parametrize("path", ROUTES)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(strict, path, method):
    response = strict.request(method, path)
    assert_problem(response, 405)
    assert response.headers["allow"] == "POST"


@pytest.mark.parametrize(
    "path", ["/", "/v1", "/v2/cross-entropy", "/v1/cross-entropy/extra", "/v1/%00", "/..%2f"]
)
def test_unknown_path_is_404(strict, path):
    assert_problem(strict.post(path, json={}), 404)


def _nest(depth: int, opening: bytes, closing: bytes, leaf: bytes = b"1") -> bytes:
    return opening * depth + leaf + closing * depth


#: Nesting just under orjson's own limit of 1,024 levels, so the parse succeeds and every later step
#: (duplicate-key check, tensor checks, option validation, error messages) must cope with the depth.
DEEP = {
    "objects": lambda d: _nest(d, b'{"a":', b"}"),
    "objects under a field": lambda d: _nest(d, b'{"logits":', b"}"),
    "objects under an option": lambda d: _nest(d, b'{"base":', b"}"),
    "arrays under a field": lambda d: b'{"logits": ' + _nest(d - 1, b"[", b"]", b"") + b', "labels": [0]}',
    "arrays as a tensor shape": lambda d: (
        b'{"logits": {"shape": ' + _nest(d - 2, b"[", b"]", b"") + b', "datatype": "FP32", "data": []}}'
    ),
    "arrays as a datatype": lambda d: (
        b'{"logits": {"shape": [1], "datatype": ' + _nest(d - 2, b"[", b"]", b"") + b', "data": [1]}}'
    ),
    "objects inside arrays": lambda d: b'{"a": [' + _nest(d // 2 - 1, b'{"a":[', b"]}", b"") + b"]}",
    "envelope inputs": lambda d: (
        b'{"inputs": [{"name": "logits", "shape": [1], "datatype": "FP32", "data": '
        + _nest(d - 4, b"[", b"]")
        + b"}]}"
    ),
}


@pytest.mark.parametrize("depth", [999, 1000, 1023])
@pytest.mark.parametrize("case", DEEP)
def test_nesting_just_under_the_parser_limit_is_4xx(strict, case, depth):
    body = DEEP[case](depth)
    response = strict.post("/v1/cross-entropy", content=body, headers=JSON)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_huge_values_are_not_echoed_whole(strict):
    shape = [-1] * 100_000
    response = strict.post(
        "/v1/cross-entropy", json={"logits": {"shape": shape, "datatype": "FP32", "data": []}}
    )
    assert_problem(response, 422, pointer="#/logits/shape")
    assert len(response.content) < 2_000


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _lying_npy(shape: tuple[int, ...], dtype: str) -> bytes:
    """A .npy member whose header declares `shape` but which holds 8 bytes of data."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    return header.getvalue() + b"\x00" * 8


def _zip(members: dict[str, bytes], flag_bits: int = 0) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            archive.writestr(info, data)
    blob = bytearray(buffer.getvalue())
    if flag_bits:  # set general-purpose flag bits in the local and central headers
        for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
            at = blob.find(signature)
            blob[at + offset] |= flag_bits
    return bytes(blob)


NPZ = {"content-type": "application/x-npz"}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_zip({"logits.npy": _npz(a=np.zeros(2))}, flag_bits=0x01), 400),  # "encrypted" member
        (_zip({"logits.npy": _lying_npy((10**6, 10**6), "<U1000")}), 422),  # strings: 4 PB declared
        (_zip({"parameters.npy": _lying_npy((10**5,), "<U1000")}), 422),
        (_zip({"logits.npy": _lying_npy((1000, 100), "<f8")}), 400),  # 800 kB declared, 8 B held
        (_zip({"logits.npy": _lying_npy((10**6, 10**3), "<f8")}), 413),  # over the element limit
    ],
)
def test_npz_members_that_lie_are_refused_before_allocation(strict, body, status):
    assert_problem(strict.post("/v1/cross-entropy", content=body, headers=NPZ), status)
