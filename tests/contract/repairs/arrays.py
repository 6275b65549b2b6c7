"""The arrays of a drawn request: nested lists and OIP tensor objects, read, cut to shape and written back.

Every repair module works through these: a field by its role (:func:`fields_of`), its values as an
ndarray (:func:`array_of`), written back in the form it came in (:func:`put_array`). :data:`REPAIRED`
counts the repairs made, per kind (read by the terminal summary in tests/conftest.py).
"""

import itertools
import math
from collections import Counter
from typing import Any

import numpy as np

#: Largest dimension a repaired tensor keeps (a 3-D tensor holds at most CAP³ values).
CAP = 6


#: The fields that hold arrays (the inputs of an inference request), over every endpoint.
ARRAY_FIELDS = (
    "logits",
    "probs",
    "scores",
    "labels",
    "targets",
    "sample_weight",
    "weight",
    "mask",
    "p_probs",
    "p_logits",
    "q_probs",
    "q_logits",
    "timestamps",
)


PREDICTIONS = ("logits", "probs", "scores", "p_probs", "p_logits", "q_probs", "q_logits")


PROBABILITIES = ("probs", "p_probs", "q_probs")


#: Repairs made, per kind.
REPAIRED: Counter[str] = Counter()


def flat(values: Any) -> list[Any]:
    if isinstance(values, list):
        return [v for item in values for v in flat(item)]
    return [values]


def cycled(values: list[Any], n: int) -> list[Any]:
    return list(itertools.islice(itertools.cycle(values), n)) if values else []


def _dims(shape: Any) -> list[int] | None:
    """A shape's dimensions as ints (JSON Schema counts `3.0` an integer), or None."""
    if not isinstance(shape, list):
        return None
    dims = []
    for d in shape:
        if isinstance(d, bool) or not isinstance(d, int | float) or not float(d).is_integer():
            return None
        dims.append(int(d))
    return dims


def is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("data"), list)


def fix_tensor(tensor: dict[str, Any]) -> None:
    """Cut `tensor`'s shape to CAP per dimension and give its `data` prod(shape) values (flat).

    With no shape, its nested `data` is made rectangular instead.
    """
    values = flat(tensor["data"])
    if not values:
        return
    dims = _dims(tensor.get("shape"))
    if dims is None:
        depth = depth_of(tensor["data"])
        fixed = rectangular(tensor["data"], depth)
        if fixed != tensor["data"]:
            REPAIRED["rows of one length"] += 1
            tensor["data"] = fixed
        return
    shape = [max(1, min(d, CAP)) for d in dims]
    n = math.prod(shape)
    if shape != tensor["shape"] or len(values) != n or values != tensor["data"]:
        REPAIRED["tensor shape and data"] += 1
    tensor["shape"], tensor["data"] = shape, cycled(values, n)


def depth_of(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth, value = depth + 1, value[0]
    return depth


def rectangular(value: list[Any], depth: int) -> list[Any]:
    """`value` (nested lists) with every row as long as the first, cut to CAP per dimension."""
    dims, first = [], value
    for _ in range(depth):
        dims.append(min(len(first), CAP))
        first = first[0]
    return _rebuilt(value, dims) or value


def _rebuilt(value: Any, dims: list[int]) -> list[Any] | None:
    if not isinstance(value, list) or not value:
        return None
    items = cycled(value, dims[0])
    if len(dims) == 1:
        return None if any(isinstance(v, list) for v in items) else items
    rows = [_rebuilt(row, dims[1:]) for row in items]
    return None if any(row is None for row in rows) else rows


def array_of(value: Any) -> np.ndarray | None:
    """The numeric ndarray of a field (nested lists or a tensor object), or None."""
    data = value
    if is_tensor(value):
        try:
            array = np.asarray(value["data"], dtype=np.float64)
            dims = _dims(value.get("shape"))
            return array if dims is None else array.reshape(dims)
        except (ValueError, TypeError):
            return None
    try:
        array = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        return None
    return array if array.ndim >= 1 else None


def put_array(
    body: dict[str, Any], name: str, array: np.ndarray, like: Any, *, integer: bool | None = None
) -> None:
    """Write `array` back as `like` (a tensor, changed in place) or as `body[name]` (nested lists).

    Integers stay integers unless `integer` is False (fractions: a tensor's integer datatype becomes FP64).
    """
    integer = is_integer_field(like) if integer is None else integer
    values = array.astype(np.int64) if integer else array
    if is_tensor(like) and not integer and str(like.get("datatype", "")).startswith(("INT", "UINT", "BOOL")):
        like["datatype"] = "FP64"
    if is_tensor(like):
        like["shape"], like["data"] = list(array.shape), values.reshape(-1).tolist()
    else:
        body[name] = values.tolist()


def as_sent(array: np.ndarray, like: Any) -> np.ndarray:
    """`array` as the server reads it from `like`: rounded to a tensor's FP16, FP32 or BF16 datatype."""
    datatype = like.get("datatype") if is_tensor(like) else None
    if datatype == "FP16":
        return array.astype(np.float16)
    if datatype in ("FP32", "BF16"):
        single = array.astype(np.float32)
        # (BF16: the top half of a float32, rounded to nearest even, as the server's reader does)
        return single if datatype == "FP32" else _bfloat16(single)
    return array


def _bfloat16(single: np.ndarray) -> np.ndarray:
    bits = single.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return rounded.astype(np.uint32).view(np.float32)


def is_integer_field(value: Any) -> bool:
    values = flat(value["data"] if is_tensor(value) else value)
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def fields_of(body: dict[str, Any]) -> dict[str, Any]:
    """Array fields by role: a JSON body's own, or an inference request's inputs (role or name)."""
    if isinstance(body.get("inputs"), list):
        fields = {}
        for item in body["inputs"]:
            if not isinstance(item, dict):
                continue
            parameters = item.get("parameters") if isinstance(item.get("parameters"), dict) else {}
            role = parameters.get("role") or item.get("name")
            if isinstance(role, str) and is_tensor(item):
                fields[role] = item
        return fields
    return {k: v for k, v in body.items() if k in ARRAY_FIELDS and v is not None}


def predictions_of(fields: dict[str, Any]) -> np.ndarray | None:
    like = next((fields[name] for name in PREDICTIONS if name in fields), None)
    return None if like is None else array_of(like)


def drop(body: dict[str, Any], name: str) -> bool:
    """Leave out an option or input `name` (an inference request's input by role); whether it was sent."""
    options, dropped = options_of(body), False
    if options is not None and options.get(name) is not None:
        del options[name]
        dropped = True
    if isinstance(body.get("inputs"), list):
        kept = [item for item in body["inputs"] if fields_of({"inputs": [item]}).get(name) is None]
        dropped = dropped or len(kept) != len(body["inputs"])
        body["inputs"] = kept
    return dropped


def array_or_none(value: Any) -> np.ndarray | None:
    return None if value is None else array_of(value)


def options_of(body: dict[str, Any]) -> dict[str, Any] | None:
    """Where the options are: an inference request's `parameters`, else the JSON body itself."""
    if isinstance(body.get("inputs"), list):
        options = body.get("parameters")
        return options if isinstance(options, dict) else None
    return body


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def member(value: Any, classes: list[Any]) -> bool:
    """Whether a label is one of `classes` (a name equal in value and kind: 2.0 is the integer 2)."""
    return not isinstance(value, bool) and any(
        value == c and isinstance(value, str) == isinstance(c, str) for c in classes
    )
