"""What every recalibration map shares: its input ("scores"), the truth as targets, and the optimiser.

A map acts on *scores*: the logits as sent (N×K, or a length-N vector of
positive-class logits) or, for probabilities, ``log(max(p, eps))`` (N×K).
Every map returns N×K log-probabilities. Maps with parameters beyond a
temperature are fitted by L-BFGS-B (scipy) on their convex NLL with analytic
gradients; isotonic regression uses scipy's pool-adjacent-violators.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._optional import scipy_optimize
from .._typing import FloatArray, IntArray
from ..cancel import checkpoint
from ..distribution import binary_log_probs, log_softmax
from ..errors import InputError


@dataclass(frozen=True)
class FitInfo:
    """How an iterative fit ended.

    Attributes
    ----------
    converged : bool
        The optimiser met its tolerance.
    iterations : int
        Iterations taken.
    message : str
        The optimiser's own account ("optimum" for closed-form fits).
    """

    converged: bool
    iterations: int
    message: str


LossGrad = Callable[[FloatArray], tuple[float, FloatArray]]

#: L-BFGS-B tolerances: projected gradient of the *mean* NLL, and relative decrease.
GTOL = 1e-9
FTOL = 1e-15
#: L-BFGS-B's status when its line search found no lower loss (its "ABNORMAL" message).
_LINE_SEARCH_STOPPED = 2
#: √ε of float64: the gradient below which a step changes a loss of order 1 by less than its spacing.
_FLOAT64_STALL = math.sqrt(np.finfo(np.float64).eps)
#: Default iteration cap of the L-BFGS-B fits: a bound on the time of a request, not a tolerance.
MAX_ITER = 200


def categorical_scores(scores: FloatArray) -> FloatArray:
    """N×K scores; a binary logit vector z becomes columns ``[0, z]`` (``softmax = [1 - σ(z), σ(z)]``)."""
    if scores.ndim == 1:
        return np.stack([np.zeros_like(scores), scores], axis=1)
    return scores


def log_probs_of(scores: FloatArray) -> FloatArray:
    """N×K log-probabilities of scores: ``log_softmax`` (binary: the softplus form)."""
    return binary_log_probs(scores) if scores.ndim == 1 else log_softmax(scores)


def half_logit(scores: FloatArray, *, field: str) -> FloatArray:
    """Half the positive-class logit, ``(log p1 − log p0) / 2``, or raise for K > 2.

    Halves never overflow: ``1e308 − (−1e308)`` does, and a map's ``0 · inf`` then
    turned a zero coefficient into NaN. Halving is exact (barring subnormals), so
    ``2 · (a · h)`` equals ``a · s`` bit for bit wherever ``a · s`` is finite.
    """
    if scores.ndim == 1:
        return scores / 2
    if scores.shape[1] != 2:
        raise InputError(
            field, f"must be binary (a length-N vector or N×2) for this method; got K = {scores.shape[1]}"
        )
    return scores[:, 1] / 2 - scores[:, 0] / 2


def as_targets(labels: IntArray | None, targets: FloatArray | None, n_classes: int) -> FloatArray:
    """N×K target rows: one-hot labels, or the soft targets as given."""
    if targets is not None:
        return targets
    assert labels is not None
    return np.eye(n_classes)[labels]


def fit_weights(sample_weight: ArrayLike | None, n: int) -> FloatArray:
    """Weights of a fit's mean loss ``Σ s·loss / Σ s``, normalised to sum to 1 (``1/N`` each without).

    scikit-learn's ``sample_weight`` semantics: integer weights equal repeated rows and
    zero weights equal dropped rows. An all-zero (or wrongly shaped, negative,
    non-finite) `sample_weight` raises an :class:`InputError` naming it.

    Examples
    --------
    >>> fit_weights([1, 3], 2).tolist()
    [0.25, 0.75]
    >>> fit_weights(None, 4).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    if sample_weight is None:
        return np.full(n, 1.0 / n)
    s = np.asarray(sample_weight, dtype=np.float64)
    if s.shape != (n,):
        raise InputError("sample_weight", f"must hold one weight per sample ({n}); got shape {s.shape}")
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise InputError("sample_weight", "must be finite and non-negative")
    top = float(s.max(initial=0.0))
    if not top > 0:
        raise InputError("sample_weight", "must have a positive sum (not all zero); got 0")
    scaled = s / top  # weights near 1e308 would overflow the sum
    return scaled / scaled.sum()


