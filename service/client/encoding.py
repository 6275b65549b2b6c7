"""Request bodies from NumPy arrays, as JSON tensor objects or the OIP binary tensor extension.

JSON: each array becomes ``{"shape": [N, K], "datatype": "FP32", "data": [...]}``, which keeps
its dtype on the wire (float32 is scored in float32); orjson writes the flat data straight
from the array's buffer, without a Python loop.

Binary (Triton/KServe binary tensor extension): a JSON header
``{"inputs": [{"name", "shape", "datatype", "parameters": {"binary_data_size"}}],
"parameters": {...options}}`` followed by each array's raw little-endian bytes, sent as
``application/octet-stream`` with ``Inference-Header-Content-Length``. The server reads
the tensors in place, so large batches skip JSON number parsing altogether.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from service.api.formats.outputs import put_output

#: OIP datatype by NumPy kind and item size (booleans are sent as UINT8).
DATATYPES: dict[str, str] = {
    "f2": "FP16",
    "f4": "FP32",
    "f8": "FP64",
    "i1": "INT8",
    "i2": "INT16",
    "i4": "INT32",
    "i8": "INT64",
    "u1": "UINT8",
    "u2": "UINT16",
    "u4": "UINT32",
    "u8": "UINT64",
}
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Encoded:
    """A request body and the headers that describe it."""

    content: bytes
    headers: dict[str, str]


def wire_array(array: Any, name: str) -> tuple[np.ndarray, str]:
    """`array` as a contiguous little-endian ndarray, and its OIP datatype.

    Raises
    ------
    TypeError
        When the array does not hold numbers the service accepts, or is not 1-D or 2-D.
    """
    data = np.asarray(array)
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    datatype = DATATYPES.get(f"{data.dtype.kind}{data.dtype.itemsize}")
    if datatype is None:
        raise TypeError(f"`{name}` must hold numbers; got dtype {data.dtype}")
    if data.ndim not in (1, 2):
        raise TypeError(f"`{name}` must be 1-D (N) or 2-D (N×K); got shape {data.shape}")
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")), datatype


def tensor(array: Any, name: str) -> dict[str, Any]:
    """The OIP tensor object of `array` (anything :func:`numpy.asarray` accepts)."""
    data, datatype = wire_array(array, name)
    return {"shape": list(data.shape), "datatype": datatype, "data": data.reshape(-1)}


def _present(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def encode_json(fields: Mapping[str, Any]) -> Encoded:
    """A JSON body of `fields`: ndarrays become tensor objects, None values are left out.

    Lists and tuples of numbers are sent as they are; wrap them in :func:`numpy.asarray`
    to send a tensor instead.
    """
    body = {
        name: tensor(value, name) if isinstance(value, np.ndarray) else value
        for name, value in _present(fields).items()
    }
    content = orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
    return Encoded(content, {"Content-Type": "application/json"})


def encode_binary(fields: Mapping[str, Any]) -> Encoded:
    """A binary-extension body: ndarrays as raw tensors after the header, the rest as parameters."""
    inputs: list[dict[str, Any]] = []
    blobs: list[np.ndarray] = []
    options: dict[str, Any] = {}
    for name, value in _present(fields).items():
        if isinstance(value, np.ndarray):
            data, datatype = wire_array(value, name)
            size = {"binary_data_size": data.nbytes}
            inputs.append({"name": name, "shape": list(data.shape), "datatype": datatype, "parameters": size})
            blobs.append(data)
        else:
            options[name] = value
    header = orjson.dumps({"inputs": inputs, "parameters": options})
    content = b"".join([header, *(blob.data for blob in blobs)])
    return Encoded(content, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))})


def n_elements(fields: Mapping[str, Any]) -> int:
    """Total array elements in `fields` (what decides between JSON and binary)."""
    return sum(value.size for value in fields.values() if isinstance(value, np.ndarray))


#: NumPy dtype of each OIP datatype, little-endian.
DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(f"<{code}") for code, name in DATATYPES.items()}


def decode_response(content: bytes, header_length: str | None) -> dict[str, Any]:
    """The JSON object of a response body; a binary-output body's ``outputs`` become ndarrays.

    With ``binary_data_output: true`` the server sends a JSON header of `header_length`
    bytes whose ``outputs`` list describes raw little-endian tensors that follow it;
    each is put back under its name (e.g. ``losses``), a dotted name in a nested object
    (``per_sample.kl_pq`` as ``body["per_sample"]["kl_pq"]``), where the JSON answer has it.
    """
    if header_length is None:
        body: dict[str, Any] = orjson.loads(content)
        return body
    length = int(header_length)
    body = orjson.loads(content[:length])
    offset = length
    for output in body.pop("outputs", []):
        dtype = DTYPES[output["datatype"]]
        count = int(np.prod(output["shape"]))
        array = np.frombuffer(content, dtype=dtype, count=count, offset=offset)
        put_output(body, output["name"], array.reshape(output["shape"]))
        offset += output["parameters"]["binary_data_size"]
    return body
