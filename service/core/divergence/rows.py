"""KL both ways, Jensen–Shannon, H(p), H(q) and H(p, q) of two batches, in one cache-blocked pass.

The seven per-row statistics of ``POST /v1/divergence`` share their inputs: each block of
rows (about ``BLOCK_BYTES`` per scratch buffer) has its probabilities and logs formed once,
in scratch buffers reused by every block, and every statistic is reduced from them while
they are in cache. Nothing N×K is materialised beyond the inputs themselves (the whole-array
formulas of :mod:`service.core.entropy` made about twenty N×K temporaries).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._typing import FloatArray
from ..cancel import checkpoint
from ..distribution import Distribution
from .log_ratio import js_terms_into, log_ratio_into

BLOCK_BYTES = 1 << 17  # per scratch buffer; the seven of them stay within a 1 MiB L2
NARROW_K = 64
Out = dict[str, Any]  # statistic name -> its rows of the block


@dataclass(frozen=True)
class DivergenceRows:
    """Per-row statistics of two batches p and q, in nats.

    Attributes
    ----------
    kl_pq, kl_qp : ndarray
        ``KL(p‖q) = Σ p (log p - log q)`` and ``KL(q‖p)``; ``0 · log 0 = 0``.
    js : ndarray
        Jensen–Shannon divergence ``½ Σ p log(p/m) + ½ Σ q log(q/m)``, ``m = (p + q)/2``,
        from the probabilities themselves (no eps: always finite, in ``[0, log 2]``).
    entropy_p, entropy_q : ndarray
        ``H(p) = -Σ p log p`` and ``H(q)``.
    cross_entropy_pq : ndarray
        ``H(p, q) = -Σ p log q``.
    """

    kl_pq: FloatArray
    kl_qp: FloatArray
    js: FloatArray
    entropy_p: FloatArray
    entropy_q: FloatArray
    cross_entropy_pq: FloatArray


def divergence_rows(p: Distribution, q: Distribution) -> DivergenceRows:
    """The six row statistics of `p` and `q` (same N and K) in one pass over both.

    Logs follow each side's eps policy (``log max(p, eps)``; eps 0 keeps ``log 0 = -inf``,
    so ``KL`` and ``H(p, q)`` are ``+inf`` where p > 0 = q); logits give exact
    ``z - logsumexp(z)`` logs. When both sides are probabilities, each KL term
    ``p log(p/q)`` comes from :func:`~service.core.divergence.log_ratio.log_ratio` of the floored values
    and each JS term from :func:`~service.core.divergence.log_ratio.js_terms_into`: within a few ulps of
    the exact term even where p ≈ q (two logs subtracted would cancel), as
    ``scipy.special.rel_entr``. With a logits side, KL terms are ``p (log p - log q)`` of the
    exact log-softmax values. Values equal :func:`~service.core.divergence.relative_entropy`,
    :func:`~service.core.entropy.entropy` and :func:`~service.core.entropy.cross_entropy_rows`
    on the whole arrays (``scipy.special.rel_entr`` and ``scipy.stats.entropy`` when nothing is
    clipped), and ``scipy.spatial.distance.jensenshannon(p, q) ** 2`` for JS. The result is in
    the wider dtype of the two.

    Examples
    --------
    >>> p = Distribution.from_probs([[1.0, 0.0]], eps=0)
    >>> rows = divergence_rows(p, Distribution.from_probs([[0.5, 0.5]], eps=0))
    >>> rows.kl_pq, rows.js, rows.entropy_q
    (array([0.69314718]), array([0.21576155]), array([0.69314718]))
    """
    n, k = p.n_samples, p.n_classes
    dtype = np.result_type(p.dtype, q.dtype)
    out = {name: np.empty(n, dtype) for name in DivergenceRows.__dataclass_fields__}
    rows = min(n, max(1, BLOCK_BYTES // (k * dtype.itemsize)))
    scratch = np.empty((7, rows, k), dtype)
    lse_p, lse_q = _log_normaliser(p), _log_normaliser(q)
    subnormal = min(p.eps, q.eps) < np.finfo(dtype).tiny
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # 0·log 0 terms are zeroed
        for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
            checkpoint()
            block = slice(start, min(n, start + rows))
            width = block.stop - block.start
            buffers = scratch[:, :width]
            pb, lp, fp = _side(p, lse_p, block, buffers[0], buffers[1], buffers[4])
            qb, lq, fq = _side(q, lse_q, block, buffers[2], buffers[3], buffers[5])
            sides = _Block(pb, lp, fp, qb, lq, fq, subnormal)
            _statistics(sides, buffers[6], {name: v[block] for name, v in out.items()})
    return DivergenceRows(**out)


@dataclass(frozen=True)
class _Block:
    """One block of both sides: probabilities, logs, and floored probabilities (None for logits)."""

    p: FloatArray
    lp: FloatArray
    fp: FloatArray | None
    q: FloatArray
    lq: FloatArray
    fq: FloatArray | None
    subnormal: bool  # a floored value may be below the smallest normal number


def _log_normaliser(dist: Distribution) -> FloatArray | None:
    """``logsumexp`` of each row of categorical logits (one summary pass), else None."""
    if dist.logits is None or dist.binary:
        return None
    return dist.summarise().lse


def _side(
    dist: Distribution,
    lse: FloatArray | None,
    block: slice,
    probs: FloatArray,
    logs: FloatArray,
    floor: FloatArray,
) -> tuple[FloatArray, FloatArray, FloatArray | None]:
    """A block of `dist`'s probabilities, logs and (probabilities only) ``max(p, eps)``, in the buffers."""
    if dist.binary:  # two columns: the exact binary forms, on the block's rows only
        part = Distribution(
            logits=None if dist.logits is None else dist.logits[block],
            sent_probs=None if dist.sent_probs is None else dist.sent_probs[block],
            eps=dist.eps,
            binary=True,
        )
        np.copyto(probs, part.probs)
        np.copyto(logs, part.log_probs)
        if dist.logits is not None:
            return probs, logs, None
        return probs, logs, np.maximum(probs, dist.eps, out=floor)
    if lse is not None:
        assert dist.logits is not None
        np.subtract(dist.logits[block], lse[block, None], out=logs)  # exact log-softmax
        np.exp(logs, out=probs)
        return probs, logs, None
    assert dist.sent_probs is not None
    sent = dist.sent_probs[block]
    if sent.dtype != probs.dtype:
        np.copyto(probs, sent)
        sent = probs
    floored = np.maximum(sent, dist.eps, out=floor) if dist.eps > 0 and dist.n_clipped else sent
    np.log(floored, out=logs)
    return sent, logs, floored


