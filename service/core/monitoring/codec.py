"""Versioned bytes of :class:`~service.core.monitoring.stats.MonitorStats`; a vectorised many-blob decoder.

Version 1, little-endian, no padding::

    header (100 bytes)
      u1 version = 1 | u1 flags (1 binary, 2 weighted, 4 positive-class histogram,
         8 predicted classes dense, 16 label classes dense)
      u1 width: bytes of every stored count (1, 2, 4 or 8: the fewest that hold the blob's
         largest count) | u1 index_width: bytes of a class index (1 if K ≤ 256, 2 if
         K ≤ 65,536, else 4) | u4 n_classes
      u8 n_predictions, n_labelled, correct
      f8 weight_predictions, confidence_sum, weight_labelled, nll_sum, brier_sum,
         correct_weight, labelled_confidence_sum
      u4 n_predicted, n_label (non-zero classes stored) | u2 n_top, n_positive (cells stored)
    n_predicted class records  (index, count [, f8 Σ w]), or with flag 8 K records (count [, f8 Σ w])
    n_label class records      the same (flag 16 for dense)
    n_top cell records         (u2 cell, count, f8 Σ w·c, hits [, f8 Σ w]), cells increasing
    n_positive cell records    the same, when flag 4 (K = 2)

``index`` and ``count`` are unsigned of `index_width` and `width` bytes; ``hits``
(``Σ w · outcome``) is a count, or f8 when weighted. Only non-empty classes and cells are
stored, so a small batch is small whatever K is; a class section is written dense (every
class, no index) when that is smaller. :func:`decode_many` reads any number of blobs with a
fixed number of NumPy calls (one gather per section per group of blobs sharing a layout; a
dense section is one row per blob, added as rows), never one per blob.
"""

import struct
from collections.abc import Sequence
from functools import cache

import numpy as np

from .._typing import FloatArray, IntArray
from ..errors import InputError
from .fine_histogram import N_CELLS, FineHistogram, exact_bincount, weighted_bincount
from .raw_batch import expand
from .stats import MonitorStats

VERSION = 1
BINARY, WEIGHTED, POSITIVE, PREDICTED_DENSE, LABEL_DENSE = 1, 2, 4, 8, 16
_FLAGS = BINARY | WEIGHTED | POSITIVE | PREDICTED_DENSE | LABEL_DENSE
HEADER = np.dtype(
    [
        ("version", "u1"),
        ("flags", "u1"),
        ("width", "u1"),
        ("index_width", "u1"),
        ("n_classes", "<u4"),
        ("n_predictions", "<u8"),
        ("n_labelled", "<u8"),
        ("correct", "<u8"),
        ("weight_predictions", "<f8"),
        ("confidence_sum", "<f8"),
        ("weight_labelled", "<f8"),
        ("nll_sum", "<f8"),
        ("brier_sum", "<f8"),
        ("correct_weight", "<f8"),
        ("labelled_confidence_sum", "<f8"),
        ("n_predicted", "<u4"),
        ("n_label", "<u4"),
        ("n_top", "<u2"),
        ("n_positive", "<u2"),
    ]
)
#: `HEADER` as a struct format (one ``pack`` call instead of a field-by-field record).
_HEADER_STRUCT = struct.Struct("<BBBBIQQQ7dIIHH")
_FLOATS = (
    "weight_predictions",
    "confidence_sum",
    "weight_labelled",
    "nll_sum",
    "brier_sum",
    "correct_weight",
    "labelled_confidence_sum",
)


def count_width(largest: int) -> int:
    """Bytes of the narrowest unsigned integer holding `largest` (1, 2, 4 or 8)."""
    return 1 if largest < 256 else 2 if largest < 65536 else 4 if largest < 2**32 else 8


def index_width(n_classes: int) -> int:
    """Bytes of a class index for K classes."""
    return 1 if n_classes <= 256 else 2 if n_classes <= 65536 else 4


@cache
def class_record(width: int, index: int, weighted: bool) -> np.dtype:
    """One stored class: its index, its row count and (weighted) its ``Σ w``; packed."""
    fields = [("index", f"<u{index}"), ("count", f"<u{width}")] + [("weight", "<f8")] * weighted
    return np.dtype(fields)


@cache
def dense_record(width: int, weighted: bool) -> np.dtype:
    """One class of a dense section: its row count and (weighted) its ``Σ w``; packed."""
    return np.dtype([("count", f"<u{width}")] + [("weight", "<f8")] * weighted)


