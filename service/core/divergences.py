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

from ._typing import FloatArray
from .cancel import checkpoint
from .distribution import Distribution

BLOCK_BYTES = 1 << 17  # per scratch buffer; six of them stay within a 1 MiB L2
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
    ``z - logsumexp(z)`` logs. Values equal :func:`~service.core.entropy.kl_divergence`,
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
    scratch = np.empty((6, rows, k), dtype)
    lse_p, lse_q = _log_normaliser(p), _log_normaliser(q)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # 0·log 0 terms are zeroed
        for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
            checkpoint()
            block = slice(start, min(n, start + rows))
            width = block.stop - block.start
            buffers = scratch[:, :width]
            pb, lp = _side(p, lse_p, block, buffers[0], buffers[1])
            qb, lq = _side(q, lse_q, block, buffers[2], buffers[3])
            _statistics(pb, lp, qb, lq, buffers[4], buffers[5], {name: v[block] for name, v in out.items()})
    return DivergenceRows(**out)


def _log_normaliser(dist: Distribution) -> FloatArray | None:
    """``logsumexp`` of each row of categorical logits (one summary pass), else None."""
    if dist.logits is None or dist.binary:
        return None
    return dist.summarise().lse


def _side(
    dist: Distribution, lse: FloatArray | None, block: slice, probs: FloatArray, logs: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """A block of `dist`'s probabilities and logs, written into `probs` and `logs` where they are formed."""
    if dist.binary:  # two columns: the exact binary forms, on the block's rows only
        part = Distribution(
            logits=None if dist.logits is None else dist.logits[block],
            sent_probs=None if dist.sent_probs is None else dist.sent_probs[block],
            eps=dist.eps,
            binary=True,
        )
        np.copyto(probs, part.probs)
        np.copyto(logs, part.log_probs)
        return probs, logs
    if lse is not None:
        assert dist.logits is not None
        np.subtract(dist.logits[block], lse[block, None], out=logs)  # exact log-softmax
        np.exp(logs, out=probs)
        return probs, logs
    assert dist.sent_probs is not None
    sent = dist.sent_probs[block]
    if dist.eps > 0:
        np.maximum(sent, dist.eps, out=logs)
        np.log(logs, out=logs)
    else:
        np.log(sent, out=logs)
    if sent.dtype == probs.dtype:
        return sent, logs  # no copy
    np.copyto(probs, sent)
    return probs, logs


def _statistics(
    p: FloatArray, lp: FloatArray, q: FloatArray, lq: FloatArray, t: FloatArray, u: FloatArray, out: Out
) -> None:
    """Every row statistic of one block; `t` and `u` are scratch of the block's shape."""
    p_zero, q_zero = _zeros(p), _zeros(q)
    np.multiply(p, lp, out=t)
    _negated_row_sum(t, p_zero, out["entropy_p"])
    np.multiply(q, lq, out=t)
    _negated_row_sum(t, q_zero, out["entropy_q"])
    np.multiply(p, lq, out=t)
    _negated_row_sum(t, p_zero, out["cross_entropy_pq"])
    np.subtract(lp, lq, out=u)  # log p - log q
    np.multiply(p, u, out=t)
    _row_sum(t, p_zero, out["kl_pq"])
    np.multiply(q, u, out=t)
    _negated_row_sum(t, q_zero, out["kl_qp"])
    # JS from the probabilities: p log(p / m) with m = (p + q)/2 ≥ p/2, finite wherever p > 0.
    js, half = out["js"], np.empty_like(out["js"])
    np.add(p, q, out=u)
    u *= 0.5
    for x, zero, into in ((p, p_zero, js), (q, q_zero, half)):
        np.divide(x, u, out=t)
        np.log(t, out=t)
        t *= x
        _row_sum(t, zero, into)
    js += half
    js *= 0.5
    np.maximum(js, 0, out=js)  # rounding may leave -1e-17 where p = q


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
