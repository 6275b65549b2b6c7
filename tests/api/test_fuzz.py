"""Issue 6: hypothesis-generated garbage for every route is a 4xx (or a 200), never a 5xx."""

import io
import json
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as npst

from service.api.formats.arrays import DATATYPES
from service.app import create_app
from service.settings import Settings

from .routes import body_fields, get_routes, post_routes

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def client() -> TestClient:
    """Small limits so that large garbage meets them too; 500s come back as responses."""
    app = create_app(Settings(max_body_bytes=64 * 1024, max_elements=20_000))
    return TestClient(app, raise_server_exceptions=False)


def check(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json", response.headers
        problem = response.json()
        assert problem["status"] == response.status_code
        assert isinstance(problem["detail"], str)


numbers = (
    st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(-(2**70), 2**70)
    | st.sampled_from([0, 1, -1, 0.5, 1e-320, 1e308, -0.0, 2**63, 2**64, -(2**63) - 1])
)
scalars = st.none() | st.booleans() | numbers | st.text(max_size=8)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)
rows = st.integers(0, 4).flatmap(lambda k: st.lists(st.lists(numbers, min_size=k, max_size=k), max_size=5))
tensors = st.fixed_dictionaries(
    {
        "shape": st.lists(st.integers(-2, 6) | st.booleans() | st.none(), max_size=3),
        "datatype": st.sampled_from([*DATATYPES, "BOOL", "BYTES", ""]) | json_values,
        "data": st.lists(numbers | scalars, max_size=12) | json_values,
    },
    optional={"name": st.text(max_size=8), "parameters": json_values},
)
array_like = rows | st.lists(numbers, max_size=6) | tensors | json_values


def structured_bodies(path: str) -> st.SearchStrategy[dict[str, Any]]:
    """Objects whose keys are the route's own fields (plus strays) and whose values are anything."""
    names = [*body_fields(path), "extra", ""]
    return st.dictionaries(st.sampled_from(names), array_like | json_values, max_size=len(names))


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(data=st.binary(max_size=512))
def test_random_bytes_are_never_a_server_error(client, path, data):
    check(client.post(path, content=data, headers=JSON))


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(value=json_values)
def test_random_json_is_never_a_server_error(client, path, value):
    check(client.post(path, content=json.dumps(value), headers=JSON))


@pytest.mark.parametrize("path", post_routes())
@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_route_shaped_garbage_is_never_a_server_error(client, path, data):
    body = data.draw(structured_bodies(path))
    check(client.post(path, content=json.dumps(body), headers=JSON))


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(data=st.data())
def test_corrupted_json_is_never_a_server_error(client, path, data):
    """A route-shaped body cut short or with one byte replaced."""
    body = json.dumps(data.draw(structured_bodies(path))).encode()
    cut = data.draw(st.integers(0, len(body)))
    byte = data.draw(st.binary(min_size=1, max_size=1))
    corrupted = body[:cut] + byte + body[cut + 1 :] if data.draw(st.booleans()) else body[:cut]
    check(client.post(path, content=corrupted, headers=JSON))


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(
    content_type=st.binary(max_size=40).filter(lambda b: not set(b) & set(b"\r\n\x00"))
    | st.sampled_from([b"", b";", b"json", b"application/json; charset=latin-1"]),
    method=st.sampled_from(["GET", "PUT", "PATCH", "DELETE", "POST"]),
)
def test_garbage_headers_and_methods_are_never_a_server_error(client, path, content_type, method):
    check(client.request(method, path, content=b"{}", headers={"content-type": content_type}))


@pytest.mark.parametrize("path", get_routes())
@FUZZ
@given(
    query=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3), data=st.binary(max_size=64)
)
def test_get_routes_ignore_garbage(client, path, query, data):
    response = client.request("GET", path, params=query, content=data)
    assert response.status_code == 200


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(
    data=st.binary(max_size=512),
    header_length=st.none() | st.integers(-3, 600).map(str) | st.text(max_size=6),
)
def test_random_binary_extension_bodies_are_never_a_server_error(client, path, data, header_length):
    headers = {"content-type": "application/octet-stream"}
    if header_length is not None and header_length.isascii() and header_length.isprintable():
        headers["inference-header-content-length"] = header_length
    check(client.post(path, content=data, headers=headers))


inference_inputs = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.text(max_size=6),
            "shape": st.lists(st.integers(-1, 5) | json_values, max_size=3),
            "datatype": st.sampled_from([*DATATYPES, "BOOL", "BYTES"]) | json_values,
        },
        optional={
            "parameters": st.fixed_dictionaries(
                {},
                optional={
                    "role": st.sampled_from(["logits", "probs", "labels", "targets", "p_probs", "q_logits"])
                    | json_values,
                    "binary_data_size": st.integers(-8, 200) | json_values,
                },
            ),
            "data": json_values,
        },
    ),
    max_size=3,
)


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(inputs=inference_inputs, tail=st.binary(max_size=256), parameters=st.none() | json_values)
def test_binary_headers_that_lie_are_never_a_server_error(client, path, inputs, tail, parameters):
    """A well-formed JSON header whose shapes, datatypes and sizes disagree with the bytes after it."""
    header: dict[str, Any] = {"inputs": inputs}
    if parameters is not None:
        header["parameters"] = parameters
    head = json.dumps(header).encode()
    headers = {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}
    check(client.post(path, content=head + tail, headers=headers))


@pytest.mark.parametrize("path", post_routes())
@FUZZ
@given(data=st.data())
def test_corrupted_npz_is_never_a_server_error(client, path, data):
    names = data.draw(st.lists(st.sampled_from([*body_fields(path), "parameters", "x"]), max_size=3))
    dtypes = st.sampled_from(["<f4", "<f8", "<i8", "u1", "?", ">f8", "<U3"])
    arrays = {
        name: data.draw(npst.arrays(dtypes, npst.array_shapes(min_dims=0, max_dims=3, max_side=4)))
        for name in names
    }
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    blob = buffer.getvalue()
    cut = data.draw(st.integers(0, len(blob)))
    blob = (
        blob[:cut] + data.draw(st.binary(max_size=4)) + blob[cut + 1 :] if data.draw(st.booleans()) else blob
    )
    check(client.post(path, content=blob, headers={"content-type": "application/x-npz"}))