@cache
def cell_record(width: int, weighted: bool) -> np.dtype:
    """One stored cell: cell, rows, ``Σ w·c``, ``Σ w·outcome`` (a count unless weighted), ``Σ w``; packed."""
    hits = "<f8" if weighted else f"<u{width}"
    fields = [("cell", "<u2"), ("count", f"<u{width}"), ("conf", "<f8"), ("hits", hits)]
    return np.dtype(fields + [("weight", "<f8")] * weighted)


def encode(stats: MonitorStats) -> bytes:
    """Bytes of `stats` (format in the module docstring)."""
    width = count_width(max(stats.n_predictions, stats.n_labelled))
    weighted = stats.weighted
    flags = BINARY * stats.binary | WEIGHTED * weighted | POSITIVE * (stats.positive is not None)
    sizes: list[int] = []
    parts: list[bytes] = []
    classes = class_record(width, index_width(stats.n_classes), weighted)
    dense = dense_record(width, weighted)
    for counts, weights, flag in (
        (stats.predicted_counts, stats.predicted_weights, PREDICTED_DENSE),
        (stats.label_counts, stats.label_weights, LABEL_DENSE),
    ):
        nz = counts.nonzero()[0]  # (counts is 1-D: np.flatnonzero without its wrapper)
        if counts.size * dense.itemsize < nz.size * classes.itemsize:
            flags |= flag
            if weights is None:  # records of one packed field: its values' bytes, in one call
                sizes.append(counts.size)
                parts.append(counts.astype(dense["count"]).tobytes())
                continue
            records = np.empty(counts.size, dense)
            records["count"] = counts
            records["weight"] = weights
        else:
            records = np.empty(nz.size, classes)
            records["index"] = nz
            records["count"] = counts[nz]
            if weights is not None:
                records["weight"] = weights[nz]
        sizes.append(records.size)
        parts.append(records.tobytes())
    cells = cell_record(width, weighted)
    hists = [stats.top] + ([stats.positive] if stats.positive is not None else [])
    for hist in hists:
        records = np.empty(hist.cells.size, cells)
        records["cell"], records["count"], records["conf"] = hist.cells, hist.count, hist.conf
        records["hits"] = hist.hits
        if weighted:
            records["weight"] = hist.weights
        parts.append(records.tobytes())
    head = _HEADER_STRUCT.pack(
        VERSION,
        flags,
        width,
        index_width(stats.n_classes),
        stats.n_classes,
        stats.n_predictions,
        stats.n_labelled,
        stats.correct,
        stats.weight_predictions,
        stats.confidence_sum,
        stats.weight_labelled,
        stats.nll_sum,
        stats.brier_sum,
        stats.correct_weight,
        stats.labelled_confidence_sum,
        *sizes,
        stats.top.cells.size,
        0 if stats.positive is None else stats.positive.cells.size,
    )
    return head + b"".join(parts)


def _bad(reason: str) -> InputError:
    return InputError("stats", reason)


def _window(data: bytes, dtype: np.dtype) -> np.ndarray:
    """Every `dtype` value starting at every byte of `data` (a stride-1 view, no copy)."""
    return np.ndarray((len(data) - dtype.itemsize + 1,), dtype, buffer=data, strides=(1,))


