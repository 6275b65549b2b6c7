"""A time series of language-model totals: per-bucket sums that merge exactly, and their perplexities.

What a monitor needs to track a model's perplexity over time: each observation (one scored
sequence, with its time) adds to the :class:`~service.core.language.perplexity.PerplexityTotals`
sums of its time bucket — sequences, NLL, tokens, Σ per-sequence perplexity, bytes, words,
top-1 hits — and every metric of a bucket, or of any span of buckets, is a function of those
sums. Series built from any partition of the observations (per request, per replica, in any
order) merge by adding bucket-wise, so the merged series equals the one built from all of them.

Bytes, words and hits are known in a bucket only when every sequence in it had them: each has a
count of the sequences that brought it, summed like the rest.
"""

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .._typing import FloatArray, IntArray
from ..errors import InputError
from .perplexity import PerplexityTotals


@dataclass(frozen=True)
class PerplexitySeries:
    """Per-bucket sums of scored sequences, buckets ``[start, start + width)`` in seconds.

    Attributes
    ----------
    width : int
        Bucket width in seconds.
    start : ndarray of int64, shape (n_buckets,)
        Start of each bucket (a multiple of `width`), increasing.
    sequences, tokens, sequences_with_tokens : ndarray of int64, shape (n_buckets,)
    nll, perplexity_sum : ndarray of float64, shape (n_buckets,)
        ``Σ nll_i`` and ``Σ exp(nll_i / tokens_i)`` over sequences with tokens (nats).
    bytes, words, hits : ndarray of int64, shape (n_buckets,)
        Sums over the sequences that brought them (``with_bytes``, ``with_words``, ``with_hits``).
    COLUMNS : tuple of str
        Class attribute: the names of the summed fields (all but `width` and `start`), in order;
        ``FLOAT_COLUMNS`` those of float64 (the rest are int64). A store keeps one column of each.
    """

    COLUMNS: ClassVar[tuple[str, ...]]
    FLOAT_COLUMNS: ClassVar[tuple[str, ...]]

    width: int
    start: IntArray
    sequences: IntArray
    nll: FloatArray
    tokens: IntArray
    perplexity_sum: FloatArray
    sequences_with_tokens: IntArray
    bytes: IntArray
    with_bytes: IntArray
    words: IntArray
    with_words: IntArray
    hits: IntArray
    with_hits: IntArray

    @classmethod
    def observe(
        cls,
        time: ArrayLike,
        nll: ArrayLike,
        tokens: ArrayLike,
        *,
        width: int,
        bytes: ArrayLike | None = None,
        words: ArrayLike | None = None,
        hits: ArrayLike | None = None,
    ) -> "PerplexitySeries":
        """The series of S scored sequences: their times (s), NLL sums, token counts, and counts.

        Examples
        --------
        >>> s = PerplexitySeries.observe([0, 30, 70], [2.0, 4.0, 1.0], [1, 2, 1], width=60)
        >>> s.start.tolist(), s.nll.tolist(), s.tokens.tolist()
        ([0, 60], [6.0, 1.0], [3, 1])
        """
        if not (isinstance(width, int) and width > 0):
            raise InputError("width", f"must be a positive number of seconds; got {width}")
        t = np.asarray(time, dtype=np.float64)
        nll_ = np.asarray(nll, dtype=np.float64)
        n_tokens = np.asarray(tokens, dtype=np.int64)
        if t.ndim != 1 or nll_.shape != t.shape or n_tokens.shape != t.shape:
            raise InputError("time", "must give one time per sequence, like nll and tokens")
        if not np.isfinite(t).all():
            raise InputError("time", "must be finite")
        has = n_tokens > 0
        with np.errstate(over="ignore"):
            per_sequence = np.where(has, np.exp(nll_ / np.maximum(n_tokens, 1)), 0.0)
        columns: dict[str, np.ndarray] = {
            "sequences": np.ones(t.size, np.int64),
            "nll": nll_,
            "tokens": n_tokens,
            "perplexity_sum": per_sequence,
            "sequences_with_tokens": has.astype(np.int64),
        }
        for name, values in (("bytes", bytes), ("words", words), ("hits", hits)):
            known = values is not None
            counts = np.asarray(values, np.int64) if known else np.zeros(t.size, np.int64)
            if counts.shape != t.shape:
                raise InputError(name, f"must give one count per sequence ({t.size}); got {counts.shape}")
            columns[name] = counts
            columns[f"with_{name}"] = np.full(t.size, int(known), np.int64)
        return _reduce(width, np.floor(t / width).astype(np.int64) * width, columns)

    def merge(self, other: "PerplexitySeries") -> "PerplexitySeries":
        """Both series' sums, bucket by bucket (buckets of either kept).

        Examples
        --------
        >>> a = PerplexitySeries.observe([0], [2.0], [1], width=60)
        >>> b = PerplexitySeries.observe([10, 90], [4.0, 1.0], [2, 1], width=60)
        >>> a.merge(b).nll.tolist()
        [6.0, 1.0]
        """
        if other.width != self.width:
            raise InputError("width", f"must match to merge; got {self.width} and {other.width}")
        columns = {name: np.concatenate([getattr(self, name), getattr(other, name)]) for name in _COLUMNS}
        return _reduce(self.width, np.concatenate([self.start, other.start]), columns)

    def totals(self, first: int = 0, stop: int | None = None) -> PerplexityTotals:
        """The :class:`PerplexityTotals` of buckets ``first:stop`` together (all by default)."""
        span = slice(first, stop)
        sums = {name: getattr(self, name)[span].sum() for name in _COLUMNS}
        n = int(sums["sequences"])
        return PerplexityTotals(
            sequences=n,
            nll=float(sums["nll"]),
            tokens=int(sums["tokens"]),
            perplexity_sum=float(sums["perplexity_sum"]),
            sequences_with_tokens=int(sums["sequences_with_tokens"]),
            bytes=int(sums["bytes"]) if sums["with_bytes"] == n else None,
            words=int(sums["words"]) if sums["with_words"] == n else None,
            hits={1: int(sums["hits"])} if sums["with_hits"] == n else {},
        )

    def metrics(self) -> dict[str, FloatArray]:
        """Each metric of :meth:`PerplexityTotals.metrics` per bucket (NaN where undefined).

        Examples
        --------
        >>> s = PerplexitySeries.observe([0, 30, 70], [2.0, 4.0, 1.0], [1, 2, 1], width=60)
        >>> np.round(s.metrics()["token_perplexity"], 6).tolist()
        [7.389056, 2.718282]
        """
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            per_token = _ratio(self.nll, self.tokens, self.sequences)
            per_byte = _ratio(self.nll, self.bytes, self.with_bytes == self.sequences)
            per_word = _ratio(self.nll, self.words, self.with_words == self.sequences)
            return {
                "nll_per_token": per_token,
                "bits_per_token": per_token / np.log(2),
                "token_perplexity": np.exp(per_token),
                "lm_eval_perplexity": np.exp(_ratio(self.nll, self.sequences, self.sequences)),
                "hf_mean_perplexity": _ratio(self.perplexity_sum, self.sequences_with_tokens, self.sequences),
                "byte_perplexity": np.exp(per_byte),
                "bits_per_byte": per_byte / np.log(2),
                "word_perplexity": np.exp(per_word),
                "accuracy": _ratio(self.hits, self.tokens, self.with_hits == self.sequences),
            }


