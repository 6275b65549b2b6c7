"""The temperature fit's solver: a safeguarded Newton iteration on the inverse temperature.

:func:`fit_problem` minimises the convex NLL ``L(β)`` of ``softmax(β z)`` over any data that gives
``L``, ``L'`` and ``L''`` in one pass (:class:`Problem`): N×K rows
(:func:`service.core.maps.temperature.fit_temperature`, with :func:`row_moments`) or B×T×K token
logits streamed a block at a time (:mod:`service.core.language.sequence_temperature`).
"""

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import numpy as np

from .._typing import FloatArray
from ..cancel import checkpoint

#: Why a fit stopped. ``"optimum"``: the Newton step fell below ``rtol · β`` (or the
#: bracket closed at machine precision); the others are documented in :func:`fit_temperature`.
Reason = Literal["optimum", "separable", "uninformative", "constant_logits", "max_iter"]

#: Below this many classes the data is held transposed (K×N) so reductions run along the long axis.
_TRANSPOSE_BELOW = 64
#: Lower clamp of ``β z'`` before ``exp`` by itemsize, so that ``exp`` stays a normal number
#: (subnormals are ~7-40× slower): used only where it changes no moment by more than
#: ``exp(floor) · span²`` (below 1e-60 in float64, 2e-16 in float32; ``span = −min z'``), i.e.
#: while the logits span at most :data:`_CLAMP_SPAN`. Beyond it ``exp`` runs unclamped: a term
#: ``exp(β z') z'²`` with ``β z'`` below the floor need not be negligible there (z' = −1e200).
_EXP_FLOOR = {4: -50.0, 8: -600.0}
_CLAMP_SPAN = {4: 1e3, 8: 1e100}
#: Most squarings of an open side's factor (`_split`): β × 8 … 8**256, β ÷ 2 … 2**256.
_MAX_EXPANSION = 8
#: Relative Newton-step tolerance reached in float32 before the float64 polish.
_FLOAT32_RTOL = 1e-5
#: Most float32 passes before the float64 polish takes over (float32 noise can stall a hard case).
_FLOAT32_MAX_ITER = 30


@dataclass(frozen=True)
class TemperatureFit:
    """The result of :func:`fit_temperature`.

    Attributes
    ----------
    temperature : float
        The fitted T (``inf`` when the optimum is at T → ∞, ``0`` when at T → 0).
    beta : float
        ``1 / T``.
    nll : float
        Mean NLL in nats at the returned T (its limit for T = 0 or ∞).
    nll_initial : float
        Mean NLL at T = 1 (the logits as given).
    gradient : float
        ``dNLL/dT`` at the returned T (0 at the boundaries).
    iterations : int
        Passes over the data taken by the Newton iteration.
    converged : bool
        True only when an interior optimum was found to tolerance.
    reason : str
        ``"optimum"``, ``"separable"``, ``"uninformative"``, ``"constant_logits"`` or ``"max_iter"``.
    """

    temperature: float
    beta: float
    nll: float
    nll_initial: float
    gradient: float
    iterations: int
    converged: bool
    reason: Reason


def unhalved(fit: TemperatureFit, nll_initial: float) -> TemperatureFit:
    """The fit of logits `z` from `fit`, the fit of ``z / 2`` (and the NLL of `z` at T = 1).

    ``softmax(z / T) = softmax((z / 2) / (T / 2))``: the fit of the halves gives T / 2, 2β and
    2 ``dNLL/dT`` at the same NLL. Halving is exact (but for subnormals) and brings rows spanning
    past their dtype's range (``z − max z = −inf``) within it.
    """
    t, beta, gradient = 2 * fit.temperature, fit.beta / 2, fit.gradient / 2
    return replace(fit, temperature=t, beta=beta, gradient=gradient, nll_initial=nll_initial)


