"""Temperature scaling of token logits: :func:`~service.core.fit_temperature` over B×T×K sequences.

The fit is the N×K fit of the scored positions (inside `mask`, label not `ignore_index`), read
as the (B·T)×K matrix of their logits: the same safeguarded Newton iteration on β = 1/T
(:func:`~service.core.maps.temperature_newton.fit_problem`), with each pass streamed through one
cache-sized scratch a block of rows at a time (:mod:`~service.core.language.blocks`), so no
second B×T×K array is ever allocated. float16 and bfloat16 blocks are widened to float32 one
at a time; the float64 polish widens each block again instead of a float64 copy of the tensor.
B×T×K probabilities are read as the N×K fit reads them: each block is checked (values in [0, 1],
rows summing to 1 within the tolerance) and turned into ``log(max(p, eps))`` in place, in the
precision the N×K route computes it in (float32 for float16, bfloat16 and float32).

Every pass computes, per row, exactly what the N×K fit computes on the same row (the same
shifted logits, the same per-row reductions in the same layout) into B·T-long vectors, and
the means are taken over the scored rows in order: objective and gradient equal the N×K
fit's on the flattened scored rows.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._typing import BoolArray, IntArray
from ..distribution import EpsPolicy
from ..errors import InputError
from ..maps.fit_metrics import FitMetrics
from ..maps.temperature_newton import TemperatureFit, fit_problem, unhalved
from .streamed_temperature import _Reading, _streamed


@dataclass(frozen=True)
class SequenceTemperatureFit:
    """The result of :func:`fit_sequence_temperature`.

    Attributes
    ----------
    fit : TemperatureFit
        The temperature, its diagnostics and the mean NLL of the scored positions.
    scored : ndarray of bool, shape (B, T)
        Positions fitted: inside `mask` and with a label other than `ignore_index`.
    before, after : FitMetrics
        NLL, top-label ECE (15 bins), Brier score and top-1 accuracy of the scored positions
        at T = 1 and at the fitted T, as :func:`~service.core.fit_metrics` states them
        (probabilities: ``before`` scores ``max(p, eps)`` as sent, unnormalised, as the N×K route).
    eps : float
        The floor of ``log(max(p, eps))`` for probabilities (0 for logits).
    n_clipped : int
        Probabilities of scored positions below `eps` (0 for logits).
    """

    fit: TemperatureFit
    scored: BoolArray
    before: FitMetrics
    after: FitMetrics
    eps: float = 0.0
    n_clipped: int = 0

    @property
    def tokens(self) -> IntArray:
        """Scored positions per sequence, shape (B,)."""
        return np.count_nonzero(self.scored, axis=1)


def fit_sequence_temperature(
    labels: ArrayLike,
    logits: ArrayLike,
    *,
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    rtol: float = 1e-10,
    max_iter: int = 100,
    field: str = "logits",
    probabilities: bool = False,
    eps: EpsPolicy = "auto",
    tolerance: float | None = None,
) -> SequenceTemperatureFit:
    """Fit one temperature T minimising the mean NLL of ``softmax(logits / T)`` over scored tokens.

    Parameters
    ----------
    labels : array-like of int, shape (B, T)
        Token ids in ``[0, K)`` at scored positions; anything at unscored ones.
    logits : array-like, shape (B, T, K)
        Finite logits: float16, float32, float64, or bfloat16 as its raw ``uint16`` bit
        patterns with ``bfloat16=True``.
    mask : array-like of bool or 0/1, shape (B, T), optional
        1 where a position is scored.
    ignore_index : int or None, default=-100
        Label value of positions that are not scored, as PyTorch's ``ignore_index``.
    bfloat16 : bool, default=False
        `logits` are bfloat16 bit patterns (OIP ``BF16``), widened a block at a time.
    rtol, max_iter : float, int
        As :func:`~service.core.fit_temperature`.
    field : str, default="logits"
        Name of `logits` in error messages.
    probabilities : bool, default=False
        `logits` are B×T×K probabilities (rows summing to 1 within `tolerance`), fitted as the
        logits ``log(max(p, eps))``, as :func:`~service.core.fit_temperature` fits the N×K
        ``Distribution.from_probs(p, eps=eps).log_probs``.
    eps : float or "auto", default="auto"
        The floor for probabilities; ``"auto"`` is the machine epsilon of the working dtype
        (float32 for float16 and bfloat16). With ``eps = 0`` a probability 0 is refused.
    tolerance : float, optional
        Allowed ``|Σ p − 1|`` per row; default by the dtype sent, as ``check_probabilities``.

    Returns
    -------
    SequenceTemperatureFit

    Notes
    -----
    The objective is PyTorch's ``F.cross_entropy(logits.transpose(1, 2) / T, labels,
    ignore_index=ignore_index)`` (the mean over scored tokens), and the fit equals
    :func:`~service.core.fit_temperature` on ``logits[scored]`` (N×K) with ``labels[scored]``:
    the per-row terms are computed identically, and float32 is iterated in float32 before a
    float64 polish. Degenerate batches give the same reasons (``"separable"``,
    ``"uninformative"``, ``"constant_logits"``).

    Examples
    --------
    >>> z = np.array([[[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [5.0, 1.0]]])
    >>> found = fit_sequence_temperature([[0, 1, 1, -100]], z)
    >>> round(found.fit.temperature, 4), found.tokens
    (2.8854, array([3]))
    """
    reading = _Reading(bfloat16, field, probabilities, eps, tolerance)
    problem, scored = _streamed(labels, logits, mask, ignore_index, reading)
    fit = fit_problem(problem, problem.widened, problem.z.shape[2], rtol=rtol, max_iter=max_iter)
    if problem.scale != 1:  # rows spanning past the dtype's range, read halved
        fit = unhalved(fit, problem.moments(problem.scale)[0])
    after = problem.metrics(_beta(fit.temperature))  # as /v1/apply computes it from T
    before = problem.sent_metrics() if probabilities else problem.metrics(1.0)
    return SequenceTemperatureFit(fit, scored, before, after, problem.eps, problem.n_clipped)


def sequence_temperature_metrics(
    labels: ArrayLike,
    logits: ArrayLike,
    temperature: float,
    *,
    mask: ArrayLike | None = None,
    ignore_index: int | None = -100,
    bfloat16: bool = False,
    field: str = "logits",
    probabilities: bool = False,
    eps: EpsPolicy = "auto",
    tolerance: float | None = None,
) -> tuple[FitMetrics, BoolArray, int]:
    """NLL, top-label ECE, Brier and accuracy of ``softmax(logits / T)`` over the scored tokens.

    The metrics of :func:`~service.core.fit_metrics` on the scored rows of the recalibrated
    B×T×K tensor, computed a block at a time without it (two passes over `logits`). Parameters
    as :func:`fit_sequence_temperature` (probabilities act as ``log(max(p, eps))``); ``T = 0``
    is the arg-max limit, ``T = ∞`` uniform. Returns the metrics, the (B, T) positions scored
    and the count of scored probabilities below eps (0 for logits). At the T a fit returned,
    they are its ``after`` exactly.

    Examples
    --------
    >>> m, scored, _ = sequence_temperature_metrics([[0, 1]], np.log([[[0.8, 0.2], [0.4, 0.6]]]), 1.0)
    >>> round(m.nll, 6), round(m.brier, 6), m.accuracy
    (0.366985, 0.1, 1.0)
    """
    if not temperature >= 0:
        raise InputError("temperature", f"must be ≥ 0 (or Infinity); got {temperature}")
    reading = _Reading(bfloat16, field, probabilities, eps, tolerance)
    problem, scored = _streamed(labels, logits, mask, ignore_index, reading)
    return problem.metrics(_beta(temperature)), scored, problem.n_clipped


def _beta(temperature: float) -> float:
    """``1 / T``, with 1 / 0 = ∞."""
    return np.inf if temperature == 0 else 1 / temperature
