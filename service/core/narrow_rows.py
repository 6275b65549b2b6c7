"""Row maxima and argmax of N×K arrays with short rows, in transposed cache-sized blocks.

NumPy reduces along a short last axis (K = 10) several times slower than the ``exp`` of the
same array. Rows are taken in blocks of about ``BLOCK_BYTES``, each block is transposed to
K×rows, and every reduction then runs along the long contiguous axis. Wide rows
(K ≥ ``NARROW_K``) are reduced as they are.
"""

import numpy as np

from ._typing import FloatArray, IntArray
from .cancel import checkpoint

BLOCK_BYTES = 1 << 18  # measured best on a 1 MiB L2 (docs/internals.md, Block sizes)
NARROW_K = 64
#: Below this many elements the blocks' set-up costs more than NumPy's slow short-axis reduction.
SMALL_ELEMENTS = 4096


def row_argmax(values: FloatArray) -> tuple[IntArray, FloatArray]:
    """First index of each row's maximum and the maximum itself: ``(argmax, max)`` along axis 1.

    Same as ``values.argmax(axis=1)`` and ``values.max(axis=1)`` (ties go to the lowest
    index; a row holding NaN falls back to ``argmax``, which picks its first NaN).

    Examples
    --------
    >>> row_argmax(np.array([[0.2, 0.4, 0.4], [0.9, 0.05, 0.05]]))
    (array([1, 0]), array([0.4, 0.9]))
    """
    n, k = values.shape
    if k >= NARROW_K or n * k <= SMALL_ELEMENTS:
        index = values.argmax(axis=1)
        return index, values[np.arange(n), index]
    index = np.empty(n, np.intp)
    maxima = np.empty(n, values.dtype)
    rows = max(1, BLOCK_BYTES // (k * values.itemsize))
    ranks = np.arange(k, 0, -1, dtype=np.int8 if k < 128 else np.int16)[:, None]  # k, ..., 1
    scratch = np.empty((k, min(rows, n)), values.dtype)
    for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + rows)
        zt = scratch[:, : values[block].shape[0]]
        zt[...] = values[block].T  # K×rows: reductions along the long axis
        m = zt.max(axis=0, out=maxima[block])
        index[block] = k - ((zt == m) * ranks).max(axis=0)  # the first maximum has the largest rank
    if np.isnan(maxima).any():  # NaN equals nothing: let argmax place it
        index = values.argmax(axis=1)
        maxima = np.take_along_axis(values, index[:, None], axis=1)[:, 0]
    return index, maxima
