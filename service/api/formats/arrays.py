"""Turn a body's array fields into ndarrays: nested JSON lists or OIP tensor objects.

NumPy converts and checks them (numbers only, not ragged, at most three levels deep, within
the request's element limit); tensor objects ``{"shape", "datatype", "data"}`` are decoded to
their datatype's dtype (:data:`DATATYPES`).
"""

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.core import InputError
from service.core.cancel import checkpoint

from ..errors.problems import ProblemError
from .payload import json_type

#: OIP datatypes accepted for numeric tensors, and the dtype each is decoded to. BF16 tensors are
#: kept as their raw 16-bit words (JSON numbers rounded to them), widened to float32 where they are
#: read (:func:`widen_bf16`), or a block at a time by the sequence kernels.
DATATYPES: dict[str, type[np.generic]] = {
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "BF16": np.uint16,  # bfloat16 bit patterns (JSON numbers are rounded to them)
}
#: Datatypes whose decoded array holds bit patterns of another type: the reader notes the field.
BFLOAT16 = "BF16"
_TENSOR_KEYS = {"shape", "datatype", "data", "name", "parameters"}


@dataclass
class ArrayReader:
    """Decodes array fields of one request, remembering which came as tensor objects."""

    max_elements: int
    may_hold_booleans: bool
    tensor_shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    elements: int = 0
    bfloat16: set[str] = field(default_factory=set)  # fields decoded as BF16 bit patterns

    def read(self, value: Any, name: str) -> np.ndarray:
        """Return the array in `value` (nested list, tensor object, or decoded binary) for `name`."""
        if isinstance(value, np.ndarray):
            return value  # decoded from binary; counted when it was framed
        if isinstance(value, dict):
            array = self._read_tensor(value, name)
        elif isinstance(value, list):
            self.count(name, _nested_size_hint(value))
            array = self._read_list(value, name)
        else:
            raise InputError(name, f"must be a JSON array or a tensor object; got {json_type(value)}")
        return array

    def count(self, name: str, n: int) -> None:
        """Add `n` elements of `name` to the request's total, or raise 413 past the limit."""
        self.elements += n
        if self.elements > self.max_elements:
            raise ProblemError(
                413,
                f"`{name}` brings the request to {self.elements} elements; the limit is {self.max_elements}",
                field=name,
            )

    def _read_list(self, value: list[Any], name: str) -> np.ndarray:
        try:
            array = np.array(value)
        except (ValueError, OverflowError):
            array = None
        if array is None or array.dtype.kind not in "fiu" or self.may_hold_booleans:
            problem = _first_bad_leaf(value, ())
            if problem is not None:
                index, reason = problem
                raise InputError(name, reason, index=index)
        if array is None or array.dtype.kind not in "fiu":
            raise InputError(name, f"must hold numbers; got {_describe_dtype(array)}")
        return array

    def _read_tensor(self, value: dict[str, Any], name: str) -> np.ndarray:
        shape, dtype = tensor_meta(value, name, require_data=True)
        size = math.prod(shape)
        self.count(name, size)
        data = value["data"]
        if not isinstance(data, list):
            raise InputError(f"{name}.data", f"must be a JSON array; got {json_type(data)}")
        flat = self._read_list(data, f"{name}.data").reshape(-1)
        if flat.size != size:
            raise InputError(
                f"{name}.data", f"must hold prod(shape) = {size} values for shape {shape}; got {flat.size}"
            )
        datatype = value["datatype"]
        if datatype == BFLOAT16:  # JSON numbers: rounded to bfloat16 bit patterns, as binary ones come
            self.tensor_shapes[name] = shape
            self.bfloat16.add(name)
            with np.errstate(over="ignore"):  # beyond float32's range: ±inf, refused where read as finite
                widened = flat.astype(np.float32)
            return _to_bfloat16_bits(widened).reshape(shape)
        if dtype.kind in "iu" and flat.dtype.kind == "f" and not (flat == np.trunc(flat)).all():
            # (2.0 is an integer, as in JSON Schema; inf and nan are not: inf - inf is nan)
            raise InputError(f"{name}.data", f"must hold integers for datatype {datatype}")
        if dtype.kind in "iu" and flat.dtype.kind == "f" and (np.abs(flat) >= 2.0**53).any():
            # integers past 2**53 among floats were rounded by the float64 array: read them exactly
            flat = _exact_integers(data, dtype, datatype, f"{name}.data")
        elif dtype.kind in "iu":
            info = np.iinfo(dtype)
            if flat.dtype.kind in "iu":  # integers against integers, exactly (not through float64)
                outside = (flat < info.min) | (flat > info.max)
            else:  # info.max + 1 is a power of two, exact as a float: integral floats below it fit
                outside = (flat < info.min) | (flat >= float(int(info.max) + 1))
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise InputError(f"{name}.data", f"must fit {datatype}; got {flat[i]}", index=(i,))
        self.tensor_shapes[name] = shape
        with np.errstate(over="ignore"):
            return flat.astype(dtype, copy=False).reshape(shape)


