"""KL divergence of two batches of probabilities in one cache-blocked pass.

``Σ p (log max(p, eps_p) - log max(q, eps_q))`` per row, computed block by block of rows
(about ``BLOCK_BYTES`` each) in two scratch buffers that stay in the L2 cache, instead of
materialising the N×K ``log p``, ``log q``, their difference and the products.
"""

import numpy as np

from ._typing import FloatArray
from .cancel import checkpoint
from .distribution import Distribution
from .entropy import kl_divergence

BLOCK_BYTES = 1 << 19  # measured best on a 1 MiB L2 (docs/internals.md, Block sizes)
NARROW_K = 64


def relative_entropy(p: Distribution, q: Distribution) -> FloatArray:
    """``KL(p‖q) = Σ p (log p - log q)`` per row, in nats, from two :class:`Distribution` batches.

    Each side's logs follow its own eps policy (``log max(p, eps)``; eps 0 keeps
    ``log 0 = -inf``), and ``0 · log 0 = 0``: the value is ``+inf`` only where p > 0 = q
    with eps 0. Equals :func:`kl_divergence` on ``(p.probs, p.log_probs, q.log_probs)`` and
    ``scipy.special.rel_entr(p, q).sum(axis=1)`` when nothing is clipped. When both hold
    N×K probabilities the N×K logs are never materialised.

    Examples
    --------
    >>> p = Distribution.from_probs([[1.0, 0.0]], eps=0)
    >>> relative_entropy(p, Distribution.from_probs([[0.5, 0.5]], eps=0))
    array([0.69314718])
    """
    sent_p, sent_q = p.sent_probs, q.sent_probs
    if sent_p is None or sent_q is None or p.binary or q.binary or sent_p.dtype != sent_q.dtype:
        return kl_divergence(p.probs, p.log_probs, q.log_probs)
    return _blocked_kl(sent_p, sent_q, p.eps, q.eps)


def _blocked_kl(p: FloatArray, q: FloatArray, eps_p: float, eps_q: float) -> FloatArray:
    """Row sums of ``p (log max(p, eps_p) - log max(q, eps_q))`` with ``0 · anything = 0``, by blocks."""
    n, k = p.shape
    out = np.empty(n, p.dtype)
    rows = max(1, BLOCK_BYTES // (k * p.itemsize))
    scratch = np.empty((2, min(rows, n), k), p.dtype)
    # With both floors positive (q's a normal number) p / q neither overflows nor reaches 0, so one
    # log of the ratio replaces two logs (scipy's rel_entr form) and p = 0 gives 0 exactly.
    ratio = eps_p > 0 and eps_q >= np.finfo(p.dtype).tiny
    for start in range(0, n, rows):  # blocks of rows sized for the cache, never single samples
        checkpoint()
        block = slice(start, start + rows)
        pb, qb = p[block], q[block]
        d, lq = scratch[:, : pb.shape[0]]
        if ratio:
            np.maximum(pb, eps_p, out=d)
            np.maximum(qb, eps_q, out=lq)
            d /= lq
            np.log(d, out=d)
            d *= pb
        else:
            _log_floor(pb, eps_p, d)
            _log_floor(qb, eps_q, lq)
            with np.errstate(invalid="ignore"):  # -inf - -inf where p = q = 0: zeroed below
                d -= lq
                d *= pb
            np.copyto(d, 0, where=pb == 0)
        if k < NARROW_K:
            np.einsum("ij->i", d, out=out[block])  # ~3× faster than sum(axis=1) on short rows
        else:
            d.sum(axis=1, out=out[block])
    return out


def _log_floor(x: FloatArray, eps: float, out: FloatArray) -> None:
    """``out = log(max(x, eps))``; with eps 0, ``log 0 = -inf``."""
    if eps > 0:
        np.maximum(x, eps, out=out)
        np.log(out, out=out)
    else:
        with np.errstate(divide="ignore"):
            np.log(x, out=out)
