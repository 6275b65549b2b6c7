"""Versioned bytes of :class:`~service.core.monitor_stats.MonitorStats`, and a vectorised many-blob decoder.

Version 1, little-endian, no padding::

    header (100 bytes)
      u1 version = 1 | u1 flags (1 binary, 2 weighted, 4 positive-class histogram)
      u1 width: bytes of every stored count (1, 2, 4 or 8: the fewest that hold the blob's
         largest count) | u1 index_width: bytes of a class index (1 if K ≤ 256, 2 if
         K ≤ 65,536, else 4) | u4 n_classes
      u8 n_predictions, n_labelled, correct
      f8 weight_predictions, confidence_sum, weight_labelled, nll_sum, brier_sum,
         correct_weight, labelled_confidence_sum
      u4 n_predicted, n_label (non-zero classes stored) | u2 n_top, n_positive (cells stored)
    predicted classes:  index × n_predicted, count × n_predicted [, f8 weight × n_predicted]
    label classes:      the same with n_label
    top histogram:      u2 cell × n_top, count × n_top, f8 Σ w·c × n_top,
                        hits × n_top (a count, or f8 when weighted) [, f8 Σ w × n_top]
    positive histogram: the same with n_positive (when flag 4)

Only non-empty classes and cells are stored, so a small batch is small whatever K is.
:func:`decode_many` reads any number of blobs with a fixed number of NumPy calls (one
gather per field per group of blobs sharing width and weighting), not a loop per blob.
"""

from collections.abc import Sequence

import numpy as np

from ._typing import FloatArray, IntArray
from .errors import InputError
from .fine_histogram import N_CELLS, FineHistogram
from .monitor_stats import MonitorStats

VERSION = 1
BINARY, WEIGHTED, POSITIVE = 1, 2, 4
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
_FLOATS = (
    "weight_predictions",
    "confidence_sum",
    "weight_labelled",
    "nll_sum",
    "brier_sum",
    "correct_weight",
    "labelled_confidence_sum",
)
_F8 = np.dtype("<f8")
_CELL = np.dtype("<u2")


def _unsigned(width: int) -> np.dtype:
    return np.dtype(f"<u{width}")


def count_width(largest: int) -> int:
    """Bytes of the narrowest unsigned integer holding `largest` (1, 2, 4 or 8)."""
    return next(w for w in (1, 2, 4, 8) if largest < 256**w)


def index_width(n_classes: int) -> int:
    """Bytes of a class index for K classes."""
    return 1 if n_classes <= 256 else 2 if n_classes <= 65536 else 4


def encode(stats: MonitorStats) -> bytes:
    """Bytes of `stats` (format in the module docstring)."""
    width = count_width(max(stats.n_predictions, stats.n_labelled))
    counts, index = _unsigned(width), _unsigned(index_width(stats.n_classes))
    weighted = stats.weighted
    head = np.zeros((), HEADER)
    flags = BINARY * stats.binary | WEIGHTED * weighted | POSITIVE * (stats.positive is not None)
    head["version"], head["flags"], head["width"] = VERSION, flags, width
    head["index_width"], head["n_classes"] = index.itemsize, stats.n_classes
    for name in ("n_predictions", "n_labelled", "correct", *_FLOATS):
        head[name] = getattr(stats, name)
    parts: list[bytes] = []
    for name, key, size in (
        ("predicted_counts", "predicted_weights", "n_predicted"),
        ("label_counts", "label_weights", "n_label"),
    ):
        values = getattr(stats, name)
        nz = np.flatnonzero(values)
        head[size] = nz.size
        parts += [nz.astype(index).tobytes(), values[nz].astype(counts).tobytes()]
        if weighted:
            parts.append(getattr(stats, key)[nz].astype(_F8).tobytes())
    hists = [("n_top", stats.top)] + ([("n_positive", stats.positive)] if stats.positive is not None else [])
    for size, hist in hists:
        head[size] = hist.cells.size
        parts += [hist.cells.astype(_CELL).tobytes(), hist.count.astype(counts).tobytes()]
        parts.append(hist.conf.astype(_F8).tobytes())
        parts.append(hist.hits.astype(_F8 if weighted else counts).tobytes())
        if weighted:
            parts.append(hist.weights.astype(_F8).tobytes())
    return head.tobytes() + b"".join(parts)


def _bad(reason: str) -> InputError:
    return InputError("stats", reason)


def _window(data: bytes, dtype: np.dtype) -> np.ndarray:
    """Every `dtype` value starting at every byte of `data` (a stride-1 view, no copy)."""
    return np.ndarray((len(data) - dtype.itemsize + 1,), dtype, buffer=data, strides=(1,))


