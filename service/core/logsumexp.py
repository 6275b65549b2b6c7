"""Fused, cache-blocked softmax statistics: log-sum-exp, top-1 class and entropy in one pass.

Rows are processed in blocks of about ``BLOCK_BYTES``. Narrow blocks (K < ``NARROW_K``) are
transposed to K×rows first, so every reduction runs along the long contiguous axis
(reductions along a short last axis are ~8× slower than the ``exp`` itself). Inputs of at
most ``SMALL_ELEMENTS`` logits skip the blocks (:func:`_small_summary`), and the loss alone
has a cheaper pass of its own, shifted by the label's logit (:func:`label_nll`).
"""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._typing import FloatArray, IntArray
from .cancel import checkpoint
from .overflow import ERROR_STATE, RAISE_OVER
from .scratch import borrowed

#: narrow rows: 128k float32 per block; on a 1 MiB L2, ~20 NumPy calls a block (docs/internals.md)
BLOCK_BYTES = 1 << 19
WIDE_BLOCK_BYTES = 1 << 19  # wide rows: fewer, larger blocks (per-block call overhead dominates otherwise)
NARROW_K = 64
#: Up to this many logits, one pass of whole-array calls (:func:`_small_summary`).
SMALL_ELEMENTS = 1 << 12


#: ``each`` of :func:`softmax_summary`: (rows, K×rows logits, their lse, whether a row spans past the range).
BlockConsumer = Callable[[slice, FloatArray, FloatArray, bool], None]


@dataclass(frozen=True)
class SoftmaxSummary:
    """Per-row statistics of ``softmax(logits)``.

    Attributes
    ----------
    shift : ndarray of shape (n_samples,)
        The row maximum ``m``.
    log_norm : ndarray of shape (n_samples,)
        ``log Σ exp(z - m)``, computed as ``log1p(Σ exp(z - m) - 1)`` with the 1 of the first
        maximum removed exactly: full relative precision even when the top class's loss is 1e-15.
    top : ndarray of int, shape (n_samples,), or None
        The first index of the row maximum (``argmax``), when asked for.
    entropy : ndarray of shape (n_samples,), or None
        ``H = log_norm - Σ p (z - m)`` (no cancellation against ``m``), when asked for.
    picked : ndarray of shape (n_samples,), or None
        ``z[i, labels[i]] - m``, when labels were given.
    spans : bool
        Some row spans past the dtype's range: its ``z - m`` (and ``z - lse``) is −inf somewhere, the
        limit. Without it neither can overflow, and callers subtract without switching NumPy's error
        state (~11,000 instructions a switch; benchmarks/error_state.py).
    """

    shift: FloatArray
    log_norm: FloatArray
    top: IntArray | None = None
    entropy: FloatArray | None = None
    picked: FloatArray | None = None
    spans: bool = False

    @property
    def lse(self) -> FloatArray:
        """``log Σ exp(z)`` per row."""
        return self.shift + self.log_norm


