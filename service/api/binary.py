"""Binary request bodies: the Triton/KServe binary tensor extension, and ``.npz`` archives.

Sizes are checked against ``prod(shape) × itemsize`` and the element limit *before*
anything is allocated; tensors are views into the body (``np.frombuffer``), copied
only when misaligned. Nothing is ever unpickled.
"""

import io
import lzma
import math
import zipfile
import zlib
from typing import Any

import numpy as np
import orjson

from service.core import InputError

from .envelope import Envelope
from .payload import ArrayReader, parse_json_object, tensor_meta
from .problems import ProblemError

HEADER_LENGTH = "inference-header-content-length"
_MAX_STRING_BYTES = 65_536
#: What zipfile, zlib and numpy raise on a damaged archive (encrypted or unknown-compression members
#: raise RuntimeError / NotImplementedError).
_BROKEN_ARCHIVE = (
    ValueError,
    OSError,
    zipfile.BadZipFile,
    EOFError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
)


def split_header(body: bytes, declared: str | None) -> tuple[dict[str, Any], int]:
    """The JSON header of a binary-extension body and its length in bytes, or raise 400."""
    if declared is None or not declared.strip().isdigit():
        raise ProblemError(
            400,
            "application/octet-stream bodies need an Inference-Header-Content-Length header "
            f"giving the JSON header's length in bytes; got {declared!r}",
        )
    length = int(declared)
    if length > len(body):
        raise ProblemError(
            400, f"Inference-Header-Content-Length is {length} but the body has {len(body)} bytes"
        )
    return parse_json_object(body[:length]), length


def attach_binary(envelope: Envelope, body: bytes, offset: int, reader: ArrayReader) -> None:
    """Decode the binary inputs of `envelope` from `body[offset:]`, in input order, in place."""
    for role, size in envelope.binary_sizes:
        tensor = envelope.fields[role]
        if "data" in tensor:
            raise InputError(f"{role}.data", "must be absent when parameters.binary_data_size is given")
        shape, dtype = tensor_meta(tensor, role, require_data=False)
        count = math.prod(shape)
        if size != count * dtype.itemsize:
            raise InputError(
                f"{role}.parameters.binary_data_size",
                f"must equal prod(shape) × itemsize = {count} × {dtype.itemsize} = "
                f"{count * dtype.itemsize} for shape {list(shape)}; got {size}",
            )
        if offset + size > len(body):
            raise ProblemError(
                400,
                f"binary section ends at byte {len(body)}; input `{role}` needs bytes up to {offset + size}",
            )
        reader.count(role, count)
        array = np.frombuffer(body, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
        if not array.flags.aligned:
            array = array.copy()
        envelope.fields[role] = array.reshape(shape)
        offset += size
    if offset != len(body):
        raise ProblemError(
            400, f"the inputs declare {offset} bytes of header and tensors, but the body has {len(body)}"
        )


def read_npz(body: bytes, reader: ArrayReader) -> dict[str, Any]:
    """Arrays of an ``.npz`` body by name (``logits.npy`` → ``logits``).

    An optional member ``parameters`` holds the options as a JSON string
    (``np.savez(f, logits=z, labels=y, parameters=json.dumps({"base": 2}))``).
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ProblemError(400, f"body is not a valid .npz archive: {exc}") from None
    fields: dict[str, Any] = {}
    for member in members:
        name = member.filename.removesuffix(".npy")
        fields[name] = _read_member(archive, member, name, reader)
    options = fields.pop("parameters", None)
    if options is not None:
        fields.update(_options(options))
    return fields


def _read_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, reader: ArrayReader
) -> np.ndarray:
    try:
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            reader_fn = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = reader_fn(handle)
        if dtype.hasobject:
            raise InputError(name, "must be a numeric array; object arrays are never unpickled")
        needed = math.prod(shape) * dtype.itemsize
        if dtype.kind not in "U":
            reader.count(name, math.prod(shape))
        elif needed > _MAX_STRING_BYTES:  # strings carry options only; never allocate for a lie
            raise InputError(name, f"a string array may hold at most {_MAX_STRING_BYTES} bytes; got {needed}")
        if needed > member.file_size:  # numpy allocates the whole array before reading it
            raise ProblemError(
                400,
                f"npz member {member.filename!r} declares {needed} bytes of data "
                f"but holds {member.file_size}",
            )
        with archive.open(member) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except _BROKEN_ARCHIVE as exc:
        if isinstance(exc, InputError):
            raise
        raise ProblemError(400, f"npz member {member.filename!r} is not a valid .npy array: {exc}") from None


def _options(value: np.ndarray) -> dict[str, Any]:
    if value.dtype.kind != "U" or value.ndim != 0:
        raise InputError("parameters", "must be a 0-d string array holding a JSON object of options")
    try:
        options = orjson.loads(str(value))
    except orjson.JSONDecodeError as exc:
        raise InputError("parameters", f"must hold a JSON object of options: {exc}") from None
    if not isinstance(options, dict):
        raise InputError("parameters", "must hold a JSON object of options")
    return options
