"""A real additive blob type for the store's tests: little-endian float64 vectors, merged by sum.

Integer-valued floats add exactly, so a merged blob can be compared with ``==``.
"""

from collections.abc import Iterable, Sequence

import numpy as np


def blob(*values: float) -> bytes:
    return np.asarray(values, dtype="<f8").tobytes()


def values(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype="<f8")


def merge(blobs: Sequence[bytes]) -> bytes:
    return np.sum([values(b) for b in blobs], axis=0).astype("<f8").tobytes()


def total(rows: Iterable[tuple[int, str, bytes]]) -> np.ndarray:
    return values(merge([b for _, _, b in rows]))