def _exact_integers(data: list[Any], dtype: np.dtype[Any], datatype: str, name: str) -> np.ndarray:
    """The integers of nested list `data` (integral floats among them) as `dtype`, exactly.

    Python's ints and floats are exact where a float64 array rounds integers past 2**53
    (9223372036854775806 to 2**63, which no longer fits INT64).
    """
    info = np.iinfo(dtype)
    values: list[int] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            value = int(item)  # integral (checked): exact for an int, and for a float's value
            if not info.min <= value <= info.max:
                raise InputError(name, f"must fit {datatype}; got {item}", index=(len(values),))
            values.append(value)
        else:
            stack.pop()
    return np.array(values, dtype=dtype)


def _to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (ties to even), as uint16 bit patterns."""
    bits = values.view(np.uint32)
    with np.errstate(over="ignore"):
        rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype(np.uint16)


def tensor_meta(
    value: dict[str, Any], name: str, *, require_data: bool
) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Check a tensor object's keys, shape and datatype; return the shape and NumPy dtype."""
    unknown = sorted(set(value) - _TENSOR_KEYS)
    if unknown:
        raise InputError(f"{name}.{unknown[0]}", "is not a tensor field (shape, datatype, data)")
    for key in ("shape", "datatype", "data") if require_data else ("shape", "datatype"):
        if key not in value:
            raise InputError(f"{name}.{key}", "is required in a tensor object")
    shape = value["shape"]
    if not (isinstance(shape, list) and 1 <= len(shape) <= 3 and all(_is_whole(d) and d >= 0 for d in shape)):
        raise InputError(
            f"{name}.shape", f"must be a list of 1 to 3 non-negative integers; got {reprlib.repr(shape)}"
        )
    datatype = value["datatype"]
    if not isinstance(datatype, str) or datatype not in DATATYPES:
        raise InputError(
            f"{name}.datatype", f"must be one of {', '.join(DATATYPES)}; got {reprlib.repr(datatype)}"
        )
    return tuple(int(d) for d in shape), np.dtype(DATATYPES[datatype])


def _is_whole(value: Any) -> bool:
    """An integer as JSON Schema counts them: 3, or 3.0 (a number with no fractional part); not a boolean."""
    if isinstance(value, float):
        return value.is_integer()
    return isinstance(value, int) and not isinstance(value, bool)


def widen_bf16(words: np.ndarray) -> np.ndarray:
    """bfloat16 values given as their raw 16-bit words, as float32 (exact: bfloat16 is float32's top half).

    Examples
    --------
    >>> widen_bf16(np.array([0x3F80, 0xC040, 0x7F80], dtype=np.uint16))
    array([ 1., -3., inf], dtype=float32)
    """
    return (words.astype(np.uint32) << 16).view(np.float32)


def _describe_dtype(array: np.ndarray | None) -> str:
    if array is None:
        return "ragged or non-numeric rows"
    return {"b": "booleans", "U": "strings", "O": "mixed values"}.get(array.dtype.kind, str(array.dtype))


def _nested_size_hint(value: list[Any]) -> int:
    """Element count of a (maybe nested) list from its first row: cheap, before conversion."""
    n = len(value)
    while value and isinstance(value[0], list):  # a B×T×K sequence batch nests three deep
        value = value[0]
        n *= len(value)
    return n


def _first_bad_leaf(value: Any, index: tuple[int, ...]) -> tuple[tuple[int, ...], str] | None:
    """Locate the first non-number, ragged row or over-deep nesting (error path only)."""
    if isinstance(value, list):
        if len(index) >= 3:
            return index, "must be nested at most three levels deep (N×K, or B×T×K sequences)"
        lengths = {len(v) if isinstance(v, list) else -1 for v in value}
        if len(lengths) > 1:
            first = value[0]
            expected = len(first) if isinstance(first, list) else None
            for i, row in enumerate(value):
                got = len(row) if isinstance(row, list) else None
                if got != expected:
                    what = "a number" if expected is None else f"a row of {expected}"
                    found = "a number" if got is None else f"a row of {got}"
                    return (*index, i), f"is ragged: expected {what} like row 0; got {found}"
        for i, item in enumerate(value):
            checkpoint()
            problem = _first_bad_leaf(item, (*index, i))
            if problem is not None:
                return problem
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return index, f"must be a number; got {json_type(value)}"
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return index, f"must fit in 64 bits; got {value}"
    return None
