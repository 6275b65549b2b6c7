"""Predicted class distributions, built from logits or probabilities.

A :class:`Distribution` answers the few questions every metric asks — the log-probability of
given classes, weighted sums of log-probabilities, entropy, the top class — without
materialising an N×K log-softmax when it was given logits: those come from one fused,
cache-blocked pass (:func:`~service.core.logsumexp.softmax_summary`).
"""

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike

from ._typing import FloatArray, IntArray
from .binary_probs import binary_nll_probs, count_clipped
from .errors import InputError
from .logsumexp import BlockConsumer, SoftmaxSummary, label_nll, minus, softmax_summary
from .sigmoid import binary_nll, softplus
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
    summary = softmax_summary(z, top=False, entropy=False)
    return minus(z, summary.lse[:, None], summary)  # −inf past the dtype's range, the limit


def binary_log_probs(logits: ArrayLike) -> FloatArray:
    """N×2 log-probabilities ``[log(1 - σ(z)), log σ(z)]`` of positive-class logits `z`.

    ``log σ(z) = -softplus(-z)``, exact for z = ±1e4 (PyTorch's
    ``binary_cross_entropy_with_logits`` form, with ``log1p`` where PyTorch has ``log``).

    Examples
    --------
    >>> binary_log_probs([0.0])
    array([[-0.69314718, -0.69314718]])
    """
    z = np.asarray(logits)
    return np.stack([-softplus(z), -softplus(-z)], axis=1)


def resolve_eps(eps: EpsPolicy, dtype: np.dtype[Any]) -> float:
    """The clipping floor: ``"auto"`` is the machine epsilon of `dtype` (scikit-learn ≥ 1.5)."""
    if eps == "auto":
        return float(np.finfo(dtype).eps)
    if not 0 <= eps < 1:
        raise InputError("eps", f'must lie in [0, 1) or be "auto"; got {eps}')
    return float(eps)


def _count_below(p: FloatArray, floor: float) -> int:
    """How many of `p` lie below `floor`: one reduction when none do (NaN falls through to the count)."""
    if p.size == 0 or p.min() >= floor:
        return 0
    return int(np.count_nonzero(p < floor))


def masked_row_dot(weights: FloatArray, log_p: FloatArray) -> FloatArray:
    """Row sums of ``weights * log_p`` with ``0 * log_p = 0`` even where ``log_p = -inf``."""
    terms = np.zeros(np.broadcast_shapes(weights.shape, log_p.shape), dtype=np.result_type(weights, log_p))
    np.multiply(weights, log_p, out=terms, where=weights != 0)
    return terms.sum(axis=1)


