"""Temperature scaling: the exact minimiser of the NLL of ``softmax(logits / T)``, and its application.

The mean negative log-likelihood as a function of the inverse temperature
``β = 1 / T`` is

    L(β)   = mean_i [ log Σ_c exp(β z_ic) − β t_i·z_i ]
    L'(β)  = mean_i [ E_p[z_i] − t_i·z_i ]           p = softmax(β z_i)
    L''(β) = mean_i Var_p[z_i] ≥ 0

so L is convex in β and its minimiser is the root of the increasing function
L'. :func:`fit_temperature` finds it with a safeguarded Newton iteration
(Newton steps inside a shrinking bracket, bisection or expansion otherwise),
each iteration one vectorised pass over the data giving L, L' and L''.

Rows are shifted once by their maximum, ``z' = z − max_c z``, so every
``exp(β z')`` lies in (0, 1] with the argmax term exactly 1: no overflow, no
per-iteration max, and the variance ``E[z'²] − E[z']²`` loses little to
cancellation when p concentrates on the argmax (large β).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray
from ..distribution import log_softmax
from ..errors import InputError
from ..sums import mean64
from ..validation import check_labels, check_logits, check_targets
from .temperature_newton import (
    _TRANSPOSE_BELOW,
    fit_problem,
    row_moments,
    unhalved,
)
from .temperature_newton import (
    TemperatureFit as TemperatureFit,
)


@dataclass
class _Problem:
    """Max-shifted logits ``z'`` (K×N or N×K), ``t·z'`` per row, normalised sample weights, ``−min z'``."""

    shifted: FloatArray
    axis: int
    target_dot: FloatArray
    weights: FloatArray | None
    span: float

    @property
    def dtype(self) -> np.dtype[Any]:
        """The precision of the shifted logits."""
        return self.shifted.dtype

    def mean(self, values: FloatArray) -> float:
        """Weighted mean over samples, accumulated in float64."""
        if self.weights is None:
            return mean64(values)
        return float(np.dot(self.weights, values.astype(np.float64, copy=False)))

    def moments(self, beta: float) -> tuple[float, float, float]:
        """``L(β), L'(β), L''(β)`` in one pass over the data (see the module docstring)."""
        loss, first, second = row_moments(self.shifted, self.axis, self.target_dot, beta, span=self.span)
        return self.mean(loss), self.mean(first), max(self.mean(second), 0.0)

    def is_constant(self) -> bool:
        """Every row is constant: the NLL is the same for every T."""
        return self.span == 0

    def slope_at_zero(self) -> float:
        """``L'(0) = mean(mean_c z' − t·z')``."""
        try:
            with np.errstate(over="raise"):
                return self.mean(self.shifted.mean(axis=self.axis) - self.target_dot)
        except FloatingPointError:  # Σ_c z' past the dtype's range (logits near ±1e308): z'/K first
            k = self.shifted.shape[self.axis]
            return self.mean((self.shifted / k).sum(axis=self.axis) - self.target_dot)

    def separable(self) -> bool:
        """``L'(∞) = mean(−t·z') ≤ 0``: every row's target mass sits on its arg-max."""
        return self.mean(-self.target_dot) <= 0

    def separable_limit(self) -> float:
        """NLL as T → 0: mean of log(#ties at the row max) (0 without ties), for separable data."""
        ties = np.count_nonzero(self.shifted == 0, axis=self.axis)
        return self.mean(np.log(ties.astype(np.float64)))


def _as_logits_and_targets(
    labels: ArrayLike | None, targets: ArrayLike | None, logits: ArrayLike, validate: bool
) -> tuple[FloatArray, FloatArray | None, np.ndarray | None]:
    """N×K logits (binary z → [0, z]) with either int labels or N×K soft targets."""
    z = check_logits(logits) if validate else np.asarray(logits)
    if (labels is None) == (targets is None):
        raise InputError("labels", "or `targets` must be given, not both nor neither")
    binary = z.ndim == 1
    if binary:
        z = np.stack([np.zeros_like(z), z], axis=1)
    n, k = z.shape
    if labels is not None:
        y = check_labels(labels, k) if validate else np.asarray(labels)
        if y.shape[0] != n:
            raise InputError("labels", f"must have as many samples as `logits` ({n}); got {y.shape[0]}")
        return z, None, y
    assert targets is not None
    t = check_targets(targets, k, binary=binary) if validate else np.asarray(targets)
    if binary and t.ndim == 1:
        t = np.stack([1 - t, t], axis=1)
    if t.shape[0] != n:
        raise InputError("targets", f"must have as many samples as `logits` ({n}); got {t.shape[0]}")
    return z, t.astype(z.dtype, copy=False), None