def _gather(data: bytes, offsets: IntArray, counts: IntArray, dtype: np.dtype) -> np.ndarray:
    """The ``counts[b]`` records of `dtype` stored from byte ``offsets[b]`` of each blob, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype)
    if counts.size == 1:  # one blob: its records are contiguous
        return np.frombuffer(data, dtype, total, int(offsets[0]))
    size = dtype.itemsize
    first = np.cumsum(counts) - counts  # index of each blob's first record among all
    positions = np.repeat(offsets - first * size, counts)
    positions += np.arange(total) * size
    raw = _window(data, np.dtype(f"V{size}"))[positions]  # opaque records: a plain memcpy each
    return raw.view(dtype)


def class_bytes(head: np.ndarray, n_classes: int) -> IntArray:
    """Bytes of the two class sections of every blob (sparse or dense), from its header.

    The top-label histogram of a blob starts ``HEADER.itemsize + class_bytes`` bytes in.
    """
    weighted = ((head["flags"] & WEIGHTED) != 0).astype(np.int64)
    w = head["width"].astype(np.int64)
    per_class = index_width(n_classes) + w + 8 * weighted
    per_dense = w + 8 * weighted
    total = np.zeros(head.shape, np.int64)
    for size, flag in (("n_predicted", PREDICTED_DENSE), ("n_label", LABEL_DENSE)):
        total += head[size].astype(np.int64) * np.where(head["flags"] & flag, per_dense, per_class)
    return total


def _check_headers(head: np.ndarray, lengths: IntArray) -> tuple[int, bool]:
    """Validate every header against its blob's length; return (K, binary)."""
    version = head["version"]
    if (version != VERSION).any():
        bad = int(version[np.flatnonzero(version != VERSION)[0]])
        raise _bad(f"has unknown format version {bad}; this build reads version {VERSION}")
    k = head["n_classes"]
    flags = head["flags"]
    if (k != k[0]).any() or (flags & BINARY != flags[0] & BINARY).any():
        raise _bad("must all share K and binary to merge; got blobs that differ")
    n_classes, binary = int(k[0]), bool(flags[0] & BINARY)
    width = head["width"]
    positive = (flags & POSITIVE) != 0
    if (
        n_classes < 2
        or (binary and n_classes != 2)
        or (flags & ~np.uint8(_FLAGS)).any()
        or ((flags & PREDICTED_DENSE != 0) & (head["n_predicted"] != n_classes)).any()
        or ((flags & LABEL_DENSE != 0) & (head["n_label"] != n_classes)).any()
        or (positive != (n_classes == 2)).any()
        or ((width != 1) & (width != 2) & (width != 4) & (width != 8)).any()
        or (head["index_width"] != index_width(n_classes)).any()
    ):
        raise _bad("is not a valid MonitorStats header (flags, width or K)")
    if not np.all(np.isfinite(np.stack([head[name] for name in _FLOATS]))):
        raise _bad("holds a non-finite sum in its header")
    weighted = ((flags & WEIGHTED) != 0).astype(np.int64)
    w = width.astype(np.int64)
    per_cell = 2 + w + 8 + np.where(weighted, 8, w) + 8 * weighted
    cells = head["n_top"].astype(np.int64) + np.where(positive, head["n_positive"], 0)
    expected = HEADER.itemsize + class_bytes(head, n_classes) + cells * per_cell
    if (expected != lengths).any():
        i = int(np.flatnonzero(expected != lengths)[0])
        raise _bad(
            f"has the wrong length: blob {i} holds {lengths[i]} bytes, its header implies {expected[i]}"
        )
    return n_classes, binary


def decode_many(blobs: Sequence[bytes]) -> MonitorStats:
    """The merge of many :func:`encode` blobs, read together; InputError("stats", ...) on bad bytes."""
    if not blobs:
        raise _bad("must hold at least one blob; got none")
    try:
        lengths = np.fromiter(map(len, blobs), np.int64, len(blobs))
        data = b"".join(blobs)
    except TypeError as exc:
        raise _bad(f"must be bytes; got {type(blobs[0]).__name__}") from exc
    if (lengths < HEADER.itemsize).any():
        if (expanded := expand(blobs)) is not None:  # raw batches among them (raw_batch)
            return decode_many(expanded)
        raise _bad(f"must be at least {HEADER.itemsize} bytes (a MonitorStats header); got {lengths.min()}")
    starts = np.cumsum(lengths) - lengths
    head = _window(data, np.dtype(f"V{HEADER.itemsize}"))[starts].view(HEADER)
    if (head["version"] != VERSION).any() and (expanded := expand(blobs)) is not None:
        return decode_many(expanded)
    n_classes, binary = _check_headers(head, lengths)
    flags = head["flags"]
    weighted = (flags & WEIGHTED) != 0
    layout = (flags & (WEIGHTED | PREDICTED_DENSE | LABEL_DENSE)).astype(np.int64) * 16 + head["width"]
    iw = index_width(n_classes)
    sections: dict[str, list[np.ndarray]] = {
        name: [] for name in ("predicted", "label", "predicted_dense", "label_dense", "top", "positive")
    }
    groups = np.unique(layout)
    for group in groups:  # a few layouts (width, weighted, dense sections), never one per blob
        width, group_flags = int(group) % 16, int(group) // 16
        is_weighted = bool(group_flags & WEIGHTED)
        mine = slice(None) if groups.size == 1 else np.flatnonzero(layout == group)
        h = head[mine]
        pos = starts[mine] + HEADER.itemsize
        for side, flag in (("predicted", PREDICTED_DENSE), ("label", LABEL_DENSE)):
            n = h[f"n_{side}"].astype(np.int64)
            if group_flags & flag:  # every blob holds K records: one row each, summed as rows
                record = dense_record(width, is_weighted)
                row = np.dtype(f"V{n_classes * record.itemsize}")
                rows = _gather(data, pos, np.ones(n.size, np.int64), row).view(record)
                sections[f"{side}_dense"].append(rows.reshape(n.size, n_classes))
            else:
                record = class_record(width, iw, is_weighted)
                sections[side].append(_gather(data, pos, n, record))
            pos = pos + n * record.itemsize
        for side in ("top", "positive") if n_classes == 2 else ("top",):
            record = cell_record(width, is_weighted)
            n = h[f"n_{side}"].astype(np.int64)
            sections[side].append(_gather(data, pos, n, record))
            pos = pos + n * record.itemsize
    return _assemble(head, n_classes, binary, bool(weighted.any()), sections)


