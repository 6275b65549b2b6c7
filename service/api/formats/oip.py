"""Open Inference Protocol (KServe v2) inference responses: a /v1 result as named output tensors.

Every field of the /v1 result becomes an output named by its path (``loss``, ``mean.kl_pq``,
``before.nll``, ``reliability.0.count``): numbers as shape ``[1]`` (``FP64``; integers ``INT64``,
booleans ``BOOL``), strings as ``BYTES`` ``[1]``, lists of numbers as ``[n]`` or ``[n, m]`` ``FP64``,
and the per-sample arrays (``losses``, ``per_sample.kl_pq``, ``probs``) in the dtype they were
computed in, shape ``[N]`` or ``[N, K]``. Null fields are left out. The ``convention`` object goes
to the response's ``parameters`` (one entry per field; lists as JSON text).

Outputs go as JSON ``data`` or, when asked (``binary_data_output`` or an output's
``parameters.binary_data``), as raw little-endian bytes after the JSON header (the binary tensor
extension; ``BYTES`` elements as a 4-byte little-endian length and UTF-8 bytes each).
"""

import struct
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from service.core import InputError

#: OIP datatype of each NumPy dtype an output can have.
_DATATYPES = {
    "float64": "FP64",
    "float32": "FP32",
    "float16": "FP16",
    "int64": "INT64",
    "int32": "INT32",
    "bool": "BOOL",
    "object": "BYTES",
}
_NON_FINITE = {"Infinity": np.inf, "-Infinity": -np.inf, "NaN": np.nan}


def output_tensors(result: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The outputs of a /v1 result (its JSON form, without `convention`) and its per-sample arrays."""
    tensors: dict[str, np.ndarray] = {}
    _flatten(result, "", tensors)
    tensors.update(arrays)  # in place of the null the result holds for each
    return tensors


def _flatten(value: Any, name: str, out: dict[str, np.ndarray]) -> None:
    if value is None:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{name}.{key}" if name else key, out)
    elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        for i, item in enumerate(value):
            _flatten(item, f"{name}.{i}", out)
    else:
        out[name] = _leaf(value)


def _leaf(value: Any) -> np.ndarray:
    """A scalar or a (nested) list of one kind as an array of shape [1], [n] or [n, m]."""
    if isinstance(value, bool):
        return np.array([value])
    if isinstance(value, int):
        return np.array([value], dtype=np.int64)
    if isinstance(value, float) or (isinstance(value, str) and value in _NON_FINITE):
        return np.array([_number(value)], dtype=np.float64)
    if isinstance(value, str):
        return np.array([value], dtype=object)
    flat = _flat_list(value)
    if flat and all(isinstance(item, str) and item not in _NON_FINITE for item in flat):
        return np.array(value, dtype=object)
    if all(isinstance(item, int | float | str) or item is None for item in flat):
        if value and isinstance(value[0], list):
            return np.array([[_number(v) for v in row] for row in value], dtype=np.float64)
        return np.array([_number(v) for v in value], dtype=np.float64)
    return np.array([orjson.dumps(value).decode()], dtype=object)  # anything else: JSON text


def _flat_list(value: list[Any]) -> list[Any]:
    if value and all(isinstance(row, list) for row in value):
        if len({len(row) for row in value}) == 1:
            return [item for row in value for item in row]
        return [value]  # ragged: not a tensor
    return value


def _number(value: Any) -> float:
    """A JSON number of a result, or its "Infinity"/"-Infinity"/"NaN" string, or null (NaN)."""
    if value is None:
        return float("nan")
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def convention_parameters(convention: dict[str, Any] | None) -> dict[str, Any]:
    """The `convention` of a result as OIP parameters: strings, numbers and booleans only."""
    if not convention:
        return {}
    return {
        key: value if isinstance(value, str | int | float | bool) else orjson.dumps(value).decode()
        for key, value in convention.items()
        if value is not None
    }


def select(
    tensors: dict[str, np.ndarray], requested: list[Any] | None, binary_default: bool
) -> list[tuple[str, np.ndarray, bool]]:
    """The outputs to send, in order, each with whether it goes binary; all of them when none were named."""
    if not requested:
        return [(name, tensor, binary_default) for name, tensor in tensors.items()]
    chosen = []
    for i, output in enumerate(requested):
        name = output.get("name")
        if name not in tensors:
            raise InputError(
                f"outputs.{i}.name",
                f"must name an output of this answer ({', '.join(tensors)}); got {name!r}",
            )
        binary = (output.get("parameters") or {}).get("binary_data")
        binary = binary_default if binary is None else binary
        if not isinstance(binary, bool):
            raise InputError(f"outputs.{i}.parameters.binary_data", f"must be a boolean; got {binary!r}")
        chosen.append((name, tensors[name], binary))
    return chosen


def infer_response(header: dict[str, Any], outputs: list[tuple[str, np.ndarray, bool]]) -> Response:
    """The inference response: `header` (model_name, id, ...) with `outputs`, JSON or binary extension."""
    described, payload = [], []
    for name, tensor, binary in outputs:
        entry: dict[str, Any] = {
            "name": name,
            "datatype": _DATATYPES[tensor.dtype.name],
            "shape": list(tensor.shape),
        }
        if binary:
            raw = _raw_bytes(tensor)
            entry["parameters"] = {"binary_data_size": len(raw)}
            payload.append(raw)
        else:
            entry["data"] = _json_data(tensor)
        described.append(entry)
    head = orjson.dumps({**header, "outputs": described}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not payload:
        return Response(head, media_type="application/json")
    return Response(
        head + b"".join(payload),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )


def _raw_bytes(tensor: np.ndarray) -> bytes:
    if tensor.dtype == object:
        return b"".join(struct.pack("<I", len(b)) + b for b in (str(s).encode() for s in tensor.ravel()))
    return np.ascontiguousarray(tensor, dtype=tensor.dtype.newbyteorder("<")).tobytes()


def _json_data(tensor: np.ndarray) -> Any:
    """Row-major flat data; non-finite floats as "Infinity"/"-Infinity"/"NaN" (JSON has no such numbers)."""
    flat = tensor.ravel()
    if tensor.dtype.kind != "f":
        return flat.tolist() if tensor.dtype == object else flat
    finite = np.isfinite(flat)
    if finite.all():
        return flat.astype(np.float64, copy=False)  # orjson prints the buffer: 2 is 2.0
    values: list[Any] = flat.astype(np.float64).tolist()
    for i in np.flatnonzero(~finite).tolist():
        v = values[i]
        values[i] = "NaN" if v != v else ("Infinity" if v > 0 else "-Infinity")
    return values
