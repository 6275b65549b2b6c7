"""A batch's rows kept beyond its statistics: pending rows and the reservoir's candidates.

A row with an id and no label waits in the pending store, its logits or probabilities kept as
raw little-endian bytes, until its label joins it (:mod:`.late_labels`). A labelled row may
enter the monitor's reservoir: it is sent with a random 64-bit sample key (bottom-k sampling).
"""

import os
import threading

import numpy as np
import numpy.typing as npt

from service.core import Distribution, dtype_name
from service.core._typing import FloatArray, IntArray
from service.store import PendingRow, ReservoirBatch

from .finite_rows import check_finite_spans


def _raw_rows(dist: Distribution, rows: IntArray) -> tuple[str, str, list[bytes]]:
    """Kind, dtype and the little-endian bytes of each of `rows` (its logits or probabilities)."""
    kind = "logits" if dist.logits is not None else "probs"
    source = dist.logits if dist.logits is not None else dist.sent_probs
    assert source is not None
    picked = np.ascontiguousarray(source[rows], dtype=source.dtype.newbyteorder("<"))
    data = picked.tobytes()
    step = picked.itemsize * (1 if picked.ndim == 1 else picked.shape[1])
    return kind, dtype_name(source.dtype), [data[i * step : (i + 1) * step] for i in range(rows.size)]


def pending_rows(
    dist: Distribution, t: FloatArray, ids: list[str | None] | None, labelled: np.ndarray, segment: str
) -> list[PendingRow]:
    """The rows with an id and no label, to wait for their labels (their predictions as raw bytes)."""
    if ids is None:
        return []
    has_id = np.fromiter((i is not None for i in ids), bool, len(ids))
    rows = np.flatnonzero(has_id & ~labelled)
    if rows.size == 0:
        return []
    check_finite_spans(dist, rows)
    kind, dtype, raw = _raw_rows(dist, rows)
    return [
        PendingRow(ids[i], float(t[i]), segment, kind, dtype, data)  # type: ignore[arg-type]
        for i, data in zip(rows.tolist(), raw, strict=True)
    ]


_KEYS = threading.local()


def sample_keys(n: int) -> npt.NDArray[np.int64]:
    """`n` bottom-k sample keys, iid uniform over every int64.

    From a PCG64 generator of the calling thread, seeded from the OS once per thread and process
    (a forked child seeds its own): ~20 µs for 10,000 keys, where ``os.urandom`` took ~190.
    """
    held = getattr(_KEYS, "generator", None)
    if held is None or held[0] != os.getpid():
        held = (os.getpid(), np.random.PCG64(int.from_bytes(os.urandom(16), "little")))
        _KEYS.generator = held
    return held[1].random_raw(n).view(np.int64)


def reservoir_rows(
    dist: Distribution, t: FloatArray, labels: IntArray | None, labelled: np.ndarray, segment: str, size: int
) -> ReservoirBatch | tuple[()]:
    """The batch's labelled rows that may enter a bottom-`size` reservoir, with their sample keys.

    Keys are iid uniform 64-bit integers; a row that is not among the `size` smallest keys of its
    own batch cannot be among the `size` smallest of all rows, so only those are sent. Their
    logits or probabilities are sent as the batch's whole array and the rows' indices into it:
    the store copies only the rows it keeps.
    """
    if labels is None or size <= 0:
        return ()
    rows = labelled.nonzero()[0]
    if rows.size == 0:
        return ()
    keys = sample_keys(rows.size)
    if rows.size > size:
        keep = np.sort(np.argpartition(keys, size - 1)[:size])
        rows, keys = rows[keep], keys[keep]
    kind = "logits" if dist.logits is not None else "probs"
    source = dist.logits if dist.logits is not None else dist.sent_probs
    assert source is not None
    whole = np.ascontiguousarray(source, dtype=source.dtype.newbyteorder("<"))  # (no copy when it is)
    payload = whole.reshape(whole.shape[0], -1).view(np.uint8)
    every = rows.size == t.shape[0]  # (the usual batch: every row labelled, nothing to gather)
    return ReservoirBatch(
        segment,
        kind,
        dtype_name(source.dtype),
        (t if every else t[rows]).astype(np.float64, copy=False),
        (labels if every else labels[rows]).astype(np.int64, copy=False),
        keys,
        payload,
        None if every else rows,
    )