def softmax_summary(
    logits: FloatArray,
    *,
    top: bool = True,
    entropy: bool = True,
    labels: IntArray | None = None,
    block_bytes: int | None = None,
    each: BlockConsumer | None = None,
) -> SoftmaxSummary:
    """Row maximum and log-normaliser of every row of `logits` (N×K), and optionally argmax and entropy.

    One pass over the data, in its dtype, in cache-sized blocks of rows. With `labels`,
    also ``z[i, labels[i]] - m`` (:attr:`SoftmaxSummary.picked`), gathered from the block in
    cache rather than by a fancy index over the whole array. `block_bytes`: logits per block
    (default ``BLOCK_BYTES``, ``WIDE_BLOCK_BYTES`` for wide rows); the values do not depend on it.
    `each` (narrow rows of more than ``SMALL_ELEMENTS`` logits, no `entropy`): called after each
    block with its rows, its logits as the pass copied them (K×rows, scratch the callee may
    overwrite), their ``lse`` (:attr:`SoftmaxSummary.lse`'s values) and whether a row of the block
    spans past the range, while the block is still in cache.

    Examples
    --------
    >>> s = softmax_summary(np.array([[0.0, 0.0], [1e4, 0.0]]), labels=np.array([1, 1]))
    >>> s.lse, s.top, s.entropy
    (array([6.93147181e-01, 1.00000000e+04]), array([0, 0]), array([0.69314718, 0.        ]))
    >>> s.picked
    array([     0., -10000.])
    """
    n, k = logits.shape
    if each is not None and (n * k <= SMALL_ELEMENTS or k >= NARROW_K or entropy):
        raise ValueError("each: narrow rows of more than SMALL_ELEMENTS logits, without entropy")
    if n * k <= SMALL_ELEMENTS:
        return _small_summary(logits, top=top, entropy=entropy, labels=labels)
    names = ["shift", "log_norm"] + ["entropy"] * entropy + ["picked"] * (labels is not None)
    out: dict[str, np.ndarray] = {name: np.empty(n, logits.dtype) for name in names}
    if top:
        out["top"] = np.empty(n, np.intp)
    blocks = _Blocks(logits, block_bytes)
    spans = False
    with _Workspace.borrowed(blocks.rows * k, logits.dtype, k, top) as work:
        for block, source, layout in blocks:
            picks = None if labels is None else layout.index(labels[block])
            whole = block.stop >= n and block.start == 0
            views = out if whole else {name: v[block] for name, v in out.items()}
            scratch = work.views(source)
            spanned = _summarise(scratch, layout, views, picks, keep=each is not None)
            if each is not None:  # the copy of the block kept: its lse as SoftmaxSummary.lse adds it
                each(block, scratch[0], views["shift"] + views["log_norm"], spanned)
            spans |= spanned
    return SoftmaxSummary(**out, spans=spans)


def _small_summary(z: FloatArray, *, top: bool, entropy: bool, labels: IntArray | None) -> SoftmaxSummary:
    """:func:`softmax_summary` of a few rows: whole-array calls, no blocks or scratch.

    On a 32×10 request each NumPy call costs microseconds whatever its size, and this makes
    ~20 of them where the blocked pass makes ~30. Every per-row value is the blocked pass's
    bit for bit (rows without tied maxima): the classes lie along the same axis (a K×N copy
    for narrow rows, so sums run over the classes in the same order), and ``log1p`` is this
    module's. A row's values thus do not depend on how many rows came with it.
    """
    checkpoint()
    n, k = z.shape
    if n == 1 and k < NARROW_K:  # a K×1 column would be summed pairwise, not row by row: pair it
        two = _small_summary(np.repeat(z, 2, axis=0), top=top, entropy=entropy, labels=_paired(labels))
        return SoftmaxSummary(
            two.shift[:1], two.log_norm[:1], _head(two.top), _head(two.entropy), _head(two.picked), two.spans
        )
    cols = np.arange(n)
    if k < NARROW_K:  # as the blocked pass: K×rows, every reduction along axis 0
        zt = np.ascontiguousarray(z.T)
        m = np.maximum.reduce(zt, axis=0)
        d, spans = _shifted(zt, m)
        first = d.argmax(axis=0)  # the first maximum
        at_first: tuple[IntArray, IntArray] = (first, cols)
        at_label: tuple[IntArray, IntArray] | None = None if labels is None else (labels, cols)
        axis = 0
    else:
        m = np.maximum.reduce(z, axis=1)
        d, spans = _shifted(z, m[:, None])
        first = d.argmax(axis=1)
        at_first = (cols, first)
        at_label = None if labels is None else (cols, labels)
        axis = 1
    e = np.exp(d)  # d ≤ 0, exactly 0 at every maximum
    e[at_first] = 0  # the first maximum's exp(0) = 1 leaves the sum; any other maximum counts 1
    rest = np.add.reduce(e, axis=axis)  # Σ exp(z - m) - 1, without rounding the 1 in
    log_norm = log1p(rest)
    picked = None if at_label is None else d[at_label]  # −inf past the range: a loss of +inf
    h = None
    if entropy:
        if spans:
            _floor_overflow(d)
        e *= d  # the first maximum has d = 0: nothing lost by its zeroed e
        rest += 1
        h = np.add.reduce(e, axis=axis)
        h /= rest
        np.subtract(log_norm, h, out=h)
        np.maximum(h, 0, out=h)
    return SoftmaxSummary(m, log_norm, first if top else None, h, picked, spans)


