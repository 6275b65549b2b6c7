"""A sparse fine histogram of (confidence, outcome) pairs that coarsens exactly to equal-width bins.

The unit interval is cut at the ``FINE_BINS + 1 = 2521`` edges ``fl(j / 2520)`` (each the
correctly rounded quotient, :func:`~service.core.calibration.bin_edges.uniform_edges` with rule
``"exact"``). A confidence falls in one of ``2 · 2520 + 1`` *cells*: cell ``2j`` holds
values exactly on edge j, cell ``2f + 1`` values strictly inside fine bin f. For any B
that divides 2520 the B-bin edge ``fl(i / B)`` *is* the fine edge ``fl(i · (2520 / B) / 2520)``
(the same rational, rounded once), so every cell lies in exactly one B-bin under either
``closed`` convention: an interior cell in bin ``f // m`` (m = 2520 / B), an edge cell in
``(j - 1) // m`` with ``closed="right"`` (0 for j = 0) or ``min(j, 2519) // m`` with
``closed="left"``. That is the bin :func:`~service.core.calibration.bin_edges.assign_shared` gives the
value itself, including float32 values compared with the float64 edges.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

from .._typing import FloatArray, IntArray
from ..calibration.bin_edges import uniform_edges
from ..errors import InputError

#: Fine equal-width bins: every B dividing 2520 (1-10, 12, 14, 15, 18, 20, 21, 24, ...) coarsens exactly.
FINE_BINS = 2520
#: Cells: the 2521 edges and the 2520 open fine bins between them.
N_CELLS = 2 * FINE_BINS + 1
#: Every B for which the fine histogram gives exact B-bin sums.
ALLOWED_BINS = tuple(b for b in range(1, FINE_BINS + 1) if FINE_BINS % b == 0)
#: `FineHistogram.reduce` sorts the entries rather than counting all cells below N_CELLS / this.
SPARSE_RATIO = 8
_FINE_EDGES = uniform_edges(FINE_BINS)
_FINE_EDGES.flags.writeable = False
#: The fine edges ``fl(j / 2520)``, j = 0 … 2520 (read only).
FINE_EDGES = _FINE_EDGES
_ALLOWED = frozenset(ALLOWED_BINS)
# assign_shared's guess-and-correct for these edges, with its per-call set-up done once: the
# edges lie within 1/(4 · 2520) of j/2520 (uniform_edges rounds each quotient once), and the
# inner edges padded with ∓inf so a guess one bin off settles with one comparison each side.
_UPPER = np.concatenate([_FINE_EDGES[1:-1], [np.inf]])  # upper edge of bin f (the last: +inf)
_LOWER = np.concatenate([[-np.inf], _FINE_EDGES[1:-1]])  # lower edge of bin f (the first: -inf)


def fine_cells(conf: FloatArray) -> IntArray:
    """Cell of every confidence in [0, 1]: ``2j`` on edge ``fl(j / 2520)``, ``2f + 1`` inside bin f.

    Examples
    --------
    >>> fine_cells(np.array([0.0, 0.5, 0.50001, 1.0]))
    array([   0, 2520, 2521, 5040])
    """
    if conf.dtype == np.float32:
        return _float32_cells(conf)
    # assign_shared(conf, _FINE_EDGES, "right"): E[f] < c <= E[f + 1], 0 in bin 0
    right = np.multiply(conf, FINE_BINS).astype(np.intp)
    np.minimum(np.maximum(right, 0, out=right), FINE_BINS - 1, out=right)  # np.clip, without its wrapper
    right += conf > _UPPER[right]
    right -= conf <= _LOWER[right]
    cells = 2 * right + 1
    cells += conf == _FINE_EDGES[right + 1]  # on the upper edge f + 1: cell 2(f + 1)
    cells -= conf == _FINE_EDGES[right]  # only c = 0 (edge 0): cell 0
    return cells


def _float32_cells(conf: FloatArray) -> IntArray:
    """:func:`fine_cells` of float32 confidences: ``floor(x) + ceil(x)`` with ``x = 2520 c`` in float64.

    ``x`` is exact (24 + 9 significant bits). No float32 lies between ``j / 2520`` and its
    rounding ``fl(j / 2520)`` (they are equal for the nine multiples of 315; checked edge by edge
    in the tests), so a float32 c is on edge j exactly when ``x = j`` (cell 2j) and strictly inside
    fine bin f exactly when ``f < x < f + 1`` (cell 2f + 1).
    """
    x = conf.astype(np.float64)
    x *= FINE_BINS
    below = np.floor(x)
    np.ceil(x, out=x)
    x += below
    return x.astype(np.intp)


def check_bins(n_bins: object) -> int:
    """Return `n_bins` if it divides 2520, else raise an InputError listing the allowed values.

    Examples
    --------
    >>> check_bins(15)
    15
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer) or int(n_bins) not in _ALLOWED:
        allowed = ", ".join(map(str, ALLOWED_BINS))
        raise InputError("n_bins", f"must divide {FINE_BINS}; allowed: {allowed}; got {n_bins!r}")
    return int(n_bins)


def coarse_index(cells: IntArray, n_bins: int, closed: Literal["right", "left"]) -> IntArray:
    """The B-bin (B dividing 2520) of every cell under the `closed` convention (module docstring)."""
    m = FINE_BINS // n_bins
    half = cells >> 1
    on_edge = np.maximum(half - 1, 0) if closed == "right" else np.minimum(half, FINE_BINS - 1)
    return np.where(cells & 1, half, on_edge) // m


@lru_cache(maxsize=8)
def coarse_table(n_bins: int, closed: Literal["right", "left"]) -> IntArray:
    """``coarse_index`` of every cell, computed once per binning (read only): gathered by `coarsen`."""
    table = coarse_index(np.arange(N_CELLS), n_bins, closed)
    table.flags.writeable = False
    return table