def _field(records: list[np.ndarray], name: str, dtype: type) -> np.ndarray:
    """One field of every group's records, as one contiguous array of `dtype`."""
    if len(records) == 1:
        return records[0][name].astype(dtype)
    return np.concatenate([r[name].astype(dtype) for r in records] or [np.zeros(0, dtype)])


def _weights(records: list[np.ndarray]) -> FloatArray:
    """``Σ w`` of every record: the stored weight, or the row count in unweighted blobs."""
    parts = [
        r["weight" if "weight" in (r.dtype.names or ()) else "count"].astype(np.float64) for r in records
    ]
    return np.concatenate(parts or [np.zeros(0)])


def _assemble(
    head: np.ndarray, n_classes: int, binary: bool, weighted: bool, sections: dict[str, list[np.ndarray]]
) -> MonitorStats:
    def per_class(side: str, rows: int) -> tuple[IntArray, FloatArray | None]:
        records = sections[side]
        index = _field(records, "index", np.intp)
        if index.size and index.max() >= n_classes:
            raise _bad(f"holds a class index ≥ K = {n_classes}")
        total = exact_bincount(index, _field(records, "count", np.float64), n_classes, rows)
        weight = weighted_bincount(index, _weights(records), n_classes) if weighted else None
        for dense in sections[f"{side}_dense"]:  # blobs × K
            total += dense["count"].sum(axis=0, dtype=np.int64)
            if weight is not None:
                names = dense.dtype.names or ()
                weight += dense["weight" if "weight" in names else "count"].sum(axis=0, dtype=np.float64)
        return total, weight

    def hist(side: str) -> FineHistogram:
        records = sections[side]
        cells = _field(records, "cell", np.intp)
        if cells.size and cells.max() >= N_CELLS:
            raise _bad(f"holds a histogram cell ≥ {N_CELLS}")
        count = _field(records, "count", np.float64)  # bincount adds in float64 (exact: see reduce)
        conf, hits = _field(records, "conf", np.float64), _field(records, "hits", np.float64)
        return FineHistogram.reduce(
            cells, count, conf, hits, _weights(records) if weighted else None, rows=n_labelled
        )

    ints = {name: int(head[name].sum(dtype=np.uint64)) for name in ("n_predictions", "n_labelled", "correct")}
    predicted, predicted_w = per_class("predicted", ints["n_predictions"])
    labels, labels_w = per_class("label", ints["n_labelled"])
    floats = {name: float(np.add.reduce(head[name])) for name in _FLOATS}
    n_labelled = ints["n_labelled"]
    top = hist("top")
    positive = hist("positive") if n_classes == 2 else None
    if (
        int(predicted.sum()) != ints["n_predictions"]
        or int(labels.sum()) != n_labelled
        or int(top.count.sum()) != n_labelled
        or (positive is not None and int(positive.count.sum()) != n_labelled)
        or ints["correct"] > n_labelled
    ):
        raise _bad("is inconsistent: its per-class or per-cell counts do not add up to its row counts")
    return MonitorStats(
        n_classes=n_classes,
        binary=binary,
        n_predictions=ints["n_predictions"],
        weight_predictions=floats["weight_predictions"],
        confidence_sum=floats["confidence_sum"],
        predicted_counts=predicted,
        n_labelled=n_labelled,
        weight_labelled=floats["weight_labelled"],
        nll_sum=floats["nll_sum"],
        brier_sum=floats["brier_sum"],
        correct=ints["correct"],
        correct_weight=floats["correct_weight"],
        labelled_confidence_sum=floats["labelled_confidence_sum"],
        label_counts=labels,
        top=top,
        positive=positive,
        predicted_weights=predicted_w,
        label_weights=labels_w,
    )