def _shifted(z: FloatArray, m: FloatArray, out: FloatArray | None = None) -> tuple[FloatArray, bool]:
    """``z − m`` (into `out`, which may be `z`), and whether a row spans past the dtype's range.

    Such a row's ``z − m`` is −inf there, the limit. The usual batch pays for one error-state switch
    (:mod:`.overflow`), not a pass looking for −inf.
    """
    token = ERROR_STATE.set(RAISE_OVER)  # (np.errstate(over="raise"), at a quarter of its cost)
    try:
        return np.subtract(z, m, out=out), False
    except FloatingPointError:
        if out is not None:  # NumPy checks the error state once the whole ufunc has run: out is z − m
            return out, True
        with np.errstate(over="ignore"):
            return z - m, True
    finally:
        ERROR_STATE.reset(token)


def minus(z: FloatArray, values: FloatArray, summary: SoftmaxSummary) -> FloatArray:
    """``z − values`` (a row's ``lse`` or maximum, broadcast), −inf past the range where `summary` spans."""
    if not summary.spans:
        return z - values
    with np.errstate(over="ignore"):
        return z - values


def _floor_overflow(d: FloatArray) -> None:
    """``z − m`` past the dtype's range (−inf) → its lowest finite value, in place, before ``e · d``.

    Its ``exp`` is 0 either way; ``0 · −inf`` would be NaN, ``0 · lowest`` is 0, as ``exp(d) · d``
    is for every ``d`` below −746.
    """
    np.maximum(d, np.finfo(d.dtype).min, out=d)


def _head(values: NDArray[Any] | None) -> NDArray[Any] | None:
    """The first row's value, if any."""
    return None if values is None else values[:1]


def _paired(labels: IntArray | None) -> IntArray | None:
    """The labels of a row sent twice (see :func:`_small_summary`)."""
    return None if labels is None else np.repeat(labels, 2)


def label_nll(logits: FloatArray, labels: IntArray) -> FloatArray:
    """``-log softmax(logits)[i, labels[i]]`` per row (N×K, valid labels), in one pass over the logits.

    Shifted by the label's own logit instead of the row maximum: the loss is
    ``log1p(Σ_{c≠y} exp(z_c - z_y))``, so no maximum, tie count or maxima mask is needed (four
    passes over each block instead of eight), and it keeps full relative precision where the
    label is the top class (every term ≤ 1, the loss as small as 1e-15). Rows where some
    ``z_c - z_y`` overflows ``exp`` (the label ~88 below the top in float32, ~709 in float64)
    or is undefined (a label logit of ``-inf``: a loss of ``inf``) are recomputed by
    :func:`softmax_summary`.

    Examples
    --------
    >>> label_nll(np.array([[0.0, 0.0], [1e4, 0.0]]), np.array([1, 1]))
    array([6.93147181e-01, 1.00000000e+04])
    """
    n, k = logits.shape
    if n == 1 and k < NARROW_K:  # as in _small_summary: a lone K×1 column is paired
        return label_nll(np.repeat(logits, 2, axis=0), np.repeat(labels, 2))[:1]
    losses = np.empty(n, logits.dtype)
    blocks = _Blocks(logits)
    # one block-sized buffer, reused by every block (it stays in cache) and by this thread's next call
    lent = borrowed((blocks.rows * k, logits.dtype))
    with lent as (scratch,), np.errstate(over="ignore", invalid="ignore"):
        for block, source, layout in blocks:
            z = scratch[: source.size].reshape(source.shape)
            np.copyto(z, source)
            picks = layout.index(labels[block])
            flat = z.reshape(-1)
            own = flat.take(picks)  # z_y
            z -= own.reshape(layout.across)
            np.exp(z, out=z)
            flat.put(picks, 0)  # the label's own exp(0) = 1 is left out of the sum, not subtracted
            log1p(np.add.reduce(z, axis=layout.axis), out=losses[block])
    if not losses.max() < np.inf:  # overflow (inf, inf - inf = nan in log1p) or a label at -inf
        rows = np.flatnonzero(~np.isfinite(losses))
        summary = softmax_summary(logits[rows], top=False, entropy=False, labels=labels[rows])
        assert summary.picked is not None
        losses[rows] = summary.log_norm - summary.picked
    return losses


