"""The elementwise terms of KL and Jensen–Shannon divergences (N×K), whose row sums are the divergences."""

from dataclasses import dataclass

import numpy as np

from .._typing import FloatArray
from ..distribution import Distribution
from .log_ratio import js_terms_into, log_ratio_into


@dataclass(frozen=True)
class DivergenceTerms:
    """Per-element terms, N×K, in nats; each row sums to the matching :class:`DivergenceRows` value.

    Attributes
    ----------
    kl_pq : ndarray
        ``p log(p/q)``: ``scipy.special.rel_entr(p, q)``, PyTorch's
        ``F.kl_div(log q, p, reduction="none")`` (0 where p = 0, where PyTorch's gives NaN
        for p = q = 0).
    kl_qp : ndarray
        ``q log(q/p)``.
    js : ndarray
        ``½ (p log(p/m) + q log(q/m))``, ``m = (p + q)/2``, from the probabilities (no eps).
    """

    kl_pq: FloatArray
    kl_qp: FloatArray
    js: FloatArray


def divergence_terms(p: Distribution, q: Distribution) -> DivergenceTerms:
    """The N×K terms of ``KL(p‖q)``, ``KL(q‖p)`` and JS, in the wider dtype of the two.

    Logs follow each side's eps policy as in :func:`~service.core.divergence_rows` and
    :func:`~service.core.divergence.relative_entropy`: two probability sides give each term from
    ``log1p`` of the floored probabilities (within a few ulps where p ≈ q), a logits side
    from the exact log-softmax values. ``0 · log 0 = 0``; ``+inf`` where p > 0 = q with eps 0.

    Examples
    --------
    >>> p = Distribution.from_probs([[1.0, 0.0]], eps=0)
    >>> divergence_terms(p, Distribution.from_probs([[0.5, 0.5]], eps=0)).kl_pq
    array([[0.69314718, 0.        ]])
    """
    dtype = np.result_type(p.dtype, q.dtype)
    pp, qq = p.probs.astype(dtype, copy=False), q.probs.astype(dtype, copy=False)
    ratio = np.empty(np.broadcast_shapes(pp.shape, qq.shape), dtype)
    scratch = np.empty_like(ratio)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if p.given_probs is not None and q.given_probs is not None:
            subnormal = min(p.eps, q.eps) < np.finfo(dtype).tiny
            log_ratio_into(_floored(p, pp), _floored(q, qq), ratio, scratch, subnormal=subnormal)
        else:
            np.subtract(p.log_probs, q.log_probs, out=ratio)
        kl_pq = np.where(pp == 0, 0.0, pp * ratio).astype(dtype, copy=False)
        kl_qp = np.where(qq == 0, 0.0, -(qq * ratio)).astype(dtype, copy=False)
    zero = (pp == 0) | (qq == 0)
    js = js_terms_into(pp, qq, ratio, scratch, np.empty_like(ratio), zero if zero.any() else None)
    js *= 0.5
    return DivergenceTerms(kl_pq, kl_qp, js)


def _floored(dist: Distribution, probs: FloatArray) -> FloatArray:
    """``max(p, eps)`` of the N×K probabilities (as given when nothing lies below eps)."""
    return np.maximum(probs, dist.eps) if dist.eps > 0 and (dist.n_clipped or dist.binary) else probs
