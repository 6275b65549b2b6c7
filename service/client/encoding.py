"""Request bodies from NumPy arrays: each array becomes an Open Inference Protocol tensor object.

A tensor object ``{"shape": [N, K], "datatype": "FP32", "data": [...]}`` keeps the
array's dtype on the wire (float32 is scored in float32), and orjson writes the
flat data straight from the array's buffer, without a Python loop.
"""

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

#: OIP datatype of each NumPy dtype the service accepts (booleans are sent as UINT8).
DATATYPES: dict[np.dtype[Any], str] = {
    np.dtype(np.float16): "FP16",
    np.dtype(np.float32): "FP32",
    np.dtype(np.float64): "FP64",
    np.dtype(np.int8): "INT8",
    np.dtype(np.int16): "INT16",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.uint8): "UINT8",
    np.dtype(np.uint16): "UINT16",
    np.dtype(np.uint32): "UINT32",
    np.dtype(np.uint64): "UINT64",
}


def tensor(array: Any, name: str) -> dict[str, Any]:
    """The OIP tensor object of `array` (anything :func:`numpy.asarray` accepts).

    Raises
    ------
    TypeError
        When the array does not hold numbers the service accepts, or is not 1-D or 2-D.
    """
    data = np.asarray(array)
    if data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.byteorder == ">":
        data = data.astype(data.dtype.newbyteorder("="))
    datatype = DATATYPES.get(data.dtype)
    if datatype is None:
        raise TypeError(f"`{name}` must hold numbers; got dtype {data.dtype}")
    if data.ndim not in (1, 2):
        raise TypeError(f"`{name}` must be 1-D (N) or 2-D (N×K); got shape {data.shape}")
    flat = np.ascontiguousarray(data).reshape(-1)
    return {"shape": list(data.shape), "datatype": datatype, "data": flat}


def encode_json(fields: Mapping[str, Any]) -> bytes:
    """A JSON body of `fields`: ndarrays become tensor objects, None values are left out.

    Lists and tuples of numbers are sent as they are; wrap them in :func:`numpy.asarray`
    to send a tensor instead.
    """
    body = {
        name: tensor(value, name) if isinstance(value, np.ndarray) else value
        for name, value in fields.items()
        if value is not None
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)
