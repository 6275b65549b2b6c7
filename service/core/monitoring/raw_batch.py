"""A batch stored as it came (its logits and labels), to be summarised later: the *raw* stats blob.

A monitor's small write is durable once its rows are: it may store them as one raw blob in place
of their statistics and leave the summary to a background pass that summarises many such blobs
at once (``service.monitors.settle``), where one call over thousands of rows costs what a call
over 32 costs. Until then every reader that decodes stats blobs (:func:`~.codec.decode_many`,
:func:`~.series.group_sums`) summarises a raw blob itself with :func:`expand`, so a raw blob
counts exactly as its batch's statistics would: nothing read depends on whether the pass ran.

Format, little-endian, no padding::

    header (24 bytes)
      u1 marker = 0xB7 (a statistics blob starts with its version, 1) | u1 dtype (8: float64
         logits, 4: float32 logits) | u1 label width (1, 2, 4 or 8: signed) | u1 narrowed (1:
         float64 logits stored as the float32 values they all are exactly, 0: as they are)
      u4 n_rows | u4 n_classes | u4 reserved = 0 | f8 time (epoch seconds of every row)
    n_rows × n_classes logits of `dtype`, row-major
    n_rows labels, signed, of the label width (−1: no label)

Only K-class logits of rows whose loss is finite are stored raw (the writer checks); their
summary is ``MonitorStats.summarise(Distribution.from_logits(logits), labels)``.
"""

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._typing import FloatArray, IntArray
from ..distribution import Distribution
from ..errors import InputError
from .stats import MonitorStats

MARKER = 0xB7
_HEADER = struct.Struct("<BBBBIIId")
_DTYPES: dict[int, np.dtype[Any]] = {8: np.dtype("<f8"), 4: np.dtype("<f4")}
_LABELS: dict[int, np.dtype[Any]] = {
    1: np.dtype("<i1"),
    2: np.dtype("<i2"),
    4: np.dtype("<i4"),
    8: np.dtype("<i8"),
}


@dataclass(frozen=True)
class RawBatch:
    """A decoded raw blob: its logits (N × K), labels (N, −1 for none) and the rows' time."""

    logits: FloatArray
    labels: IntArray
    time: float
    #: Each row's time when the batch joins several blobs (`decode_joined`); None: `time` for all.
    times: FloatArray | None = None

    def row_times(self) -> FloatArray:
        """The time of each row."""
        return np.full(self.labels.shape[0], self.time) if self.times is None else self.times

    def summarise(self) -> MonitorStats:
        """The batch's statistics, as its writer would have stored them."""
        dist = Distribution.from_logits(self.logits, validate=False)
        return MonitorStats.summarise(dist, self.labels, validate=False)


def is_raw(blob: bytes) -> bool:
    """Whether `blob` is a raw batch (else: a statistics blob, or not a blob of ours)."""
    return len(blob) > 0 and blob[0] == MARKER


def encode_raw(logits: FloatArray, labels: IntArray, time: float) -> bytes:
    """The raw blob of N × K float64 or float32 `logits`, N `labels` (−1 … K − 1) at `time`.

    float64 logits that are all float32 values exactly (a float32 model's outputs sent as JSON
    numbers are) are stored in 4 bytes each and read back as the same float64 values.
    """
    n, k = logits.shape
    width = 1 if k <= 127 else 2 if k <= 32767 else 4
    size, narrowed = logits.dtype.itemsize, 0
    stored = logits.astype(_DTYPES[size], copy=False)
    if size == 8:
        narrow = logits.astype(np.float32)
        # every value is exactly a float32 (NaN never is sent); the first compared alone first: JSON
        # numbers that are not (most) differ there, and one scalar costs a tenth of the whole check
        first_same = logits.size == 0 or narrow.item(0) == logits.item(0)
        if first_same and np.logical_and.reduce(np.equal(narrow, logits), axis=None):
            stored, narrowed = narrow.astype(_DTYPES[4], copy=False), 1
    head = _HEADER.pack(MARKER, size, width, narrowed, n, k, 0, time)
    return head + stored.tobytes() + labels.astype(_LABELS[width]).tobytes()


def decode_raw(blob: bytes) -> RawBatch:
    """The batch of a raw blob; InputError("stats", ...) if its bytes are not one."""
    if len(blob) < _HEADER.size or not is_raw(blob):
        raise InputError("stats", "is not a raw batch blob")
    head = _HEADER.unpack_from(blob)
    dtype, label, stored = _layout(head, [blob])
    n, k = head[4], head[5]
    logits = np.frombuffer(blob, _DTYPES[stored], n * k, _HEADER.size).reshape(n, k).astype(dtype, copy=False)
    labels = _checked(np.frombuffer(blob, label, n, _HEADER.size + n * k * stored), k)
    return RawBatch(logits, labels, head[7])