def row_moments(
    shifted: FloatArray,
    axis: int,
    target_dot: FloatArray,
    beta: float,
    out: FloatArray | None = None,
    span: float = np.inf,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per row: ``log Σ exp(β z') − β t·z'``, ``E_p[z'] − t·z'`` and ``Var_p[z']`` (classes on `axis`).

    `out` (the shape of `shifted`) is the scratch of ``exp(β z')``; one is allocated without it.
    `span` is ``−min z'`` over the data (or more): ``exp`` is clamped only where that changes nothing
    (:data:`_EXP_FLOOR`).
    """
    dtype = shifted.dtype.type
    # β z' past the dtype's range is −inf (exp: 0) and β t·z' +inf (a loss of +inf), their limits;
    # exp(β z') z'² may be +inf and the variance inf − inf: the Newton step is then unusable and the
    # bracket decides (`_newton`)
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.multiply(dtype(beta), shifted, out=out)
        floor = _EXP_FLOOR[shifted.dtype.itemsize]
        if beta * span > -floor and span <= _CLAMP_SPAN[shifted.dtype.itemsize]:
            np.maximum(e, floor, out=e)
        np.exp(e, out=e)
        total = e.sum(axis=axis)
        e *= shifted
        first = e.sum(axis=axis)
        e *= shifted
        second = e.sum(axis=axis)
        first /= total
        second /= total
        second -= first * first
        loss = np.log(total)
        loss -= dtype(beta) * target_dot
        first -= target_dot
    return loss, first, second


class Problem(Protocol):
    """What the Newton fit reads of its data: one pass per call of `moments`.

    :class:`_Problem` holds N×K rows in memory; :mod:`service.core.language.sequence_temperature`
    streams B×T×K token logits through a cache-sized scratch a block of rows at a time.
    """

    @property
    def dtype(self) -> np.dtype[Any]:
        """The working precision of `moments`."""
        ...

    def moments(self, beta: float) -> tuple[float, float, float]:
        """``L(β), L'(β), L''(β)``."""
        ...

    def is_constant(self) -> bool:
        """Every row is constant."""
        ...

    def slope_at_zero(self) -> float:
        """``L'(0)``."""
        ...

    def separable(self) -> bool:
        """``L'(∞) ≤ 0``."""
        ...

    def separable_limit(self) -> float:
        """The NLL as T → 0."""
        ...


def fit_problem(
    problem: Problem, widened: Callable[[], Problem], n_classes: int, *, rtol: float, max_iter: int
) -> TemperatureFit:
    """The temperature fit of `problem` (see :func:`fit_temperature`); `widened` gives its float64 form."""
    initial = problem.moments(1.0)
    nll_initial = initial[0]

    if problem.is_constant():
        return TemperatureFit(1.0, 1.0, nll_initial, nll_initial, 0.0, 0, False, "constant_logits")
    # L'(0) = mean(mean_c z' - t·z'); L'(∞) = mean(max_c z' - t·z') = mean(-t·z').
    if problem.slope_at_zero() >= 0:
        limit = float(np.log(n_classes))  # uniform predictions, whatever the targets
        return TemperatureFit(np.inf, 0.0, limit, nll_initial, 0.0, 0, False, "uninformative")
    if problem.separable():
        return TemperatureFit(0.0, np.inf, problem.separable_limit(), nll_initial, 0.0, 0, False, "separable")

    # (problem, tolerance, most passes, L/L'/L'' already known at the starting β)
    stages: list[tuple[Callable[[], Problem], float, int, tuple[float, float, float] | None]] = [
        (lambda: problem, rtol, max_iter, initial)
    ]
    if problem.dtype != np.float64:
        coarse = min(max_iter - 1, _FLOAT32_MAX_ITER)  # leave the polish at least one pass
        stages = [
            (lambda: problem, max(rtol, _FLOAT32_RTOL), coarse, initial),
            (widened, rtol, max_iter - coarse, None),
        ]
    beta, iterations = 1.0, 0
    loss, grad, converged = nll_initial, np.nan, False
    for stage, tolerance, budget, known in stages:
        if budget < 1:
            continue
        # Each stage brackets afresh: float32 signs of L' near the root are noise.
        beta, loss, grad, used, converged = _newton(stage(), beta, tolerance, budget, known)
        iterations += used
    reason: Reason = "optimum" if converged else "max_iter"
    return TemperatureFit(1 / beta, beta, loss, nll_initial, -grad * beta**2, iterations, converged, reason)


def _newton(
    problem: Problem,
    beta: float,
    rtol: float,
    max_iter: int,
    known: tuple[float, float, float] | None = None,
) -> tuple[float, float, float, int, bool]:
    """Safeguarded Newton on the increasing L' from `beta`, keeping a bracket ``[lo, hi]`` of its root.

    `known` holds ``L, L', L''`` at `beta` if a pass already computed them. Out of passes,
    it returns the evaluated point of lowest NLL, with the values computed there.
    """
    lo, hi = 0.0, np.inf
    best = (beta, np.inf, np.nan)
    expansions = 0  # consecutive steps that grew (or shrank) β without a Newton step
    moved = older = np.inf  # |Δβ| of the last step and of the one before it
    for iteration in range(1, max_iter + 1):
        checkpoint()
        loss, grad, curvature = known if known is not None and iteration == 1 else problem.moments(beta)
        if loss <= best[1]:
            best = (beta, loss, grad)
        # an infinite or NaN curvature (logits spanning past the dtype's range) gives no step
        step = grad / curvature if 0 < curvature < np.inf else np.inf
        if abs(step) <= rtol * beta or hi - lo <= 4 * np.finfo(np.float64).eps * beta:
            return beta, loss, grad, iteration, True
        if grad < 0:
            lo = beta
        else:
            hi = beta
        candidate = beta - step
        # Newton's step, if it stays in the bracket, grows β at most 8× and moves it by at most half
        # the step before last (as Numerical Recipes' rtsafe: L' like −exp(−βM) creeps, 1/M a pass)
        if lo < candidate < min(hi, 8 * beta) and abs(step) <= 0.5 * older:
            expansions = 0
        else:
            candidate, expansions = _split(lo, hi, beta, expansions)
        older, moved = moved, abs(candidate - beta)
        beta = candidate
    return best[0], best[1], best[2], max_iter, False


def _split(lo: float, hi: float, beta: float, expansions: int) -> tuple[float, int]:
    """The next β when Newton's step is refused (:func:`_newton`), and the count of open-side steps.

    An open side grows β by 8 (or halves it, below) three times, then by a factor squared at each
    consecutive such step: an optimum at β = 1e-198 (logits spanning 1e200) is reached in ~40
    passes, not 650 halvings. A closed bracket is split at its middle, or at its geometric mean
    when its ends lie over 2**20 apart.
    """
    n = min(max(expansions - 2, 0), _MAX_EXPANSION)  # (three plain steps first: the usual case)
    if hi == np.inf:
        return min(beta * 8.0 ** (2**n), np.finfo(np.float64).max), expansions + 1
    if lo == 0:
        return max(beta / 2.0 ** (2**n), np.finfo(np.float64).tiny), expansions + 1
    if hi > 2.0**20 * lo:
        return float(np.sqrt(lo) * np.sqrt(hi)), 0
    return 0.5 * (lo + hi), 0
