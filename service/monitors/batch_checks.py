"""The checks of a batch's times, ids and segment, and the buckets of its rows' times.

A row's bucket is ``floor(time / bucket_s) * bucket_s``; a time lies within the monitor's
retention and at most ``MAX_FUTURE_S`` ahead of the server's clock; an id is null or a string
of 1 to ``MAX_ID_CHARS`` characters; a segment is printable, at most ``MAX_SEGMENT_CHARS``.
"""

from collections.abc import Sequence

import numpy as np

from service.core import InputError
from service.core._typing import FloatArray, IntArray
from service.store import MonitorConfig

#: How far ahead of the server's clock a timestamp may lie, in seconds.
MAX_FUTURE_S = 300.0
MAX_SEGMENT_CHARS = 64
MAX_ID_CHARS = 128


def check_segment(segment: object) -> str:
    """`segment` as a string: printable, at most 64 characters ("" is the default segment)."""
    if segment is None:
        return ""
    if not isinstance(segment, str):
        raise InputError("segment", f"must be a string; got {type(segment).__name__}")
    if len(segment) > MAX_SEGMENT_CHARS or not segment.isprintable():
        raise InputError("segment", f"must be printable and at most {MAX_SEGMENT_CHARS} characters")
    return segment


def bucket_starts(times: FloatArray, bucket_s: int) -> IntArray:
    """The start (integer epoch seconds) of each time's bucket."""
    return np.floor(np.asarray(times, np.float64) / bucket_s).astype(np.int64) * bucket_s


def check_times(times: object, n: int, config: MonitorConfig, now: float) -> FloatArray:
    """`times` (epoch seconds, one per row) as float64, within the retention, not ahead; None: `now`."""
    if times is None:  # (np.full, without its wrapper's dtype of the scalar)
        t = np.empty(n)
        t.fill(now)
        return t
    t = np.asarray(times)
    if t.ndim != 1 or t.shape[0] != n:
        raise InputError("timestamps", f"must hold one epoch time per row ({n}); got shape {t.shape}")
    if t.dtype.kind not in "fiu":
        raise InputError("timestamps", f"must hold numbers (epoch seconds); got {t.dtype}")
    t = t.astype(np.float64)
    low, high = now - config.retention_s, now + MAX_FUTURE_S
    bad = ~np.isfinite(t) | (t < low) | (t > high)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            "timestamps",
            f"must lie within the retention ({config.retention_s} s back) and at most "
            f"{MAX_FUTURE_S:g} s ahead of the server clock, [{low:.3f}, {high:.3f}]; got {t[i]}",
            index=(i,),
        )
    return t


def check_ids(ids: Sequence[object] | None, n: int) -> list[str | None] | None:
    """`ids` (one per row: null or a string of 1 to ``MAX_ID_CHARS`` characters) as a list; None: none."""
    if ids is None:
        return None
    if isinstance(ids, np.ndarray):
        ids = ids.tolist()
    if not isinstance(ids, list | tuple) or len(ids) != n:
        got = len(ids) if isinstance(ids, list | tuple) else type(ids).__name__
        raise InputError("ids", f"must hold one id (string or null) per row ({n}); got {got}")
    for i, value in enumerate(ids):
        if value is not None and (not isinstance(value, str) or not 0 < len(value) <= MAX_ID_CHARS):
            raise InputError("ids", f"must be null or a string of 1 to {MAX_ID_CHARS} characters", index=(i,))
    return list(ids)