def _gather(data: bytes, offsets: IntArray, counts: IntArray, dtype: np.dtype) -> np.ndarray:
    """The ``counts[b]`` values of `dtype` stored from byte ``offsets[b]`` of each blob, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype)
    size = dtype.itemsize
    before = np.cumsum(counts) - counts
    positions = np.repeat(offsets - before * size, counts) + np.arange(total) * size
    return _window(data, dtype)[positions]


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
        or (flags & ~np.uint8(BINARY | WEIGHTED | POSITIVE)).any()
        or (positive != (n_classes == 2)).any()
        or not np.isin(width, (1, 2, 4, 8)).all()
        or (head["index_width"] != index_width(n_classes)).any()
    ):
        raise _bad("is not a valid MonitorStats header (flags, width or K)")
    if not np.all(np.isfinite(np.stack([head[name] for name in _FLOATS]))):
        raise _bad("holds a non-finite sum in its header")
    weighted = ((flags & WEIGHTED) != 0).astype(np.int64)
    w = width.astype(np.int64)
    per_class = head["index_width"].astype(np.int64) + w + 8 * weighted
    per_cell = 2 + w + 8 + np.where(weighted, 8, w) + 8 * weighted
    cells = head["n_top"].astype(np.int64) + np.where(positive, head["n_positive"], 0)
    classes = head["n_predicted"].astype(np.int64) + head["n_label"]
    expected = HEADER.itemsize + classes * per_class + cells * per_cell
    if (expected != lengths).any():
        i = int(np.flatnonzero(expected != lengths)[0])
        raise _bad(f"has the wrong length: blob {i} holds {lengths[i]} bytes, its header implies {expected[i]}")
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
        raise _bad(f"must be at least {HEADER.itemsize} bytes (a MonitorStats header); got {lengths.min()}")
    starts = np.cumsum(lengths) - lengths
    head = _window(data, HEADER)[starts]
    n_classes, binary = _check_headers(head, lengths)
    classes: dict[str, list[np.ndarray]] = {}
    cells: dict[str, list[np.ndarray]] = {}
    weighted = (head["flags"] & WEIGHTED) != 0
    index = _unsigned(index_width(n_classes))
    for group in np.unique(head["width"].astype(np.int64) * 2 + weighted):  # ≤ 8 kinds of blob, not blobs
        width, is_weighted = int(group) // 2, bool(group % 2)
        mine = np.flatnonzero(head["width"].astype(np.int64) * 2 + weighted == group)
        h = head[mine]
        pos = starts[mine] + HEADER.itemsize
        count = _unsigned(width)

        def take(n: IntArray, dtype: np.dtype) -> np.ndarray:
            nonlocal pos
            values = _gather(data, pos, n, dtype)
            pos = pos + n * dtype.itemsize
            return values

        for side in ("predicted", "label"):
            n = h[f"n_{side}"].astype(np.int64)
            idx, cnt = take(n, index), take(n, count).astype(np.int64)
            classes.setdefault(side, []).append(idx.astype(np.int64))
            classes.setdefault(f"{side}_count", []).append(cnt)
            classes.setdefault(f"{side}_weight", []).append(take(n, _F8) if is_weighted else cnt.astype(float))
        for side in ("top", "positive"):
            n = h[f"n_{side}"].astype(np.int64) * ((h["flags"] & POSITIVE != 0) | (side == "top"))
            cell, cnt = take(n, _CELL).astype(np.int64), take(n, count).astype(np.int64)
            conf = take(n, _F8)
            hits = take(n, _F8) if is_weighted else take(n, count).astype(np.float64)
            weight = take(n, _F8) if is_weighted else cnt.astype(np.float64)
            for name, values in zip(("cell", "count", "conf", "hits", "weight"), (cell, cnt, conf, hits, weight)):
                cells.setdefault(f"{side}_{name}", []).append(values)
    return _assemble(head, n_classes, binary, bool(weighted.any()), classes, cells)


def _assemble(
    head: np.ndarray,
    n_classes: int,
    binary: bool,
    weighted: bool,
    classes: dict[str, list[np.ndarray]],
    cells: dict[str, list[np.ndarray]],
) -> MonitorStats:
    cat = {name: np.concatenate(parts) for name, parts in {**classes, **cells}.items()}
    for side in ("predicted", "label"):
        if cat[side].size and cat[side].max() >= n_classes:
            raise _bad(f"holds a class index ≥ K = {n_classes}")
    for side in ("top", "positive"):
        if cat[f"{side}_cell"].size and cat[f"{side}_cell"].max() >= N_CELLS:
            raise _bad(f"holds a histogram cell ≥ {N_CELLS}")

    def per_class(side: str) -> tuple[IntArray, FloatArray | None]:
        idx = cat[side]
        total = _exact_bincount(idx, cat[f"{side}_count"], n_classes)
        weight = np.bincount(idx, weights=cat[f"{side}_weight"], minlength=n_classes) if weighted else None
        return total, weight

    def hist(side: str) -> FineHistogram:
        c = {name: cat[f"{side}_{name}"] for name in ("cell", "count", "conf", "hits", "weight")}
        return FineHistogram.reduce(c["cell"], c["count"], c["conf"], c["hits"], c["weight"] if weighted else None)

    predicted, predicted_w = per_class("predicted")
    labels, labels_w = per_class("label")
    ints = {name: int(head[name].sum(dtype=np.uint64)) for name in ("n_predictions", "n_labelled", "correct")}
    floats = {name: float(np.add.reduce(head[name])) for name in _FLOATS}
    top = hist("top")
    positive = hist("positive") if n_classes == 2 else None
    n_labelled = ints["n_labelled"]
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
        predicted_counts=predicted,
        label_counts=labels,
        top=top,
        positive=positive,
        predicted_weights=predicted_w,
        label_weights=labels_w,
        **ints,
        **floats,
    )


def _exact_bincount(index: IntArray, counts: IntArray, size: int) -> IntArray:
    """Integer sums per index: float64 ``bincount`` while exact (total < 2**53), else ``np.add.at``."""
    if counts.size and int(counts.sum(dtype=np.uint64)) >= 2**53:
        out = np.zeros(size, np.int64)
        np.add.at(out, index, counts)
        return out
    return np.bincount(index, weights=counts, minlength=size).astype(np.int64)