class _Layout:
    """Where a block's classes lie: along `axis`; class c of row i at flat ``first[i] + c·stride``."""

    __slots__ = ("across", "axis", "first", "stride")

    def __init__(self, axis: int, first: IntArray, stride: int) -> None:
        self.axis, self.first, self.stride = axis, first, stride
        self.across = (1, -1) if axis == 0 else (-1, 1)  # broadcasts a per-row vector along the classes

    def index(self, classes: IntArray) -> IntArray:
        """Flat indices into the block of ``(row i, classes[i])``."""
        return self.first + classes * self.stride


class _Blocks:
    """Cache-sized blocks of rows of an N×K array; narrow ones (K < ``NARROW_K``) transposed to K×rows."""

    def __init__(self, logits: FloatArray, block_bytes: int | None = None) -> None:
        self.logits = logits
        n, k = logits.shape
        self.narrow = k < NARROW_K
        if block_bytes is None:
            block_bytes = BLOCK_BYTES if self.narrow else WIDE_BLOCK_BYTES
        self.rows = min(n, max(1, block_bytes // (k * logits.itemsize)))
        self._first = np.arange(self.rows) * (1 if self.narrow else k)  # flat index of each row's class 0

    def __iter__(self) -> Iterator[tuple[slice, FloatArray, _Layout]]:
        n, k = self.logits.shape
        for start in range(0, n, self.rows):  # blocks of rows sized for the cache, never single samples
            checkpoint()
            block = slice(start, start + self.rows)
            if self.narrow and n - start == 1 and start > 0:
                # A lone K×1 tail would be summed pairwise, its row rounded unlike the same row in
                # a wider block: take the row before along (its values come out the same again).
                block = slice(start - 1, n)
            rows = self.logits[block]
            width = rows.shape[0]
            if self.narrow:
                yield block, rows.T, _Layout(0, self._first[:width], width)
            else:
                yield block, rows, _Layout(1, self._first[:width], 1)


class _Workspace:
    """Block-sized scratch reused by every block (it stays in cache), lent by the thread (:mod:`.scratch`).

    No block allocates a block-sized temporary, nor does a call: each would be a fresh ``mmap``
    under ``xent serve``'s malloc threshold, page-faulted in and given back.
    """

    def __init__(self, floats: list[np.ndarray], mask: np.ndarray, ranked: np.ndarray) -> None:
        self.floats, self.mask, self.ranked = floats, mask, ranked

    @staticmethod
    @contextmanager
    def borrowed(size: int, dtype: np.dtype, k: int, top: bool) -> Iterator["_Workspace"]:
        """The buffers for blocks of `size` logits, this thread's own, for the duration of the ``with``."""
        ranks = (size if top else 0, np.uint8 if k < 256 else np.int32)
        with borrowed((size, dtype), (size, dtype), (size, bool), ranks) as (z, e, mask, ranked):
            yield _Workspace([z, e], mask, ranked)

    def views(self, source: FloatArray) -> tuple[FloatArray, FloatArray, np.ndarray, np.ndarray]:
        """``(z, e, mask, ranked)`` shaped like `source`; `z` holds a copy of it."""
        size, shape = source.size, source.shape
        z, e = (buffer[:size].reshape(shape) for buffer in self.floats)
        np.copyto(z, source)  # always a scratch copy
        ranked = self.ranked[:size].reshape(shape) if self.ranked.size else self.ranked
        return z, e, self.mask[:size].reshape(shape), ranked


def _summarise(
    views: tuple[FloatArray, FloatArray, np.ndarray, np.ndarray],
    layout: _Layout,
    out: dict[str, np.ndarray],
    picks: IntArray | None,
    *,
    keep: bool = False,
) -> bool:
    """One block, classes along ``layout.axis``, into the `out` views; the `views` are scratch, overwritten.

    Returns whether a row of the block spans past the dtype's range (:attr:`SoftmaxSummary.spans`).

    `picks` are flat indices into `z` of each row's label: ``out["picked"]`` gets ``z - m`` there.
    `keep` (no entropy): `z` is left as it was, ``z - m`` is taken in `e`.
    """
    z, e, is_top, ranked = views
    axis = layout.axis
    k = z.shape[axis]
    shift = out["shift"]
    np.maximum.reduce(z, axis=axis, out=shift)
    # z - m ≤ 0, exactly 0 at every maximum
    _, spans = _shifted(z, shift.reshape(layout.across), out=e if keep else z)
    if keep:
        z = e
    np.equal(z, 0, out=is_top)
    if picks is not None:
        z.reshape(-1).take(picks, out=out["picked"])
    if "entropy" not in out:
        e = z  # z is not needed after the exp: one scratch buffer, half the cache footprint
    if "top" in out:
        top = out["top"]
        np.multiply(is_top, _ranks(k, ranked.dtype, axis), out=ranked)
        np.subtract(k, np.maximum.reduce(ranked, axis=axis), out=top)  # the first maximum
        np.exp(z, out=e)
        e.reshape(-1).put(layout.index(top), 0)  # its exp(0) = 1 leaves the sum; other maxima count 1
        rest = np.add.reduce(e, axis=axis)  # Σ exp(z - m) - 1, without rounding the 1 in
    else:
        ties = np.add.reduce(is_top.view(np.uint8), axis=axis, dtype=np.uint8 if k < 256 else np.int32)
        np.exp(z, out=e)
        e -= is_top  # exp(0) = 1 exactly: the maxima now contribute 0
        rest = np.add.reduce(e, axis=axis)
        rest += ties - 1  # Σ exp(z - m) - 1, without rounding the 1 in
    log_norm = log1p(rest, out=out["log_norm"])
    if "entropy" in out:
        if spans:
            _floor_overflow(z)
        z *= e  # the maxima have (z - m) = 0: nothing lost by their e
        rest += 1
        h = np.add.reduce(z, axis=axis)
        h /= rest
        np.subtract(log_norm, h, out=h)
        np.maximum(h, 0, out=out["entropy"])
    return spans


@functools.cache
def _ranks(k: int, dtype: np.dtype, axis: int) -> np.ndarray:
    """``k, k-1, ..., 1`` along `axis`: times the maxima mask, the largest marks the first maximum."""
    ranks = np.arange(k, 0, -1, dtype=dtype)
    ranks.flags.writeable = False
    return ranks.reshape((k, 1) if axis == 0 else (1, k))


def log1p(x: FloatArray, out: FloatArray | None = None) -> FloatArray:
    """``log(1 + x)`` for ``x ≥ 0`` to a few ulps: ``log(u) + (x - (u - 1)) / u``, ``u = fl(1 + x)``.

    ``x - (u - 1)`` is the exact rounding error of ``1 + x``, so the SIMD ``log`` of ``u``
    plus that correction keeps full relative precision down to ``x = 1e-30``, with no
    branch and no division by ``u - 1``. NumPy's own ``log1p`` is scalar code, several
    times slower than the SIMD ``log``.

    Examples
    --------
    >>> log1p(np.array([1e-20, 1.0]))
    array([1.00000000e-20, 6.93147181e-01])
    """
    u = np.add(x, 1, out=out)
    c = u - 1
    np.subtract(x, c, out=c)
    c /= u
    np.log(u, out=u)
    u += c
    return u
