"""Bin edges and bin assignment for calibration metrics, with every convention explicit.

Edges are built one of four ways (``EDGE_RULES``): ``exact`` (``i / B``, each edge the
correctly rounded quotient), ``numpy`` (``np.linspace(0, 1, B + 1)``, so the edge 3/5 is
``0.6000000000000001``), ``torch`` (``torch.linspace`` in float64 or float32, whose
second half is computed as ``1 - step * (B - i)`` with one rounding) or ``quantile``
(equal-mass edges from the data). A value on an edge goes to the bin below it with
``closed="right"`` (bins ``(a, b]``, 0 in the first bin) and to the bin above it with
``closed="left"`` (bins ``[a, b)``, 1 in the last bin).
"""

import math
from fractions import Fraction
from typing import Literal

import numpy as np

from .._typing import FloatArray, IntArray
from ..errors import InputError

Closed = Literal["right", "left"]
BinRule = Literal["sqrt", "cube_root"]
EdgeRule = Literal["exact", "numpy", "torch", "torch_float32"]

#: Largest number of bins accepted (edges and per-bin results are returned to clients).
MAX_BINS = 10_000


def bins_for_rule(rule: int | BinRule, n_samples: int) -> int:
    """Number of bins: an integer as given, or ``ceil(sqrt(N))`` / ``ceil(N ** (1/3))``.

    Examples
    --------
    >>> bins_for_rule("sqrt", 10), bins_for_rule("cube_root", 1000), bins_for_rule(15, 7)
    (4, 10, 15)
    """
    if rule == "sqrt":
        return max(1, math.isqrt(n_samples - 1) + 1) if n_samples > 1 else 1
    if rule == "cube_root":
        root = round(n_samples ** (1 / 3))
        return max(1, root if root**3 >= n_samples else root + 1)
    if not isinstance(rule, int) or not 1 <= rule <= MAX_BINS:
        raise InputError(
            "n_bins", f'must be an integer in [1, {MAX_BINS}] or "sqrt" / "cube_root"; got {rule!r}'
        )
    return rule