def _statistics(b: _Block, t: FloatArray, out: Out) -> None:
    """Every row statistic of one block; `t` is scratch of the block's shape.

    The logs (and the floored probabilities) are overwritten once the entropies are taken.
    """
    p, lp, q, lq = b.p, b.lp, b.q, b.lq
    p_zero, q_zero = _zeros(p), _zeros(q)
    np.multiply(p, lp, out=t)
    _negated_row_sum(t, p_zero, out["entropy_p"])
    np.multiply(q, lq, out=t)
    _negated_row_sum(t, q_zero, out["entropy_q"])
    np.multiply(p, lq, out=t)
    _negated_row_sum(t, p_zero, out["cross_entropy_pq"])
    if b.fp is not None and b.fq is not None:  # log(p/q) from the probabilities: no cancellation
        ratio = log_ratio_into(b.fp, b.fq, lp, lq, subnormal=b.subnormal)
    else:
        ratio = np.subtract(lp, lq, out=lp)  # exact log-softmax values on a logits side
    np.multiply(p, ratio, out=t)
    _row_sum(t, p_zero, out["kl_pq"])
    np.multiply(q, ratio, out=t)
    _negated_row_sum(t, q_zero, out["kl_qp"])
    # JS from the probabilities, each term p log(p/m) to a few ulps, finite wherever p > 0.
    zero = None if p_zero is None and q_zero is None else _either(p_zero, q_zero)
    js = out["js"]
    _row_sum(js_terms_into(p, q, lp, lq, t, zero), None, js)
    js *= 0.5
    np.maximum(js, 0, out=js)  # rounding may leave -1e-17 where p ≈ q


def _either(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    """``a | b`` for masks of which at most one is None."""
    if a is None or b is None:
        mask = a if b is None else b
        assert mask is not None
        return mask
    return a | b


def _zeros(x: FloatArray) -> np.ndarray | None:
    """Where `x` is 0, or None when it is nowhere (no masking needed)."""
    zero = x == 0
    return zero if zero.any() else None


def _row_sum(terms: FloatArray, zero: np.ndarray | None, out: FloatArray) -> None:
    """Row sums of `terms`, taking the terms where the weight is 0 as 0 (0 · log 0, 0 · -inf)."""
    if zero is not None:
        np.copyto(terms, 0, where=zero)
    if terms.shape[1] < NARROW_K:
        np.einsum("ij->i", terms, out=out)  # ~3× faster than sum(axis=1) on short rows
    else:
        np.add.reduce(terms, axis=1, out=out)


def _negated_row_sum(terms: FloatArray, zero: np.ndarray | None, out: FloatArray) -> None:
    _row_sum(terms, zero, out)
    np.subtract(0.0, out, out=out)  # +0.0 where the sum is 0, never -0.0