def _layout(
    head: tuple[Any, ...], blobs: Sequence[bytes], rows: Sequence[int] | None = None
) -> tuple[np.dtype[Any], np.dtype[Any], int]:
    """The logits' dtype, the labels' dtype and bytes per stored logit of blobs with header `head`.

    Checks the header's codes and that each of `blobs` (of `rows` rows each; default: the header's)
    has the length they imply; InputError("stats", ...) otherwise.
    """
    _, size, width, narrowed, n, k, _, _ = head
    dtype, label, stored = _DTYPES.get(size), _LABELS.get(width), _stored_size(size, narrowed)
    if dtype is None or label is None or not stored or k < 2:
        raise InputError("stats", "is not a valid raw batch blob (dtype, label width or K)")
    per_row = k * stored + width
    for blob, rows_ in zip(blobs, [n] if rows is None else rows, strict=True):
        if len(blob) != _HEADER.size + rows_ * per_row:
            raise InputError("stats", "is not a valid raw batch blob (its length)")
    return dtype, label, stored


def _checked(labels: np.ndarray, k: int) -> IntArray:
    """Stored labels as intp, each in [-1, K); InputError("stats", ...) otherwise."""
    if labels.size and (labels.min() < -1 or labels.max() >= k):
        raise InputError("stats", f"holds a raw batch label outside [-1, {k})")
    return labels.astype(np.intp)


def _stored_size(size: int, narrowed: int) -> int:
    """Bytes each logit takes in the blob (0: not a valid combination)."""
    if narrowed == 0:
        return size
    return 4 if narrowed == 1 and size == 8 else 0


def decode_joined(blobs: Sequence[bytes]) -> list[tuple[int, RawBatch]]:
    """Raw blobs of one layout or several, joined: ``(first blob's index, batch)`` per run of one layout.

    Consecutive blobs of the same dtype, K and label width become one `RawBatch` (its `time` the
    first blob's; :func:`row_times` gives each row its own): one array copy per run, not per blob.
    """
    heads = [
        _HEADER.unpack_from(blob) if is_raw(blob) and len(blob) >= _HEADER.size else None for blob in blobs
    ]
    out: list[tuple[int, RawBatch]] = []
    start = 0
    while start < len(blobs):
        head = heads[start]
        if head is None:
            raise InputError("stats", "is not a raw batch blob")
        layout = head[1:4] + head[5:6]  # dtype, label width, narrowed, K
        end = start + 1
        while end < len(blobs) and (h := heads[end]) is not None and h[1:4] + h[5:6] == layout:
            end += 1
        out.append((start, _joined(blobs[start:end], heads[start:end])))  # type: ignore[arg-type]
        start = end
    return out


def _joined(blobs: Sequence[bytes], heads: Sequence[tuple[Any, ...]]) -> RawBatch:
    """One `RawBatch` of raw blobs sharing a layout (checked as `decode_raw` checks one)."""
    if len(blobs) == 1:
        return decode_raw(blobs[0])
    rows = [head[4] for head in heads]
    dtype, label, stored = _layout(heads[0], blobs, rows)
    k = heads[0][5]
    split = [_HEADER.size + n * k * stored for n in rows]
    values = b"".join([blob[_HEADER.size : end] for blob, end in zip(blobs, split, strict=True)])
    labels_bytes = b"".join([blob[end:] for blob, end in zip(blobs, split, strict=True)])
    logits = np.frombuffer(values, _DTYPES[stored]).reshape(-1, k).astype(dtype, copy=False)
    labels = _checked(np.frombuffer(labels_bytes, label), k)
    times = np.repeat(np.array([head[7] for head in heads]), rows)
    return RawBatch(logits, labels, heads[0][7], times)


def expand(blobs: Sequence[bytes]) -> Sequence[bytes] | None:
    """`blobs` with every raw blob replaced by its statistics' bytes; None if none is raw.

    The decoders call it only when a header is not a statistics header (a raw blob's first byte is
    not the version), so blobs of statistics alone pay nothing for it.
    """
    if not any(map(is_raw, blobs)):
        return None
    return [decode_raw(blob).summarise().to_bytes() if is_raw(blob) else blob for blob in blobs]