PerplexitySeries.COLUMNS = tuple(f.name for f in fields(PerplexitySeries))[2:]
PerplexitySeries.FLOAT_COLUMNS = tuple(f.name for f in fields(PerplexitySeries)[2:] if f.type == FloatArray)
_COLUMNS = PerplexitySeries.COLUMNS
_FLOATS = PerplexitySeries.FLOAT_COLUMNS


def _ratio(num: np.ndarray, den: np.ndarray, known: np.ndarray) -> FloatArray:
    """``num / den`` where `known` (non-zero) and ``den > 0``, NaN elsewhere."""
    ok = (np.asarray(known) != 0) & (den > 0)
    out: FloatArray = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=ok)
    return out


def _reduce(width: int, start: IntArray, columns: dict[str, np.ndarray]) -> PerplexitySeries:
    """Sum every column over equal bucket starts (sorted)."""
    buckets, index = np.unique(start, return_inverse=True)
    n = buckets.size
    sums: dict[str, Any] = {
        name: np.bincount(index, weights=values, minlength=n)
        if name in _FLOATS
        else _int_sums(index, values, n)
        for name, values in columns.items()
    }
    return PerplexitySeries(width=width, start=buckets.astype(np.int64), **sums)


def _int_sums(index: IntArray, values: np.ndarray, n: int) -> IntArray:
    """Exact integer sums per bucket (``bincount`` weights would go through float64)."""
    out = np.zeros(n, np.int64)
    np.add.at(out, index, values.astype(np.int64))
    return out
