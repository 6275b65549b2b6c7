"""``application/x-npz`` request bodies: arrays by name, never unpickled.

Declared sizes are checked against the member's bytes and the element limit *before*
anything is allocated. Members stored without compression (``np.savez``) become read-only
views into the body after their CRC is checked: no copy. Compressed members
(``np.savez_compressed``) are inflated by NumPy.
"""

import io
import lzma
import math
import struct
import zipfile
import zlib
from typing import Any

import numpy as np
import orjson

from service.core import InputError

from ..errors.problems import ProblemError
from .arrays import ArrayReader

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
    struct.error,
)
#: A zip local file header: signature, versions, flags, method, time, date, CRC, sizes, name, extra lengths.
_LOCAL_HEADER = struct.Struct("<4s2B4HL2L2H")


class BufferFile(io.RawIOBase):
    """A seekable, read-only file over a buffer that it does not copy (``io.BytesIO`` copies a bytearray).

    Examples
    --------
    >>> f = BufferFile(bytearray(b"abcdef"))
    >>> f.seek(-2, io.SEEK_END), f.read(5), f.tell()
    (4, b'ef', 6)
    """

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).toreadonly().cast("B")
        self._pos = 0

    def readable(self) -> bool:
        """Always."""
        return True

    def seekable(self) -> bool:
        """Always."""
        return True

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to `offset` from the start, the current position or the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        """Copy the next bytes into `buffer`; 0 at the end."""
        chunk = self._view[self._pos : self._pos + len(buffer)]
        memoryview(buffer).cast("B")[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


def read_npz(body: bytes | bytearray | memoryview, reader: ArrayReader) -> dict[str, Any]:
    """Arrays of an ``.npz`` body by name (``logits.npy`` → ``logits``).

    An optional member ``parameters`` holds the options as a JSON string
    (``np.savez(f, logits=z, labels=y, parameters=json.dumps({"base": 2}))``).
    """
    try:
        archive = zipfile.ZipFile(BufferFile(body))
        members = archive.infolist()
    except _BROKEN_ARCHIVE as exc:
        raise ProblemError(400, f"body is not a valid .npz archive: {exc}") from None
    fields: dict[str, Any] = {}
    for member in members:
        name = member.filename.removesuffix(".npy")
        fields[name] = _read_member(body, archive, member, name, reader)
    options = fields.pop("parameters", None)
    if options is not None:
        fields.update(_options(options))
    return fields


def _read_member(
    body: bytes | bytearray | memoryview,
    archive: zipfile.ZipFile,
    member: zipfile.ZipInfo,
    name: str,
    reader: ArrayReader,
) -> np.ndarray:
    try:
        with archive.open(member) as handle:
            version = np.lib.format.read_magic(handle)
            reader_fn = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = reader_fn(handle)
            header_bytes = handle.tell()
        if dtype.hasobject:
            raise InputError(name, "must be a numeric array; object arrays are never unpickled")
        needed = math.prod(shape) * dtype.itemsize
        if dtype.kind not in "U":
            reader.count(name, math.prod(shape))
        elif needed > _MAX_STRING_BYTES:  # strings carry options only; never allocate for a lie
            raise InputError(name, f"a string array may hold at most {_MAX_STRING_BYTES} bytes; got {needed}")
        if needed > member.file_size - header_bytes:  # numpy allocates the whole array before reading it
            raise ProblemError(
                400,
                f"npz member {member.filename!r} declares {needed} bytes of data "
                f"but holds {member.file_size - header_bytes}",
            )
        if member.compress_type == zipfile.ZIP_STORED and dtype.kind != "U":
            return _stored_view(body, member, header_bytes, shape, fortran, dtype)
        with archive.open(member) as handle:
            return np.lib.format.read_array(handle, allow_pickle=False)
    except _BROKEN_ARCHIVE as exc:
        if isinstance(exc, InputError):
            raise
        raise ProblemError(400, f"npz member {member.filename!r} is not a valid .npy array: {exc}") from None


def _stored_view(
    body: bytes | bytearray | memoryview,
    member: zipfile.ZipInfo,
    header_bytes: int,
    shape: tuple[int, ...],
    fortran: bool,
    dtype: np.dtype[Any],
) -> np.ndarray:
    """A read-only view of an uncompressed member's array in `body`, after checking its CRC."""
    local = _LOCAL_HEADER.unpack_from(body, member.header_offset)
    start = member.header_offset + _LOCAL_HEADER.size + local[10] + local[11]  # after name and extra
    if start + member.file_size > len(body):
        raise zipfile.BadZipFile("member runs past the end of the archive")
    if zlib.crc32(memoryview(body)[start : start + member.file_size]) != member.CRC:
        raise zipfile.BadZipFile("CRC check failed")
    array = np.frombuffer(body, dtype=dtype, count=math.prod(shape), offset=start + header_bytes)
    if not array.flags.aligned:
        array = array.copy()
    array.flags.writeable = False  # a view into the request's buffer: never written
    return array.reshape(shape[::-1]).T if fortran else array.reshape(shape)


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