def minimize_mean_loss(
    loss_grad: LossGrad,
    x0: ArrayLike,
    *,
    bounds: list[tuple[float | None, float | None]] | None = None,
    max_iter: int = MAX_ITER,
    scale: FloatArray | None = None,
) -> tuple[FloatArray, FitInfo]:
    """Minimise a smooth convex mean loss by L-BFGS-B (``gtol`` 1e-9, ``ftol`` 1e-15, ≤ `max_iter` steps).

    With `scale` s (no `bounds`), L-BFGS-B runs on ``y = s·x``: :func:`penalty_scale` of a
    quadratic penalty's curvature, so a penalty of 1e8 (or 1e308) does not stall the line
    search at a step too small to move the other parameters, which it then called converged.
    """
    optimize = scipy_optimize("L-BFGS-B fitting (vector, matrix, platt, beta)")
    s = np.ones(np.size(x0)) if scale is None else scale

    def checked(y: FloatArray) -> tuple[float, FloatArray]:
        checkpoint()  # once per evaluation: an optimiser step
        # A penalty near 1e308 or a line search's overshoot overflows: an infinite loss, which
        # L-BFGS-B backtracks from (or stops on, unconverged, where even x0's is not finite).
        with np.errstate(over="ignore", invalid="ignore"):
            loss, grad = loss_grad(y / s)
            grad = grad / s
        if not (np.isfinite(loss) and np.all(np.isfinite(grad))):
            return np.inf, np.zeros_like(y)
        return loss, grad

    result = optimize.minimize(
        checked,
        np.asarray(x0, dtype=np.float64) * s,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "gtol": GTOL, "ftol": FTOL, "maxcor": 20},
    )
    converged, message = bool(result.success), str(result.message)
    if not converged and result.status == _LINE_SEARCH_STOPPED:
        stalled = stalled_at_optimum(float(result.fun), np.asarray(result.x), np.asarray(result.jac), bounds)
        if stalled is not None:
            converged, message = True, stalled
    return np.asarray(result.x) / s, FitInfo(converged, int(result.nit), message)


def stalled_at_optimum(
    loss: float, y: FloatArray, grad: FloatArray, bounds: list[tuple[float | None, float | None]] | None
) -> str | None:
    """Why a fit whose line search found no lower loss is at its optimum in float64; None if it is not.

    Near the optimum a step along a gradient g changes the loss by ~g², below the float64
    spacing of the loss itself once g ≤ √ε·max(1, |loss|) (~1.5e-8 for a mean NLL under 1):
    L-BFGS-B then stops, "ABNORMAL", with g above :data:`GTOL` on some machines and below it
    on others (the sums' rounding differs with the CPU's vector width). Such a stop, with the
    projected gradient (components pushing against a bound left out) that small, is the
    optimum float64 can tell; any other is not converged.
    """
    if not math.isfinite(loss):
        return None
    projected = grad.copy()
    for i, (low, high) in enumerate(bounds or ()):
        if (low is not None and y[i] <= low and grad[i] > 0) or (
            high is not None and y[i] >= high and grad[i] < 0
        ):
            projected[i] = 0.0
    largest = float(np.max(np.abs(projected), initial=0.0))
    if not largest <= _FLOAT64_STALL * max(1.0, abs(loss)):
        return None
    return f"CONVERGENCE: NO LOWER LOSS IN FLOAT64 (PROJECTED GRADIENT {largest:.1e}, LINE SEARCH STOPPED)"


def penalty_scale(coefficient: float, count: int) -> float:
    """√c for a penalty ``coefficient · mean over count (x − x0)²`` whose curvature c > 1; else 1.

    c = 2·coefficient/count, taken as √2·√(coefficient/count): 2·coefficient passes float64 near 1e308.
    """
    ratio = coefficient / count
    return math.sqrt(2) * math.sqrt(ratio) if ratio > 0.5 else 1.0
