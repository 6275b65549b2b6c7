"""Read a JSON body once with orjson and turn its array fields into ndarrays.

Arrays arrive as nested JSON lists or as Open Inference Protocol (KServe v2)
tensor objects ``{"shape": [N, K], "datatype": "FP32", "data": [...]}``.
Pydantic never sees them element by element; NumPy converts and checks them.
"""

import contextlib
import gc
import math
import re
import reprlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import orjson
from fastapi import Request
from starlette.requests import ClientDisconnect

from service.core import InputError
from service.core.cancel import checkpoint

from ..errors.problems import ProblemError
from .json_keys import check_unique_keys

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
ALIGNMENT = 64  # bytes: tensors in a binary body start on this boundary
# `true`/`false` right after `[` or `,` can only be an array element (keys are strings).
_BOOLEAN_ELEMENT = re.compile(rb"[\[,]\s*(?:true|false)\b")
#: Accepted request media types and the body format each names.
MEDIA_TYPES = {
    "application/json": "json",
    "application/octet-stream": "binary",
    "application/x-npz": "npz",
}


#: Binary and npz bodies declared at least this large are read into one preallocated NumPy
#: buffer (:func:`read_body`).
PREALLOCATE_BYTES = 1 << 20


class BodyHeaders(NamedTuple):
    """The request headers that say how to read its body (None: not sent)."""

    content_type: str | None
    content_length: str | None
    header_length: str | None  # Inference-Header-Content-Length (the OIP binary extension)


_BODY_HEADERS = {b"content-type": 0, b"content-length": 1, b"inference-header-content-length": 2}


def body_headers(request: Request) -> BodyHeaders:
    """The first Content-Type, Content-Length and Inference-Header-Content-Length, in one pass.

    ASGI servers give header names in lower case; three ``request.headers.get`` calls scan
    the list three times, each call lower-casing its key and raising ``KeyError`` for a
    header not sent.
    """
    found: list[str | None] = [None, None, None]
    for name, value in request.scope["headers"]:
        at = _BODY_HEADERS.get(name)
        if at is not None and found[at] is None:
            found[at] = value.decode("latin-1")
    return BodyHeaders(*found)


async def read_body(
    request: Request,
    max_bytes: int,
    *,
    kind: str = "json",
    align_at: int = 0,
    headers: BodyHeaders | None = None,
) -> bytearray | memoryview:
    """Read the body, refusing (413) as soon as it exceeds `max_bytes`.

    JSON bodies grow chunk by chunk in one ``bytearray``. A binary or npz body with a declared
    Content-Length of at least ``PREALLOCATE_BYTES`` is copied into one ``np.empty`` buffer
    of that size instead, returned as a ``memoryview`` of it: its pages are touched only as
    the bytes arrive (no zero-fill: ``bytearray(46 MB)`` held the event loop ~40 ms), and
    NumPy advises huge pages for it, so a 4.6 MB body costs ~3 page faults rather than
    ~1,200 (~5 ms of a 25 ms request on this VM, docs/internals.md, Transport). The buffer starts so
    that byte `align_at` of the body (where the binary extension's tensors begin) sits on a
    64-byte boundary: the tensors are aligned views, never moved or copied. Tensors decoded
    from either kind of body are read-only views.
    """
    declared = request.headers.get("content-length") if headers is None else headers.content_length
    size = int(declared) if declared is not None and declared.isdigit() else None
    if size is not None and size > max_bytes:
        raise ProblemError(413, f"request body is {declared} bytes; the limit is {max_bytes}")
    if kind != "json" and size is not None and size >= PREALLOCATE_BYTES:
        return await _read_into_buffer(request, size, align_at)
    body = bytearray()
    receive = request.receive  # not request.stream(): an async generator per request (~2 µs) for one chunk
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) + len(chunk) > max_bytes:
            raise ProblemError(413, f"request body exceeds the limit of {max_bytes} bytes")
        body += chunk
    return body


async def _read_into_buffer(request: Request, size: int, align_at: int) -> memoryview:
    """The body, exactly `size` bytes as declared, in a buffer of its own (see :func:`read_body`)."""
    buffer = np.empty(size + ALIGNMENT, np.uint8)
    start = -(buffer.ctypes.data + align_at) % ALIGNMENT
    view = buffer.data[start : start + size]  # a memoryview: keeps the buffer alive
    filled = 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end > size:
            raise ProblemError(400, f"request body is longer than its Content-Length of {size} bytes")
        view[filled:end] = chunk
        filled = end
    if filled != size:
        raise ProblemError(400, f"request body has {filled} bytes; its Content-Length says {size}")
    return view


def body_format(request: Request) -> str:
    """``json``, ``binary`` (OIP binary tensor extension) or ``npz``, or raise 415.

    A missing Content-Type is taken as JSON.
    """
    return media_format(request.headers.get("content-type"))