def _torch_linspace(n_bins: int, dtype: type[np.floating]) -> FloatArray:
    """``torch.linspace(0, 1, B + 1)``: ``step * i`` below halfway, ``1 - step * (B - i)`` above.

    PyTorch's CPU kernel evaluates both halves with a fused multiply-add (one
    rounding); here the products are exact integers times a power of two.
    """
    step = dtype(1) / dtype(n_bins)
    if dtype == np.float32:
        i = np.arange(n_bins + 1, dtype=np.float64)
        exact = np.where(i < (n_bins + 1) // 2, float(step) * i, 1.0 - float(step) * (n_bins - i))
        return exact.astype(np.float32)
    num, den = float(step).as_integer_ratio()
    half = (n_bins + 1) // 2
    values = [
        float(Fraction(num * i, den)) if i < half else float(1 - Fraction(num * (n_bins - i), den))
        for i in range(n_bins + 1)
    ]
    return np.array(values, dtype=np.float64)


def uniform_edges(n_bins: int, rule: EdgeRule = "exact") -> FloatArray:
    """``B + 1`` equal-width edges on [0, 1] built by `rule` (see the module docstring).

    Examples
    --------
    >>> uniform_edges(5)[3], uniform_edges(5, "numpy")[3], uniform_edges(5, "torch")[3]
    (np.float64(0.6), np.float64(0.6000000000000001), np.float64(0.6))
    """
    if rule == "exact":
        return np.arange(n_bins + 1, dtype=np.float64) / n_bins
    if rule == "numpy":
        return np.linspace(0.0, 1.0, n_bins + 1)
    if rule == "torch":
        return _torch_linspace(n_bins, np.float64)
    return _torch_linspace(n_bins, np.float32).astype(np.float64)


def quantile_edges(conf: FloatArray, n_bins: int, *, method: Literal["quantile", "percentile"]) -> FloatArray:
    """Equal-mass edges per row of `conf` (G×N): ``np.quantile`` at ``i / B``, outer edges 0 and 1.

    ``method="percentile"`` evaluates ``np.percentile(conf, linspace(0, 1, B + 1) * 100)``,
    scikit-learn's ``calibration_curve(strategy="quantile")``; ``"quantile"`` is
    ``np.quantile(conf, linspace(0, 1, B + 1))``, netcal's. Both interpolate linearly.
    Returns G×(B+1).
    """
    q = np.linspace(0.0, 1.0, n_bins + 1)
    if method == "percentile":
        edges = np.percentile(conf, q * 100, axis=1).T
    else:
        edges = np.quantile(conf, q, axis=1).T
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    edges[:, 0] = 0.0
    edges[:, -1] = 1.0
    return edges


def weighted_quantile_edges(
    conf: FloatArray, weights: FloatArray, n_bins: int, *, method: Literal["quantile", "percentile"]
) -> FloatArray:
    """Equal-mass edges of weighted pairs: :func:`quantile_edges` with weights as frequencies.

    Each row's sorted values are read as a sample holding value j ``w_j`` times, of size
    ``W = Σ w``: the edge at q is NumPy's linear rule on that sample, ``x_(h) + γ (x_(h+1) -
    x_(h))`` with ``h = floor((W - 1) q)`` (clamped to ``[0, W - 1]``), ``x_(t)`` the first
    value whose cumulative weight exceeds t, and NumPy's own index and interpolation
    arithmetic. Integer weights give exactly the edges of the repeated rows, weight-0 rows
    those of the dropped rows; fractional weights keep this rule (a weight is a frequency), so
    the scale of the weights matters: a total below 1 puts every inner edge at the smallest
    value of positive weight.
    Returns G×(B+1), outer edges 0 and 1.

    Examples
    --------
    >>> c = np.array([[0.1, 0.4, 0.7]])
    >>> weighted_quantile_edges(c, np.array([1.0, 2.0, 1.0]), 2, method="quantile")
    array([[0. , 0.4, 1. ]])
    """
    n_groups, n = conf.shape
    q = np.linspace(0.0, 1.0, n_bins + 1)
    if method == "percentile":
        q = np.true_divide(q * 100, 100)  # np.percentile's own steps
    order = np.argsort(conf, axis=1, kind="stable")
    values = np.take_along_axis(conf, order, axis=1).astype(np.float64)
    cum = np.cumsum(np.broadcast_to(weights, conf.shape)[np.arange(n_groups)[:, None], order], axis=1)
    total = cum[:, -1:]
    virtual = (total - 1) * q[None, :]  # np.quantile's (n - 1) q, n = W
    low = np.floor(virtual)
    high = low + 1
    top = total - 1
    # Clamped as np.quantile clamps; a total below 1 reads the first value of positive weight.
    low = np.maximum(np.where(virtual >= top, top, np.where(virtual < 0, 0.0, low)), 0.0)
    high = np.maximum(np.where(virtual >= top, top, np.where(virtual < 0, 0.0, high)), 0.0)
    gamma = virtual - np.floor(virtual)
    step = float(total.max()) + 2.0  # rows side by side in one sorted vector
    offset = np.arange(n_groups, dtype=np.float64)[:, None] * step
    flat = (cum + offset).ravel()

    def order_statistic(t: FloatArray) -> FloatArray:
        at = np.searchsorted(flat, (t + offset).ravel(), side="right")
        rows = np.repeat(np.arange(n_groups), t.shape[1])
        at = np.minimum(at, (rows + 1) * n - 1)  # t past the last weight: the row's last value
        return values.ravel()[at].reshape(t.shape)

    a, b = order_statistic(low), order_statistic(high)
    diff = b - a
    edges = np.where(gamma >= 0.5, b - diff * (1 - gamma), a + diff * gamma)  # np.quantile's _lerp
    edges = np.ascontiguousarray(edges, dtype=np.float64)
    edges[:, 0] = 0.0
    edges[:, -1] = 1.0
    return edges


def check_edges(edges: object) -> FloatArray:
    """Return explicit edges as a strictly increasing float64 vector from 0 to 1, or raise.

    Examples
    --------
    >>> check_edges([0, 0.5, 1])
    array([0. , 0.5, 1. ])
    """
    array = np.asarray(edges, dtype=object if not isinstance(edges, list | tuple | np.ndarray) else None)
    if array.ndim != 1 or array.dtype.kind not in "fiu" or not 2 <= array.size <= MAX_BINS + 1:
        raise InputError("edges", f"must be a list of 2 to {MAX_BINS + 1} numbers; got {edges!r}")
    values = array.astype(np.float64)
    if not np.all(np.isfinite(values)) or values[0] != 0.0 or values[-1] != 1.0:
        raise InputError("edges", f"must start at 0 and end at 1; got {values[0]} … {values[-1]}")
    if np.any(np.diff(values) <= 0):
        i = int(np.flatnonzero(np.diff(values) <= 0)[0]) + 1
        reason = f"must increase strictly; got {values[i]} after {values[i - 1]}"
        raise InputError("edges", reason, index=(i,))
    return values


def assign_shared(conf: FloatArray, edges: FloatArray, closed: Closed) -> IntArray:
    """Bin index of every confidence for one shared edge vector (any shape of `conf`).

    ``closed="right"``: ``edges[i] < c <= edges[i + 1]``, values at or below ``edges[1]``
    in bin 0. ``closed="left"``: ``edges[i] <= c < edges[i + 1]``, values at or above
    ``edges[-2]`` in the last bin.

    Examples
    --------
    >>> assign_shared(np.array([0.0, 0.2, 0.3, 1.0]), uniform_edges(5), "right")
    array([0, 0, 1, 4])
    >>> assign_shared(np.array([0.0, 0.2, 0.3, 1.0]), uniform_edges(5), "left")
    array([0, 1, 1, 4])
    """
    n_bins = edges.size - 1
    # Edges within 1/(4B) of i/B: floor(c·B) is the bin or a neighbour, and one comparison
    # with each of its two edges settles it exactly (the same index as searchsorted).
    if n_bins >= 2 and np.max(np.abs(edges - np.arange(n_bins + 1) / n_bins)) * n_bins < 0.25:
        index = np.multiply(conf, n_bins).astype(np.intp)
        np.clip(index, 0, n_bins - 1, out=index)
        padded = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
        above = np.greater_equal if closed == "left" else np.greater
        below = np.less if closed == "left" else np.less_equal
        index += above(conf, padded[1:][index])  # past the guessed bin's upper edge
        index -= below(conf, padded[:-1][index])  # settles a guess one too high the same way
        return index
    side: Literal["left", "right"] = "left" if closed == "right" else "right"
    return np.searchsorted(edges[1:-1], conf, side=side)


def assign_per_row(conf: FloatArray, edges: FloatArray, closed: Closed) -> IntArray:
    """Bin index of each element of `conf` (G×N) against the edges of its own row (G×(B+1)).

    One stable sort per row of values and inner edges together: with
    ``closed="right"`` a value tied with an edge sorts before it (so the edge is not
    counted below it), with ``closed="left"`` after it. No loop over rows.
    """
    n_groups, n = conf.shape
    inner = edges[:, 1:-1]
    n_inner = inner.shape[1]
    parts = (conf, inner) if closed == "right" else (inner, conf)
    merged = np.concatenate(parts, axis=1)
    order = np.argsort(merged, axis=1, kind="stable")
    value_offset = 0 if closed == "right" else n_inner
    is_edge = (order < n_inner) if closed == "left" else (order >= n)
    edges_below = np.cumsum(is_edge, axis=1)
    index = np.empty((n_groups, n), dtype=np.int64)
    is_value = ~is_edge
    rows = np.broadcast_to(np.arange(n_groups)[:, None], order.shape)[is_value]
    index[rows, order[is_value] - value_offset] = edges_below[is_value]
    return index