def _prepare(
    z: FloatArray, targets: FloatArray | None, labels: np.ndarray | None, weights: FloatArray | None
) -> _Problem:
    """Shift rows by their max, take ``t·z'``, and choose the layout (one pass)."""
    transpose = z.shape[1] < _TRANSPOSE_BELOW
    if transpose:
        zt = np.array(z.T, order="C")  # always a copy: shifted in place below
        zt -= zt.max(axis=0)
        shifted, axis = zt, 0
        if labels is not None:
            target_dot = zt[labels, np.arange(zt.shape[1])]
        else:
            assert targets is not None
            target_dot = np.einsum("kn,nk->n", zt, targets)
    else:
        shifted = z - z.max(axis=1, keepdims=True)
        axis = 1
        if labels is not None:
            target_dot = shifted[np.arange(shifted.shape[0]), labels]
        else:
            assert targets is not None
            target_dot = np.einsum("nk,nk->n", shifted, targets)
    return _Problem(shifted, axis, np.ascontiguousarray(target_dot), weights, float(-shifted.min()))


def _check_weights(sample_weight: ArrayLike | None, n: int) -> FloatArray | None:
    if sample_weight is None:
        return None
    w = np.asarray(sample_weight, dtype=np.float64)
    if w.shape != (n,):
        raise InputError("sample_weight", f"must hold one weight per sample ({n}); got shape {w.shape}")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not w.max(initial=0.0) > 0:
        raise InputError("sample_weight", "must be finite, non-negative, with a positive sum")
    w = w / w.max()  # weights near 1e308 would overflow the sum
    return w / w.sum()


def fit_temperature(
    logits: ArrayLike,
    *,
    labels: ArrayLike | None = None,
    targets: ArrayLike | None = None,
    sample_weight: ArrayLike | None = None,
    rtol: float = 1e-10,
    max_iter: int = 100,
    validate: bool = True,
) -> TemperatureFit:
    """Fit the temperature T > 0 minimising the mean NLL of ``softmax(logits / T)``.

    Parameters
    ----------
    logits : array-like, shape (n_samples, n_classes) or (n_samples,)
        Unnormalised log-probabilities, or positive-class logits (binary:
        ``σ(z / T)``). For probabilities pass ``log(p)`` (floored at some eps):
        ``softmax(log(p) / T)`` is the standard temperature-scaled probability,
        and T = 1 gives back ``p``.
    labels : array-like of int, shape (n_samples,), optional
        True classes. Exactly one of `labels` and `targets`.
    targets : array-like, shape like `logits`, optional
        Soft labels: rows summing to 1 (binary: positive-class probabilities).
    sample_weight : array-like of shape (n_samples,), optional
        Non-negative weights; the loss is their weighted mean.
    rtol : float, default=1e-10
        Stop when the Newton step ``|L'(β) / L''(β)|`` is at most ``rtol · β``, i.e. the
        gradient ``|dL/dβ| ≤ rtol · β · d²L/dβ²``: β (and T) is then within about
        `rtol` relative of the optimum. Also stops when the bracket around the root
        closes to ``4 · machine eps · β``.
    max_iter : int, default=100
        Most passes over the data.
    validate : bool, default=True
        Check inputs first.

    Returns
    -------
    TemperatureFit
        See its attributes. Degenerate data gives ``converged=False`` and a reason:

        - ``"constant_logits"``: every row is constant, so the NLL is the same for
          every T; T = 1 is returned.
        - ``"uninformative"``: ``dL/dβ ≥ 0`` already at β = 0, so the NLL falls as T
          grows without bound (the logits rank the truth no better than uniform,
          e.g. an all-wrong batch); T = ∞ (uniform predictions) is returned.
        - ``"separable"``: every row's target mass sits on its arg-max (e.g. an
          all-correct batch, or a single class always predicted), so the NLL falls
          as T → 0; T = 0 (arg-max one-hot) is returned.
        - ``"max_iter"``: the iteration ran out (nearly separable data, a very
          small tolerance); the last iterate is returned.

    Notes
    -----
    float32 input is iterated in float32 to ``rtol = 1e-5`` and then polished in
    float64 (Newton converges quadratically: usually one or two float64 passes);
    float64 input is iterated in float64 throughout. The NLL is in nats.
    Matches ``scipy.optimize.minimize_scalar`` on the same objective and
    scikit-learn's ``CalibratedClassifierCV(method="temperature")`` (≥ 1.8).

    Examples
    --------
    >>> fit = fit_temperature([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], labels=[0, 1, 1])
    >>> round(fit.temperature, 4), fit.converged
    (2.8854, True)
    """
    z, t, y = _as_logits_and_targets(labels, targets, logits, validate)
    return _fit(z, t, y, _check_weights(sample_weight, z.shape[0]), rtol=rtol, max_iter=max_iter)


