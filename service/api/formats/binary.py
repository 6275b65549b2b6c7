"""Binary request bodies: the Triton/KServe binary tensor extension (``.npz`` archives: :mod:`.npz`).

Sizes are checked against ``prod(shape) × itemsize`` and the element limit *before*
anything is allocated; tensors are read-only views into the body (``np.frombuffer``),
copied only when misaligned.
"""

import ctypes
import math
from typing import Any

import numpy as np

from service.core import InputError

from ..errors.problems import ProblemError
from .arrays import ArrayReader, tensor_meta
from .body import ALIGNMENT
from .envelope import Envelope
from .payload import parse_json_object

HEADER_LENGTH = "inference-header-content-length"


def declared_header_length(declared: str | None) -> int:
    """The Inference-Header-Content-Length as an integer, or raise 400."""
    if declared is None or not declared.strip().isdigit():
        raise ProblemError(
            400,
            "application/octet-stream bodies need an Inference-Header-Content-Length header "
            f"giving the JSON header's length in bytes; got {declared!r}",
        )
    return int(declared)


def split_header(body: bytes | bytearray | memoryview, length: int) -> tuple[dict[str, Any], bytes]:
    """The parsed JSON header of a binary-extension body and its bytes (the first `length`), or raise 400."""
    if length > len(body):
        raise ProblemError(
            400, f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes"
        )
    text = memoryview(body)[:length].tobytes()
    return parse_json_object(text), text


def attach_binary(
    envelope: Envelope, body: bytes | bytearray | memoryview, offset: int, reader: ArrayReader
) -> None:
    """Decode the binary inputs of `envelope` from `body[offset:]`, in input order, in place.

    Byte positions in error messages are those of the body as sent.
    """
    shift = align_tensors(body, offset)
    position, end = offset - shift, len(body) - shift
    for role, size in envelope.binary_sizes:
        tensor = envelope.fields[role]
        if "data" in tensor:
            raise InputError(f"{role}.data", "must be absent when parameters.binary_data_size is given")
        shape, dtype = tensor_meta(tensor, role, require_data=False)
        bf16 = tensor["datatype"] == "BF16"
        if bf16:
            dtype = np.dtype(np.uint16)  # raw bfloat16 words (widened where read: Body.array)
        count = math.prod(shape)
        if size != count * dtype.itemsize:
            raise InputError(
                f"{role}.parameters.binary_data_size",
                f"must equal prod(shape) × itemsize = {count} × {dtype.itemsize} = "
                f"{count * dtype.itemsize} for shape {list(shape)}; got {size}",
            )
        if position + size > end:
            raise ProblemError(
                400,
                f"binary section ends at byte {len(body)}; input `{role}` needs bytes up to "
                f"{position + shift + size}",
            )
        reader.count(role, count)
        array = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=count, offset=position)
        if not array.flags.aligned:
            array = array.copy()
        array.flags.writeable = False  # a view into the request's buffer: never written
        envelope.fields[role] = array.reshape(shape)
        if tensor["datatype"] == "BF16":
            reader.bfloat16.add(role)
        position += size
    if position != end:
        raise ProblemError(
            400,
            f"the inputs declare {position + shift} bytes of header and tensors, "
            f"but the body has {len(body)}",
        )


def align_tensors(body: bytes | bytearray | memoryview, offset: int) -> int:
    """Move ``body[offset:]`` down to a 64-byte boundary in place; return how many bytes it moved.

    The JSON header before `offset` has been parsed already, so its tail may be overwritten.
    Triton clients do not pad the header, so without this the first tensor is misaligned
    three times in four and NumPy needs an aligned copy of it (one more body's worth of RSS).
    Immutable `bytes`, headers shorter than the move, and bodies that
    :func:`service.api.formats.body.read_body` read into an aligned buffer (memoryviews) are left
    as they are.
    """
    if not isinstance(body, bytearray) or offset == len(body):
        return 0
    address = np.frombuffer(body, np.uint8).ctypes.data
    shift = (address + offset) % ALIGNMENT
    if shift == 0 or shift > offset:
        return 0
    ctypes.memmove(address + offset - shift, address + offset, len(body) - offset)
    return shift
