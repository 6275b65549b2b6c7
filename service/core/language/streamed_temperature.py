"""B×T×K token logits as the temperature fit's problem, streamed a block of rows at a time.

:class:`_Streamed` is a :class:`~service.core.maps.temperature_newton.Problem` over the scored
positions of a B×T×K tensor: each pass reloads a cache-sized block, shifts it by its row maxima and
reduces it as the N×K fit reduces its rows (:func:`~service.core.maps.temperature_newton.row_moments`),
so no second B×T×K array is allocated; :func:`_streamed` checks the inputs and builds it
(:mod:`service.core.language.sequence_temperature` fits and scores with it).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._typing import BoolArray, FloatArray, IntArray
from ..distribution import EpsPolicy, resolve_eps
from ..errors import InputError
from ..maps.fit_metrics import FitMetrics, top_label_ece
from ..maps.temperature_newton import _EXP_FLOOR, _TRANSPOSE_BELOW, row_moments
from ..sums import mean64
from ..validation import default_tolerance
from .blocks import ProbKernel, Scratch, _widen, blocks
from .sequences import check_values, labelled_positions


@dataclass(frozen=True)
class _Reading:
    """How the B×T×K values are read: bfloat16 bits or not, logits or probabilities (eps, tolerance)."""

    bfloat16: bool
    field: str
    probabilities: bool
    eps: EpsPolicy
    tolerance: float | None


def _streamed(
    labels: ArrayLike,
    logits: ArrayLike,
    mask: ArrayLike | None,
    ignore_index: int | None,
    reading: _Reading,
) -> tuple["_Streamed", BoolArray]:
    """The checked inputs as a streamed problem (one first pass), and the (B, T) positions scored."""
    z = check_values(logits, reading.field, bfloat16=reading.bfloat16)
    b, t, k = z.shape
    y, scored = labelled_positions(labels, mask, ignore_index, (b, t), k)
    if not scored.any():
        raise InputError("labels", "must leave at least one position scored (mask and ignore_index)")
    work = np.dtype(np.float64 if z.dtype == np.float64 else np.float32)
    kernel = None
    if reading.probabilities:  # the N×K route's eps (of the checked dtype) and tolerance (of the sent one)
        sent = np.dtype(np.float32) if reading.bfloat16 else z.dtype
        tolerance = reading.tolerance or default_tolerance(sent)
        kernel = ProbKernel(reading.field, t, reading.bfloat16, resolve_eps(reading.eps, work), tolerance)
    problem = _Streamed(z, np.where(scored, y, 0).reshape(-1), scored.reshape(-1), work, reading, kernel)
    return problem, scored


class _Streamed:
    """The scored rows of B×T×K logits as a :class:`~service.core.maps.temperature_newton.Problem`.

    One pass over the tensor on creation keeps, per position, the row maximum, its arg-max and
    the label's logit (B·T numbers each); each later pass reloads a block, shifts it by its
    maxima and reduces it.
    """

    def __init__(
        self,
        z: np.ndarray,
        labels: IntArray,
        keep: BoolArray,
        dtype: np.dtype[Any],
        reading: _Reading,
        kernel: ProbKernel | None = None,
        rows: tuple[FloatArray, FloatArray, IntArray] | None = None,
    ) -> None:
        self.z, self.labels, self.keep, self.reading, self.kernel = z, labels, keep, reading, kernel
        self.bfloat16, self.field = reading.bfloat16, reading.field
        k = z.shape[2]
        self.scratch = Scratch(k, dtype, second=True)
        self.transpose = k < _TRANSPOSE_BELOW  # as the N×K fit: reduce along the long axis
        if self.transpose:
            self.columns = np.empty((2, k, self.scratch.rows), dtype)
        # bit patterns widen into float32 first; probabilities take their log in float32 first
        if dtype == np.float64 and (self.bfloat16 or (kernel is not None and z.dtype != np.float64)):
            self.narrow = np.empty((self.scratch.rows, k), np.float32)
        self.eps = 0.0 if kernel is None else kernel.eps
        self.clipped = np.zeros(labels.size if kernel is not None and rows is None else 0, np.int64)
        self.row_mean, self.varied = np.zeros(0, dtype), np.zeros(0, bool)  # set by the first pass
        self.span = np.inf  # −min z' over the tensor (`row_moments`), set by the first pass
        self.scale = 1.0  # 2: the logits are read halved, a row spanning past the dtype's range
        self.top, self.own, self.predicted = rows if rows is not None else self._first_pass()
        self.n_clipped = int(self.clipped[self.keep].sum()) if self.clipped.size else 0
        self.target_dot = self.own - self.top  # t·z' = z_y − max z, rounded as the N×K fit's

    @property
    def dtype(self) -> np.dtype[Any]:
        """The working precision."""
        return self.scratch.floats.dtype

    def widened(self) -> "_Streamed":
        """The same problem in float64 (from the values as sent, not from float32 shifts)."""
        rows = (self.top.astype(np.float64), self.own.astype(np.float64), self.predicted)
        wide = _Streamed(
            self.z, self.labels, self.keep, np.dtype(np.float64), self.reading, self.kernel, rows
        )
        wide.span = self.span  # (as rounded in float32: it only decides where exp is clamped)
        wide.scale = self.scale
        return wide

    def _load(self, source: np.ndarray, run: slice | None = None) -> FloatArray:
        """The rows `source` in the working precision, in the scratch (probabilities: their logs).

        `run` (the first pass) checks probabilities and counts those below eps.
        """
        if hasattr(self, "narrow"):
            narrow = self.narrow[: source.shape[0]]
            _widen(source, narrow, bfloat16=self.bfloat16)
            self._log(narrow, run)
            block = self.scratch.floats[: source.shape[0]]
            np.copyto(block, narrow)
        else:
            block = self.scratch.load(source, bfloat16=self.bfloat16)
            self._log(block, run)
        if self.scale != 1:
            block *= 0.5
        return block

    def _log(self, block: FloatArray, run: slice | None) -> None:
        """Probabilities: ``log(max(p, eps))`` in place, as ``Distribution.from_probs`` (no-op for logits)."""
        if self.kernel is None:
            return
        if run is not None:
            self.kernel.check(block, run.start)
            if self.eps > 0:
                self.clipped[run] = np.count_nonzero(block < self.eps, axis=1)
        if self.eps > 0:
            np.maximum(block, self.eps, out=block)
        with np.errstate(divide="ignore"):  # eps = 0: log 0 = -inf, refused by the first pass
            np.log(block, out=block)

    def _shifted(self) -> Iterator[tuple[slice, FloatArray]]:
        """(flat slice, rows×K shifted block ``z − max z``) for each block holding a scored row."""
        for run, source in blocks(self.z, self.scratch.rows):
            if self.keep[run].any():
                block = self._load(source)
                block -= self.top[run, None]
                yield run, block

    def _first_pass(self) -> tuple[FloatArray, FloatArray, IntArray]:
        """Check every value; keep each row's max, arg-max, label logit, mean of z' and whether it varies."""
        n = self.labels.size
        top, own = np.empty(n, self.dtype), np.empty(n, self.dtype)
        predicted = np.zeros(n, np.int64)
        self.row_mean, self.varied = np.zeros(n, self.dtype), np.zeros(n, bool)
        self.span = 0.0
        t = self.z.shape[1]
        for run, source in blocks(self.z, self.scratch.rows):
            block = self._load(source, run)
            if not (block.max() < np.inf and block.min() > -np.inf):  # NaN fails both
                row, col = (int(i) for i in np.argwhere(~np.isfinite(block))[0])
                b, position = divmod(run.start + row, t)
                if self.kernel is not None:  # a probability 0 with eps = 0, as the N×K route refuses it
                    raise InputError(
                        "eps",
                        "must be positive (or auto) to fit or apply a map to probabilities containing 0: "
                        f"log 0 = -inf is not a logit; got 0 at `{self.field}[{b}][{position}][{col}]`",
                    )
                raise InputError(
                    self.field, f"must be finite; got {block[row, col]}", index=(b, position, col)
                )
            first = self.scratch.first[: block.shape[0]]
            predicted[run] = np.argmax(block, axis=1)
            flat = block.reshape(-1)
            top[run] = flat.take(first + predicted[run])
            own[run] = flat.take(first + self.labels[run])
            with np.errstate(over="ignore"):  # past the dtype's range: −inf, read halved below
                block -= top[run, None]  # z' as the N×K fit shifts it
            self.row_mean[run] = block.mean(axis=1)
            low = block.min(axis=1)
            self.varied[run] = low < 0
            self.span = max(self.span, -float(low.min()))
        if self.span == np.inf and self.kernel is None:  # (logs of probabilities lie within −745)
            self.scale = 2.0
            return self._first_pass()
        return top, own, predicted

    def _mean(self, values: FloatArray) -> float:
        """Mean over the scored rows in order, accumulated in float64 (as the N×K fit's)."""
        return mean64(values[self.keep])

    def moments(self, beta: float) -> tuple[float, float, float]:
        """``L(β), L'(β), L''(β)`` over the scored rows: one pass over the tensor."""
        n = self.labels.size
        loss, first, second = np.zeros(n, self.dtype), np.zeros(n, self.dtype), np.zeros(n, self.dtype)
        for run, block in self._shifted():
            r = block.shape[0]
            if self.transpose:
                shifted, out, axis = self.columns[0][:, :r], self.columns[1][:, :r], 0
                np.copyto(shifted, block.T)
            else:
                shifted, out, axis = block, self.scratch.second[:r], 1
            loss[run], first[run], second[run] = row_moments(
                shifted, axis, self.target_dot[run], beta, out, self.span
            )
        return self._mean(loss), self._mean(first), max(self._mean(second), 0.0)

    def is_constant(self) -> bool:
        """Every scored row is constant (read from the first pass)."""
        return not self.varied[self.keep].any()

    def slope_at_zero(self) -> float:
        """``L'(0) = mean(mean_c z' − t·z')`` (row means from the first pass)."""
        return self._mean(self.row_mean - self.target_dot)

    def separable(self) -> bool:
        """Every scored row's label is a top token."""
        return self._mean(-self.target_dot) <= 0

    def separable_limit(self) -> float:
        """NLL as T → 0: mean of log(#ties at the row max)."""
        ties = np.ones(self.labels.size)
        for run, block in self._shifted():
            ties[run] = np.count_nonzero(block == 0, axis=1)
        return self._mean(np.log(ties))

    def metrics(self, beta: float) -> FitMetrics:
        """NLL, ECE, Brier and accuracy of ``softmax(β z)`` over the scored rows: one pass.

        β is of the logits as sent (the problem's own, `moments`', is of the logits as read: halved
        when :attr:`scale` is 2).

        Per row, with ``e_c = exp(β z'_c)`` (ties at the maximum when β = ∞) and ``S = Σ e``:
        ``p_y = e_y / S``, ``max p = 1 / S`` and ``Σ (p − t)² = Σ e² / S² − 2 p_y + 1``.
        """
        n, k = self.labels.size, self.z.shape[2]
        nll, confidence, brier = np.zeros(n), np.zeros(n), np.zeros(n)
        scaled = beta * self.scale  # (of the logits as read: halved or not)
        for run, block in self._shifted():
            r = block.shape[0]
            e = self.scratch.second[:r]
            if np.isinf(beta):
                np.equal(block, 0, out=e)
            else:
                with np.errstate(over="ignore"):  # β z' past the dtype's range: −inf, floored
                    np.multiply(self.dtype.type(scaled), block, out=e)
                np.maximum(e, _EXP_FLOOR[self.dtype.itemsize], out=e)
                np.exp(e, out=e)
            total = np.add.reduce(e, axis=1, dtype=np.float64)
            own = e.reshape(-1).take(self.scratch.first[:r] + self.labels[run]) / total
            e *= e
            squares = np.add.reduce(e, axis=1, dtype=np.float64)
            if np.isinf(beta):
                with np.errstate(divide="ignore"):  # the label off the arg-max: -log 0 = inf
                    nll[run] = -np.log(own)
            else:  # log S − β z'_y, as log_softmax: no floor, no rounding of p_y (+inf past the range)
                with np.errstate(over="ignore"):
                    nll[run] = np.log(total) - scaled * self.target_dot[run]
            confidence[run] = 1 / total
            brier[run] = squares / total**2 - 2 * own + 1
        predicted = self.predicted if beta > 0 else np.zeros_like(self.predicted)  # T = ∞: argmax is 0
        correct = (predicted == self.labels).astype(np.float64)[self.keep]
        return FitMetrics(
            nll=self._mean(nll),
            ece=top_label_ece(confidence[self.keep], correct),
            brier=self._mean(brier) / (2 if k == 2 else 1),
            accuracy=float(correct.mean()),
        )

    def sent_metrics(self) -> FitMetrics:
        """The metrics of ``p' = exp(log(max(p, eps)))`` as sent, unnormalised: the N×K route's ``before``.

        ``fit_metrics(log_probs)`` per row: ``-log p'_y``, confidence ``p'`` at the arg-max and
        ``Σ (p' − t)² = Σ p'² − 2 p'_y + 1`` (squares in float64): one pass.
        """
        n, k = self.labels.size, self.z.shape[2]
        squares = np.zeros(n)
        for run, source in blocks(self.z, self.scratch.rows):
            if self.keep[run].any():
                block = self._load(source)
                np.exp(block, out=block)
                squares[run] = np.add.reduce(np.square(block, dtype=np.float64), axis=1)
        own = np.exp(self.own).astype(np.float64)
        confidence = np.exp(self.top).astype(np.float64)[self.keep]
        correct = (self.predicted == self.labels).astype(np.float64)[self.keep]
        return FitMetrics(
            nll=0.0 - self._mean(self.own.astype(np.float64)),
            ece=top_label_ece(confidence, correct),
            brier=self._mean(squares - 2 * own + 1) / (2 if k == 2 else 1),
            accuracy=float(correct.mean()),
        )