@dataclass(frozen=True, eq=False)
class FineHistogram:
    """Sums per non-empty cell, cells in increasing order.

    Attributes
    ----------
    cells : ndarray of int64
        Non-empty cells in ``[0, N_CELLS)``, increasing.
    count : ndarray of int64
        Rows per cell.
    conf : ndarray of float64
        ``Σ w · c`` per cell.
    hits : ndarray of float64
        ``Σ w · outcome`` per cell (an integer count when unweighted).
    weight : ndarray of float64 or None
        ``Σ w`` per cell; None when every row weighs 1 (then it equals `count`).
    """

    cells: IntArray
    count: IntArray
    conf: FloatArray
    hits: FloatArray
    weight: FloatArray | None = None

    @classmethod
    def empty(cls, *, weighted: bool = False) -> "FineHistogram":
        """No rows."""
        zero = np.zeros(0)
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), zero, zero, zero if weighted else None)

    @classmethod
    def of(cls, conf: FloatArray, outcome: FloatArray, weights: FloatArray | None) -> "FineHistogram":
        """Histogram of pairs: confidences in [0, 1], 0/1 outcomes, optional per-row weights."""
        if weights is None and conf.size * SPARSE_RATIO >= N_CELLS:
            return cls._of_unweighted(fine_cells(conf), conf, outcome)
        c = conf.astype(np.float64)
        o = outcome.astype(np.float64)
        if weights is not None:
            c = c * weights
            o = o * weights
        n = conf.shape[0]
        return cls.reduce(fine_cells(conf), np.ones(n, np.int64), c, o, weights, rows=n)

    @classmethod
    def _of_unweighted(cls, cells: IntArray, conf: FloatArray, outcome: np.ndarray) -> "FineHistogram":
        """:meth:`of` without weights over all cells (as :meth:`reduce` above its sparse threshold).

        The same sums: ``np.bincount`` adds each cell's entries in entry order, its weights cast to
        float64 as :meth:`of` casts them; the counts are integer ones, not float64 sums of ones.
        """
        count = np.bincount(cells, minlength=N_CELLS)
        nz = count.nonzero()[0]
        sums = [weighted_bincount(cells, v, N_CELLS)[nz] for v in (conf, outcome)]
        return cls(nz.astype(np.int64), count[nz].astype(np.int64, copy=False), sums[0], sums[1], None)

    @classmethod
    def reduce(
        cls,
        cells: IntArray,
        count: np.ndarray,
        conf: FloatArray,
        hits: FloatArray,
        weight: FloatArray | None,
        *,
        rows: int,
    ) -> "FineHistogram":
        """Add up entries that share a cell (any order, repeats allowed): one ``np.bincount`` per sum.

        `count` (integers, as int or float64) adds up to `rows`; below 2**53 float64 sums are exact.
        """
        if cells.size > 0 and cells.size * SPARSE_RATIO < N_CELLS:
            # Few entries: count over the distinct cells only (one sort) instead of all 5,041.
            # ``bincount`` still adds each cell's entries in entry order: the same sums, bit for bit.
            used, index = _distinct(cells)
            size = used.size
        else:
            used, index, size = None, cells, N_CELLS
        total = exact_bincount(index, count, size, rows)
        nz = np.flatnonzero(total)
        sums = [weighted_bincount(index, v, size)[nz] for v in (conf, hits)]
        weights = None if weight is None else weighted_bincount(index, weight, size)[nz]
        kept = nz if used is None else used[nz]
        return cls(kept.astype(np.int64), total[nz], sums[0], sums[1], weights)

    @property
    def weights(self) -> FloatArray:
        """``Σ w`` per cell (the row count when unweighted)."""
        return self.count.astype(np.float64) if self.weight is None else self.weight

    def coarsen(
        self, n_bins: int, closed: Literal["right", "left"]
    ) -> tuple[IntArray, FloatArray, FloatArray, FloatArray]:
        """``(rows, Σ w, Σ w·c, Σ w·outcome)`` per B-bin; B must divide 2520 (:func:`check_bins`)."""
        index = coarse_table(n_bins, closed)[self.cells]
        rows = exact_bincount(index, self.count, n_bins, int(self.count.sum()))
        return (
            rows,
            weighted_bincount(index, self.weights, n_bins),
            weighted_bincount(index, self.conf, n_bins),
            weighted_bincount(index, self.hits, n_bins),
        )


def _distinct(cells: IntArray) -> tuple[IntArray, IntArray]:
    """``np.unique(cells, return_inverse=True)`` (non-empty `cells`) in a few ufunc calls."""
    order = np.argsort(cells, kind="stable")
    ranked = cells[order]
    first = np.empty(ranked.size, bool)
    first[0] = True
    np.not_equal(ranked[1:], ranked[:-1], out=first[1:])
    inverse = np.empty(ranked.size, np.intp)
    inverse[order] = np.cumsum(first) - 1
    return ranked[first], inverse


def weighted_bincount(index: IntArray, weights: np.ndarray, size: int) -> FloatArray:
    """``Σ weights`` per index in ``[0, size)``, in float64 (``np.bincount`` adds in index order)."""
    return np.asarray(np.bincount(index, weights=weights, minlength=size), dtype=np.float64)


def exact_bincount(index: IntArray, counts: np.ndarray, size: int, total: int) -> IntArray:
    """Integer sums per index of counts adding up to `total`: float64 ``bincount``, exact below 2**53."""
    if total >= 2**53:  # float64 would round: add integers (slower)
        out = np.zeros(size, np.int64)
        np.add.at(out, index, counts.astype(np.int64))
        return out
    return np.bincount(index, weights=counts, minlength=size).astype(np.int64)