def media_format(content_type: str | None) -> str:
    """:func:`body_format` of a Content-Type header's value (None: not sent)."""
    if content_type is None:
        return "json"
    media = content_type.split(";")[0].strip().lower()
    if media.endswith("+json"):
        return "json"
    if media not in MEDIA_TYPES:
        raise ProblemError(
            415,
            f"Content-Type {media!r} is not supported; send one of {', '.join(MEDIA_TYPES)}",
            headers={"Accept-Post": ", ".join(MEDIA_TYPES)},
        )
    return MEDIA_TYPES[media]


def has_boolean_elements(text: bytes | bytearray, end: int | None = None) -> bool:
    """Whether JSON ``text[:end]`` may hold ``true``/``false`` inside an array (NumPy would take them as 1/0).

    Looks for the literals with ``bytes.find`` and checks only where they occur: a body of
    numbers is scanned at memchr speed (a regex over every ``[`` and ``,`` of 1M floats took ~0.5 s).

    Examples
    --------
    >>> has_boolean_elements(b'{"per_sample": true, "labels": [0, 1]}')
    False
    >>> has_boolean_elements(b'{"labels": [0,  true]}')
    True
    """
    end = len(text) if end is None else end
    if text.find(b"u", 0, end) == -1 and text.find(b"f", 0, end) == -1:
        return False  # neither literal can occur: two memchr scans, ~10× faster than finding the words
    for word in (b"true", b"false"):
        at = _find_word(text, word, 0, end)
        while at != -1:
            start = max(0, at - 64)
            if _BOOLEAN_ELEMENT.search(text, start, at + len(word)) is not None:
                return True
            if start > 0 and not text[start:at].strip():  # a run of whitespace longer than the window
                return _BOOLEAN_ELEMENT.search(text, 0, end) is not None
            at = _find_word(text, word, at + 1, end)
    return False


#: Each literal's rarest byte and its offset in the word: "u" of true, "f" of false.
_PIVOTS = {b"true": (b"u", 2), b"false": (b"f", 0)}


def _find_word(text: bytes | bytearray, word: bytes, start: int, end: int) -> int:
    """``text.find(word, start, end)``, by memchr scans for the word's pivot byte.

    ``bytes.find`` of a four-letter word over a body of digits is a slow path (~8 µs over the
    6.7 KB of a 32×10 body, found because a key such as "temperature" holds a "u"), while the
    pivot byte occurs in a body of numbers only in its keys. After a few pivots that begin no
    word (a body of names, say), the rest is left to ``bytes.find``.

    Examples
    --------
    >>> _find_word(b'{"temperature": 1, "x": [true]}', b"true", 0, 31)
    25
    """
    pivot, offset = _PIVOTS[word]
    size = len(word)
    at = text.find(pivot, start + offset, end)
    for _ in range(16):
        if at == -1:
            return -1
        begin = at - offset
        if begin + size <= end and text[begin : begin + size] == word:
            return begin
        at = text.find(pivot, at + 1, end)
    return -1 if at == -1 else text.find(word, at - offset, end)


#: Bodies from this size are decoded with the cyclic garbage collector paused (see below).
PAUSE_GC_BYTES = 1 << 20


@contextlib.contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector while a large body's objects are built (or walked).

    Decoding allocates one container per JSON object and array; each 700 of them start a
    collection that re-scans every young (and, as the tree grows, old) object, though
    orjson's output holds no reference cycle to find. On 6 MB of chat logprobs (100k objects)
    ``orjson.loads`` took ~220 ms with the collector running and ~45 ms paused. The collector
    is process-wide: it is re-enabled at once, only if it was enabled before.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_json_object(body: bytes | bytearray) -> dict[str, Any]:
    """Parse `body` as a JSON object, or raise 400."""
    if not body.strip():
        raise ProblemError(400, "request body is empty; send a JSON object")
    try:
        with collector_paused(len(body) >= PAUSE_GC_BYTES):
            value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProblemError(400, f"request body must be a JSON object; got {_json_type(value)}")
    check_unique_keys(body, value)
    return value


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
            raise InputError(name, f"must be a JSON array or a tensor object; got {_json_type(value)}")
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
            raise InputError(f"{name}.data", f"must be a JSON array; got {_json_type(data)}")
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
        if dtype.kind in "iu" and flat.dtype.kind == "f":
            raise InputError(f"{name}.data", f"must hold integers for datatype {datatype}")
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            outside = (flat < info.min) | (flat > info.max)
            if outside.any():
                i = int(np.flatnonzero(outside)[0])
                raise InputError(f"{name}.data", f"must fit {datatype}; got {flat[i]}", index=(i,))
        self.tensor_shapes[name] = shape
        with np.errstate(over="ignore"):
            return flat.astype(dtype, copy=False).reshape(shape)


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


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


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
        return index, f"must be a number; got {_json_type(value)}"
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return index, f"must fit in 64 bits; got {value}"
    return None