@dataclass(frozen=True, eq=False)
class Distribution:
    """A batch of categorical distributions, one per row.

    Build with :meth:`from_logits` or :meth:`from_probs`. Binary input (a length-N
    positive-class vector) is a two-class distribution with columns [negative, positive].

    Attributes
    ----------
    logits : ndarray or None
        N×K logits, or the length-N positive-class logits (binary), when built from logits.
    sent_probs : ndarray or None
        The probabilities as sent (N×K, or the length-N positive-class vector), when built
        from probabilities; :attr:`given_probs` is the N×K view (binary: [1 - p, p]).
    eps : float
        Floor applied to probabilities before the log (0: none; always 0 for logits).
    n_clipped : int
        How many probabilities were raised to `eps` before the log.
    binary : bool
        Built from a length-N positive-class vector.
    """

    logits: FloatArray | None = None
    sent_probs: FloatArray | None = None
    eps: float = 0.0
    n_clipped: int = 0
    binary: bool = False
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_logits(cls, logits: ArrayLike, *, validate: bool = True) -> "Distribution":
        """Distributions ``softmax(logits)`` (N×K) or ``σ(z)`` (length-N binary logits)."""
        z = check_logits(logits) if validate else np.asarray(logits)
        return cls(logits=z, binary=z.ndim == 1)

    @classmethod
    def from_probs(
        cls, probs: ArrayLike, *, eps: EpsPolicy = "auto", validate: bool = True
    ) -> "Distribution":
        """Distributions given as probabilities; logs are ``log(max(p, eps))``.

        Only the zero side is clipped: p = 1 keeps log 1 = 0 exactly, where
        scikit-learn's ``log_loss`` also lowers it to ``1 - eps`` (a change below
        ``eps`` in the loss). ``eps=0`` keeps ``log 0 = -inf``.
        """
        p = check_probabilities(probs) if validate else np.asarray(probs)
        binary = p.ndim == 1
        floor = resolve_eps(eps, p.dtype)
        n_clipped = 0
        if floor > 0:
            n_clipped = count_clipped(p, floor) if binary else _count_below(p, floor)
        return cls(sent_probs=p, eps=floor, n_clipped=n_clipped, binary=binary)

    # --- shape ---------------------------------------------------------------------------

    @cached_property
    def given_probs(self) -> FloatArray | None:
        """N×K probabilities as sent (binary: [1 - p, p]), or None when built from logits."""
        p = self.sent_probs
        if p is None or not self.binary:
            return p
        return np.stack([1 - p, p], axis=1)

    @property
    def dtype(self) -> np.dtype[Any]:
        """The computation dtype (float32 or float64)."""
        source = self.logits if self.logits is not None else self.sent_probs
        assert source is not None
        return source.dtype

    @property
    def n_samples(self) -> int:
        """Number of rows N."""
        source = self.logits if self.logits is not None else self.sent_probs
        assert source is not None
        return int(source.shape[0])

    @property
    def n_classes(self) -> int:
        """Number of classes K (2 for binary input)."""
        if self.binary:
            return 2
        source = self.logits if self.logits is not None else self.sent_probs
        assert source is not None
        return int(source.shape[1])

    def broadcast(self, n_samples: int) -> "Distribution":
        """A one-row batch as `n_samples` identical rows: read-only views, nothing copied.

        Scores one reference distribution against many (SciPy's broadcasting of ``rel_entr``,
        PyTorch's of ``kl_div``). `n_clipped` stays the count of the row as sent.

        Examples
        --------
        >>> Distribution.from_probs([[0.25, 0.75]]).broadcast(3).probs.shape
        (3, 2)
        """
        if self.n_samples == n_samples:
            return self
        if self.n_samples != 1:
            raise ValueError(f"only a one-row batch broadcasts; this one has {self.n_samples} rows")
        shape = (n_samples,) if self.binary else (n_samples, self.n_classes)
        return Distribution(
            logits=None if self.logits is None else np.broadcast_to(self.logits, shape),
            sent_probs=None if self.sent_probs is None else np.broadcast_to(self.sent_probs, shape),
            eps=self.eps,
            n_clipped=self.n_clipped,
            binary=self.binary,
        )

    # --- full matrices, materialised only when asked -------------------------------------

    @cached_property
    def log_probs(self) -> FloatArray:
        """N×K natural-log probabilities (``-inf`` only where p = 0 and eps = 0)."""
        if self.given_probs is not None:
            return self._log(self.given_probs)
        assert self.logits is not None
        if self.binary:
            return binary_log_probs(self.logits)
        summary = self.summarise()
        return minus(self.logits, summary.lse[:, None], summary)  # −inf past the dtype's range

    def _log(self, p: FloatArray) -> FloatArray:
        """``log(max(p, eps))``; ``log 0 = -inf`` when eps is 0."""
        if self.eps == 0:
            with np.errstate(divide="ignore"):
                return np.log(p)
        return np.log(np.maximum(p, self.eps))

    @cached_property
    def probs(self) -> FloatArray:
        """N×K probabilities: as given, or ``exp(log_probs)``."""
        return self.given_probs if self.given_probs is not None else np.exp(self.log_probs)

    # --- row statistics -------------------------------------------------------------------

    def summarise(
        self,
        *,
        top: bool = False,
        entropy: bool = False,
        labels: IntArray | None = None,
        block_bytes: int | None = None,
        each: BlockConsumer | None = None,
    ) -> SoftmaxSummary:
        """Log-normaliser per row (and top class, entropy if asked), from one fused pass over the logits.

        The result is cached; ask for everything a response needs on the first call so
        the logits are read once. `labels` (valid class indices) are the ones a later
        :meth:`nll_at` will be called with: their logits are gathered inside the same pass.
        `block_bytes`: the pass's block size (:func:`~service.core.logsumexp.softmax_summary`; the
        values do not depend on it); `each`: called with each block of that pass (there), not when
        the summary was cached already.
        """
        if self.logits is None:
            raise ValueError("summarise needs logits")
        cached = self._cache.get("summary")
        if (
            cached is not None
            and (cached.top is not None or not top)
            and (cached.entropy is not None or not entropy)
            and (labels is None or self._cache.get("picked_for") is labels)
        ):
            return cached
        if cached is not None:
            top, entropy = top or cached.top is not None, entropy or cached.entropy is not None
        if self.binary:
            summary = self._binary_summary()
        else:
            summary = softmax_summary(
                self.logits, top=top, entropy=entropy, labels=labels, block_bytes=block_bytes, each=each
            )
            self._cache["picked_for"] = labels  # `summary.picked` belongs to these labels only
        self._cache["summary"] = summary
        return summary

    def _binary_summary(self) -> SoftmaxSummary:
        """Closed forms for two classes [0, z]: no cancellation, exact at z = ±1e4."""
        assert self.logits is not None
        z = self.logits
        a = np.abs(z)
        tail = softplus(-a)  # log(1 + exp(-|z|))
        entropy = tail + a * np.exp(-a - tail)  # H = softplus(-|z|) + |z| σ(-|z|)
        return SoftmaxSummary(np.maximum(z, 0), tail, (z > 0).astype(np.intp), entropy)

    def log_prob_at(self, labels: IntArray) -> FloatArray:
        """``log p[i, labels[i]]`` per row (labels must be valid indices)."""
        if self.sent_probs is not None and self.binary:
            p = np.where(labels == 1, self.sent_probs, 1 - self.sent_probs)
            return self._log(p)
        if self.given_probs is not None:
            rows = np.arange(labels.shape[0])
            if "log_probs" in self.__dict__:  # already materialised
                return self.log_probs[rows, labels]
            return self._log(self.given_probs[rows, labels])  # log of N gathered values, not of N×K
        assert self.logits is not None
        if self.binary:
            losses = binary_nll(labels, self.logits)
            return np.negative(losses, out=losses)
        picked, log_norm = self._picked(labels)
        # (z[y] - m) - log_norm: exact 0 - log1p(r) for the top class, no cancellation against m.
        return picked - log_norm

    def _picked(self, labels: IntArray) -> tuple[FloatArray, FloatArray]:
        """``(z[i, labels[i]] - m, log_norm)``: gathered inside the fused pass when it has not run yet."""
        assert self.logits is not None
        summary = self._cache.get("summary") or self.summarise(labels=labels)  # first pass: gather inside
        if summary.picked is not None and self._cache.get("picked_for") is labels:
            return summary.picked, summary.log_norm
        own = self.logits[np.arange(labels.shape[0]), labels]
        return minus(own, summary.shift, summary), summary.log_norm  # −inf past the dtype's range

    def nll_at(self, labels: IntArray) -> FloatArray:
        """``-log p[i, labels[i]]`` per row, ``+0.0`` (never ``-0.0``) where p = 1."""
        if self.logits is not None and self.binary:
            return binary_nll(labels, self.logits)  # one fused pass, no negations
        if self.sent_probs is not None and self.binary:
            floor = self.eps if self.n_clipped else 0.0  # nothing under eps: no clipping pass
            return binary_nll_probs(labels, self.sent_probs, floor)
        if self.logits is not None and self.sent_probs is None:  # (given_probs: None, not computed again)
            if "summary" not in self._cache:  # the loss alone: one label-shifted pass, nothing to share
                return label_nll(self.logits, labels)
            picked, log_norm = self._picked(labels)
            return log_norm - picked  # = 0 - (picked - log_norm), +0.0 where both are 0
        return 0.0 - self.log_prob_at(labels)

    def log_prob_dot(self, weights: FloatArray) -> FloatArray:
        """``Σ_c w[c] log p[i, c]`` per row; `weights` (non-negative) is (K,) or (N, K); ``0 · log 0 = 0``.

        From logits, ``Σ_c w[c] (z[c] - m) - log_norm · Σ_c w[c]`` with ``m`` the row maximum:
        every term is ``z - m ≤ 0`` (exact near the top), so neither a large common offset of
        the logits (``z @ w - lse · Σ w`` cancelled ~1e20 against ~1e20) nor logits near the
        dtype's limit (``inf - inf``) spoil it. Where ``z - m`` itself is past the dtype's range
        its term is ``w · z - w · m``: finite when the product fits (½ · −3.4e308), ``-inf``
        when it does not.
        """
        if self.given_probs is not None or self.binary:
            return masked_row_dot(weights, self.log_probs)
        assert self.logits is not None
        summary = self.summarise()
        shifted = minus(self.logits, summary.shift[:, None], summary)  # ≤ 0; −inf past the range
        with np.errstate(over="ignore"):  # products and sums past the range: ±inf, the limit
            total = weights.sum(axis=-1, dtype=np.result_type(weights, shifted))
            if summary.spans:
                dot = self._spanning_dot(np.broadcast_to(weights, shifted.shape), shifted, summary.shift)
            elif weights.ndim == 1:
                dot = shifted @ weights
            else:
                dot = np.einsum("ij,ij->i", weights, shifted)
            log_norm = summary.log_norm
            normaliser = np.zeros(log_norm.shape, np.result_type(log_norm, total))
            np.multiply(log_norm, total, out=normaliser, where=log_norm != 0)  # 0 · Σw is 0, even an inf Σw
            return dot - normaliser

    def _spanning_dot(self, w: FloatArray, shifted: FloatArray, top: FloatArray) -> FloatArray:
        """``Σ_c w (z - m)`` per row, some ``z - m`` past the range (``-inf``): ``w z - w m`` there."""
        assert self.logits is not None
        terms = np.zeros(shifted.shape, np.result_type(w, shifted))
        weighted = w != 0
        np.multiply(w, shifted, out=terms, where=weighted)  # 0 · −inf is 0
        far = np.isneginf(shifted) & weighted  # z ≪ 0 ≪ m there: w z and −w m share their sign
        if far.any():
            wf = w[far]
            terms[far] = wf * self.logits[far] - wf * top[np.nonzero(far)[0]]
        return terms.sum(axis=1)

    def entropy(self) -> FloatArray:
        """Shannon entropy ``-Σ p log p`` per row, ``0 log 0 = 0``."""
        if self.logits is not None:
            values = self.summarise(entropy=True).entropy
            assert values is not None
            return values
        return -masked_row_dot(self.probs, self.log_probs)

    def predicted(self) -> IntArray:
        """Top-1 class per row (ties go to the lowest index, like ``argmax``)."""
        if self.logits is not None:
            values = self.summarise(top=True).top
            assert values is not None
            return values
        return np.argmax(self.probs, axis=1)
