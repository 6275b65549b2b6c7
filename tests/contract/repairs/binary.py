"""Binary bodies: a repaired JSON request encoded as the binary tensor extension or as an npz archive, set as
the case's starting state."""

import io
import json
from typing import Any

import numpy as np
from schemathesis.transport.serialization import Binary

from tests.contract.repairs.arrays import ARRAY_FIELDS, REPAIRED, array_of, flat, is_integer_field, is_tensor

BINARY_MEDIA_TYPES = ("application/octet-stream", "application/x-npz")


#: NumPy dtype of each OIP datatype (BF16 is written as the top half of a float32).
DTYPES = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "BF16": "<f4",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "BOOL": "<u1",
}


#: The JSON request each binary body was encoded from, by the body's bytes (read by the refusal log).
ENCODED_FROM: dict[bytes, dict[str, Any]] = {}


def _tensor_bytes(tensor: dict[str, Any]) -> bytes:
    datatype = tensor.get("datatype", "FP64")
    array = _values(tensor["data"], DTYPES.get(datatype, "<f8"))
    if datatype == "BF16":
        return array.view("<u4").__rshift__(16).astype("<u2").tobytes()
    return array.tobytes()


def _as_inference_request(body: dict[str, Any]) -> dict[str, Any]:
    """A JSON body as an inference request: its array fields as tensors, the rest as parameters."""
    if isinstance(body.get("inputs"), list):
        return body
    inputs, parameters = [], {}
    for name, value in body.items():
        array = None if name not in ARRAY_FIELDS else array_of(value)
        if array is None:
            parameters[name] = value
            continue
        integer = is_integer_field(value) or (name == "labels" and bool(np.all(array == np.round(array))))
        datatype = value.get("datatype") if is_tensor(value) else ("INT64" if integer else "FP64")
        data = array.reshape(-1).astype(np.int64).tolist() if integer else array.reshape(-1).tolist()
        if integer and not is_tensor(value):  # the JSON's own integers (the array may be float64)
            data = [int(v) for v in flat(value)]
        inputs.append({"name": name, "shape": list(array.shape), "datatype": datatype, "data": data})
    return {"inputs": inputs, "parameters": parameters}


def _values(data: list[Any], dtype: str) -> np.ndarray:
    """A tensor's `data` as `dtype`; integers exactly (a list mixing 2**63 - 1 and 2.0: float64)."""
    if np.dtype(dtype).kind in "iu":
        return np.asarray([int(v) for v in flat(data)], dtype=dtype)
    return np.asarray(data, dtype=dtype)


def encode_binary(body: dict[str, Any]) -> tuple[bytes, int]:
    """The binary-extension body of a JSON request and its header's length."""
    request = _as_inference_request(body)
    blobs = []
    inputs = []
    for item in request["inputs"]:
        item = dict(item)
        if "data" in item:
            blob = _tensor_bytes(item)
            del item["data"]
            parameters = dict(item.get("parameters") or {})
            parameters["binary_data_size"] = len(blob)
            item["parameters"] = parameters
            blobs.append(blob)
        inputs.append(item)
    header = json.dumps({**request, "inputs": inputs}, separators=(",", ":")).encode()
    return header + b"".join(blobs), len(header)


def encode_npz(body: dict[str, Any]) -> bytes:
    """The npz archive of a JSON request: one array per field, the options as a JSON `parameters`."""
    request = _as_inference_request(body)
    arrays: dict[str, np.ndarray] = {}
    for item in request["inputs"]:
        parameters = item.get("parameters") if isinstance(item.get("parameters"), dict) else {}
        role = parameters.get("role") or item["name"]
        dtype = DTYPES.get(item.get("datatype", "FP64"), "<f8")
        arrays[role] = _values(item["data"], dtype).reshape(item["shape"])
    options = request.get("parameters") or {}
    if options:
        arrays["parameters"] = np.asarray(json.dumps(options))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def set_binary(
    case: Any, content: bytes, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None
) -> None:
    """Set a binary body (and headers) as the case's starting state, not as an edit to revalidate.

    schemathesis 4.32.5 revalidates a component a hook changed, and calls any body of bytes invalid
    (``Case._validate_component``: ``contains_binary(value)`` -> False), so the case would turn
    negative; but the document's body is ``{"type": "string", "format": "binary"}``, which every
    string of bytes matches. ``Case._record_starting_state`` is what schemathesis itself does with
    the auth and overrides it writes after generation: the containers as they are now are the case.
    """
    object.__setattr__(case, "body", Binary(content))
    if body is not None:
        ENCODED_FROM[content] = body
    if headers:
        object.__setattr__(case, "headers", {**(case.headers or {}), **headers})
    case._record_starting_state()


def to_binary(case: Any, media_type: str, body: dict[str, Any]) -> Any:
    """`case` sent as `media_type`, its body the positive JSON request `body` encoded."""
    case.media_type = media_type
    if media_type == "application/x-npz":
        set_binary(case, encode_npz(body), body=body)
        REPAIRED["npz body"] += 1
    else:
        content, length = encode_binary(body)
        set_binary(case, content, {"Inference-Header-Content-Length": str(length)}, body)
        REPAIRED["binary-extension body"] += 1
    return case