def _fit(
    z: FloatArray,
    t: FloatArray | None,
    y: np.ndarray | None,
    weights: FloatArray | None,
    *,
    rtol: float,
    max_iter: int,
) -> TemperatureFit:
    """:func:`fit_temperature` of checked inputs.

    Rows spanning past their dtype's range (``z' = −inf``) are fitted halved (:func:`unhalved`). The
    NLL at T = 1 stays the one of the logits as sent: +inf where a label lies more than the dtype's
    range below its row's maximum.
    """
    with np.errstate(over="ignore"):  # the shift past the dtype's range gives −inf: refitted halved
        problem = _prepare(z, t, y, weights)
    if problem.span == np.inf:
        fit = _fit(z * z.dtype.type(0.5), t, y, weights, rtol=rtol, max_iter=max_iter)
        with np.errstate(over="ignore", invalid="ignore"):  # (−inf) · 0 in the moments beside the loss
            nll_initial = problem.moments(1.0)[0]
        return unhalved(fit, nll_initial)

    def widened() -> _Problem:  # z - max(z) rounds in float32: the polish re-shifts in float64
        return _prepare(z.astype(np.float64), None if t is None else t.astype(np.float64), y, weights)

    return fit_problem(problem, widened, z.shape[1], rtol=rtol, max_iter=max_iter)


def apply_temperature(logits: ArrayLike, temperature: float, *, validate: bool = True) -> FloatArray:
    """Log-probabilities ``log_softmax(logits / T)``, N×K (binary z: columns ``[1 - σ(z/T), σ(z/T)]``).

    ``T = ∞`` gives uniform rows; ``T = 0`` the limit: uniform over each row's
    arg-max set, 0 elsewhere (log 0 = -inf).

    Examples
    --------
    >>> np.exp(apply_temperature([[0.0, np.log(3.0)]], 1.0))
    array([[0.25, 0.75]])
    """
    z = check_logits(logits) if validate else np.asarray(logits)
    if not temperature >= 0:
        raise InputError("temperature", f"must be ≥ 0 (or Infinity); got {temperature}")
    if z.ndim == 1:
        z = np.stack([np.zeros_like(z), z], axis=1)
    if temperature == 0:
        top = z == z.max(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            return np.log(top / np.count_nonzero(top, axis=1, keepdims=True)).astype(z.dtype)
    if np.isinf(temperature):
        return np.full(z.shape, -np.log(z.shape[1]), dtype=z.dtype)
    if temperature >= 1:  # |z / T| ≤ |z|: nothing can overflow
        return log_softmax(z * z.dtype.type(1 / temperature))
    # Shifted by the row maximum before dividing: differences are ≤ 0, so a tiny T or a huge logit
    # saturates them to -inf (probability 0) instead of overflowing z / T to inf (inf - inf = NaN).
    # A T below the dtype's normal range (float32: 1e-300 rounds to 0) divides in float64.
    with np.errstate(over="ignore"):  # to -inf, as the limit has it
        shifted = z - z.max(axis=1, keepdims=True)
        if temperature < np.finfo(z.dtype).tiny:
            return log_softmax(shifted.astype(np.float64) / temperature).astype(z.dtype)
        return log_softmax(shifted / z.dtype.type(temperature))


@dataclass(frozen=True)
class TemperatureScaling:
    """The map ``softmax(z / T)`` as an object, like the other recalibration maps."""

    temperature: float

    def log_probs(self, scores: FloatArray) -> FloatArray:
        """Recalibrated N×K log-probabilities (see :func:`apply_temperature`)."""
        return apply_temperature(scores, self.temperature, validate=False)
