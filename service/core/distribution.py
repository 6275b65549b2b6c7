"""Predicted class distributions, held as log-probabilities, built from logits or probabilities."""

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray, IntArray
from .errors import InputError
from .validation import check_logits, check_probabilities

EpsPolicy = float | Literal["auto"]


def log_softmax(logits: ArrayLike) -> FloatArray:
    """Row-wise ``log(softmax(logits))`` by log-sum-exp, in the dtype of `logits`.

    Rows are shifted by their maximum before ``exp``, so logits of magnitude 1e4
    stay finite. Matches ``scipy.special.log_softmax(logits, axis=1)``.

    Examples
    --------
    >>> log_softmax([[0.0, 0.0]])
    array([[-0.69314718, -0.69314718]])
    """
    z = np.asarray(logits)
    shifted = z - z.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softplus(x: ArrayLike) -> FloatArray:
    """``log(1 + exp(x))`` without overflow: ``max(x, 0) + log1p(exp(-|x|))``.

    Examples
    --------
    >>> softplus([0.0, 1e4])
    array([6.93147181e-01, 1.00000000e+04])
    """
    x = np.asarray(x)
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def binary_log_probs(logits: ArrayLike) -> FloatArray:
    """N×2 log-probabilities ``[log(1 - σ(z)), log σ(z)]`` of positive-class logits `z`.

    ``log σ(z) = -softplus(-z)``, exact for z = ±1e4 (PyTorch's
    ``binary_cross_entropy_with_logits`` form).

    Examples
    --------
    >>> binary_log_probs([0.0])
    array([[-0.69314718, -0.69314718]])
    """
    z = np.asarray(logits)
    return np.stack([-softplus(z), -softplus(-z)], axis=1)


def resolve_eps(eps: EpsPolicy, dtype: np.dtype[np.floating]) -> float:
    """The clipping floor: ``"auto"`` is the machine epsilon of `dtype` (scikit-learn ≥ 1.5)."""
    if eps == "auto":
        return float(np.finfo(dtype).eps)
    if not 0 <= eps < 1:
        raise InputError("eps", f'must lie in [0, 1) or be "auto"; got {eps}')
    return float(eps)


@dataclass(frozen=True, eq=False)
class Distribution:
    """A batch of categorical distributions, one per row.

    Attributes
    ----------
    log_probs : ndarray, shape (n_samples, n_classes)
        Natural-log probabilities; ``-inf`` only where a probability was 0 and eps is 0.
    given_probs : ndarray or None
        The probabilities as sent (before clipping), when sent as probabilities.
    eps : float
        Floor applied to probabilities before the log (0: none).
    n_clipped : int
        How many probabilities were raised to `eps` before the log.
    binary : bool
        Built from a length-N positive-class vector (columns are [negative, positive]).
    """

    log_probs: FloatArray
    given_probs: FloatArray | None = None
    eps: float = 0.0
    n_clipped: int = 0
    binary: bool = False

    @classmethod
    def from_logits(cls, logits: ArrayLike, *, validate: bool = True) -> "Distribution":
        """Distributions ``softmax(logits)`` (N×K) or ``σ(z)`` (length-N binary logits)."""
        z = check_logits(logits) if validate else np.asarray(logits)
        if z.ndim == 1:
            return cls(binary_log_probs(z), binary=True)
        return cls(log_softmax(z))

    @classmethod
    def from_probs(
        cls, probs: ArrayLike, *, eps: EpsPolicy = "auto", validate: bool = True
    ) -> "Distribution":
        """Distributions given as probabilities; ``log(max(p, eps))`` is taken.

        Only the zero side is clipped: p = 1 keeps log 1 = 0 exactly, where
        scikit-learn's ``log_loss`` also lowers it to ``1 - eps`` (a change below
        ``eps`` in the loss). ``eps=0`` keeps ``log 0 = -inf``.
        """
        p = check_probabilities(probs) if validate else np.asarray(probs)
        binary = p.ndim == 1
        if binary:
            p = np.stack([1 - p, p], axis=1)
        floor = resolve_eps(eps, p.dtype)
        if floor == 0:
            with np.errstate(divide="ignore"):
                return cls(np.log(p), p, 0.0, 0, binary)
        n_clipped = int(np.count_nonzero(p < floor))
        return cls(np.log(np.maximum(p, floor)), p, floor, n_clipped, binary)

    @cached_property
    def probs(self) -> FloatArray:
        """The probabilities: as given, or ``exp(log_probs)``."""
        return self.given_probs if self.given_probs is not None else np.exp(self.log_probs)

    @property
    def n_classes(self) -> int:
        """Number of classes K (2 for binary input)."""
        return int(self.log_probs.shape[1])

    def predicted(self) -> IntArray:
        """Top-1 class per row (ties go to the lowest index, like ``argmax``)."""
        return np.argmax(self.log_probs, axis=1)
