"""Perplexities, bits per token / byte and token accuracy from additive per-sequence sums.

Every metric here is a function of a few sums over sequences — NLL, tokens, bytes, words,
top-k hits, and the sum of per-sequence perplexities — so totals from separate batches,
workers or time buckets merge exactly by addition (:meth:`PerplexityTotals.merge`), and each
perplexity is named after whose definition it is.
"""

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputError

LN2 = math.log(2)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class PerplexityTotals:
    """Additive sums over scored sequences, in nats.

    Attributes
    ----------
    sequences : int
        Sequences (lm-evaluation-harness's documents), including any with no scored token.
    nll : float
        ``Σ`` of per-sequence NLL, i.e. minus the summed log-likelihood.
    tokens : int
        Scored tokens.
    perplexity_sum : float
        ``Σ_i exp(nll_i / tokens_i)`` over sequences with at least one token.
    sequences_with_tokens : int
        How many sequences entered `perplexity_sum`.
    bytes, words : int or None
        UTF-8 bytes and words of the scored text, when every merged batch had them.
    hits : mapping of int to int
        ``k → `` top-k hits (the label among the k most probable tokens).
    """

    sequences: int
    nll: float
    tokens: int
    perplexity_sum: float
    sequences_with_tokens: int
    bytes: int | None = None
    words: int | None = None
    hits: Mapping[int, int] = field(default_factory=dict)

    @classmethod
    def from_sequences(
        cls,
        nll: ArrayLike,
        tokens: ArrayLike,
        *,
        bytes: ArrayLike | None = None,
        words: ArrayLike | None = None,
        hits: Mapping[int, ArrayLike] | None = None,
    ) -> "PerplexityTotals":
        """Totals of per-sequence NLL sums and counts (all of shape (n_sequences,)).

        Examples
        --------
        >>> t = PerplexityTotals.from_sequences([2.0, 4.0], [1, 2])
        >>> t.nll, t.tokens, round(t.perplexity_sum, 6)
        (6.0, 3, 14.778112)
        """
        nll_ = np.asarray(nll, dtype=np.float64)
        n_tokens = np.asarray(tokens, dtype=np.int64)
        if nll_.ndim != 1 or n_tokens.shape != nll_.shape:
            raise InputError(
                "tokens", f"must have one count per sequence ({nll_.shape}); got {n_tokens.shape}"
            )
        has = n_tokens > 0
        # a huge per-token NLL: an infinite perplexity, as it is; sequences' NLLs past float64's range
        # together: an infinite total, as one such sequence's is (not a warning, a 500 under tests)
        with np.errstate(over="ignore"):
            per_sequence = np.exp(nll_[has] / n_tokens[has])
            nll_total, perplexity_sum = float(nll_.sum()), float(per_sequence.sum())
        return cls(
            sequences=int(nll_.size),
            nll=nll_total,
            tokens=int(n_tokens.sum()),
            perplexity_sum=perplexity_sum,
            sequences_with_tokens=int(has.sum()),
            bytes=_total(bytes, nll_.size, "bytes"),
            words=_total(words, nll_.size, "words"),
            hits={int(k): int(np.sum(v)) for k, v in (hits or {}).items()},
        )

    def merge(self, other: "PerplexityTotals") -> "PerplexityTotals":
        """The totals of both batches: every field adds (bytes/words only if both have them).

        Examples
        --------
        >>> a = PerplexityTotals.from_sequences([2.0], [1])
        >>> a.merge(PerplexityTotals.from_sequences([4.0], [2])) == PerplexityTotals.from_sequences(
        ...     [2.0, 4.0], [1, 2])
        True
        """
        both = self.hits.keys() & other.hits.keys()
        return PerplexityTotals(
            sequences=self.sequences + other.sequences,
            nll=self.nll + other.nll,
            tokens=self.tokens + other.tokens,
            perplexity_sum=self.perplexity_sum + other.perplexity_sum,
            sequences_with_tokens=self.sequences_with_tokens + other.sequences_with_tokens,
            bytes=None if self.bytes is None or other.bytes is None else self.bytes + other.bytes,
            words=None if self.words is None or other.words is None else self.words + other.words,
            hits={k: self.hits[k] + other.hits[k] for k in sorted(both)},
        )

    def metrics(self) -> dict[str, float | None]:
        """Every corpus metric the totals define (None where a count is missing or 0).

        ``nll_per_token``
            Token-weighted corpus NLL ``Σ nll / Σ tokens`` (PyTorch ``reduction="mean"``
            over the whole corpus), nats.
        ``bits_per_token``
            The same in bits.
        ``token_perplexity``
            Token-weighted corpus perplexity ``exp(Σ nll / Σ tokens)``.
        ``lm_eval_perplexity``
            lm-evaluation-harness ``perplexity``: ``exp(-mean(loglikelihoods))`` over
            documents, i.e. ``exp(Σ nll / n_sequences)`` (per document, not per token).
        ``hf_mean_perplexity``
            Hugging Face ``evaluate``'s ``mean_perplexity``: the mean over texts of
            ``exp(nll_i / tokens_i)`` (natural base, as ``evaluate`` ≥ 0.4).
        ``byte_perplexity``, ``bits_per_byte``, ``word_perplexity``
            lm-evaluation-harness's ``weighted_perplexity`` and ``bits_per_byte`` with
            ``(loglikelihood, bytes)`` or ``(loglikelihood, words)`` pairs:
            ``exp(Σ nll / Σ bytes)``, ``Σ nll / Σ bytes / ln 2``, ``exp(Σ nll / Σ words)``.
        ``accuracy``, ``top_<k>_accuracy``
            Scored tokens whose label is the top token (among the top k).

        Examples
        --------
        >>> m = PerplexityTotals.from_sequences([2.0, 4.0], [1, 2], bytes=[3, 3]).metrics()
        >>> m["token_perplexity"] == math.exp(2.0), m["lm_eval_perplexity"] == math.exp(3.0)
        (True, True)
        >>> round(m["bits_per_byte"], 12)
        1.442695040889
        """
        out: dict[str, float | None] = {
            "nll_per_token": _ratio(self.nll, self.tokens),
            "bits_per_token": _ratio(self.nll / LN2, self.tokens),
            "token_perplexity": _exp(_ratio(self.nll, self.tokens)),
            "lm_eval_perplexity": _exp(_ratio(self.nll, self.sequences)),
            "hf_mean_perplexity": _ratio(self.perplexity_sum, self.sequences_with_tokens),
            "byte_perplexity": _exp(_ratio(self.nll, self.bytes)),
            "bits_per_byte": _ratio(self.nll / LN2, self.bytes),
            "word_perplexity": _exp(_ratio(self.nll, self.words)),
        }
        for k, hits in sorted(self.hits.items()):
            out["accuracy" if k == 1 else f"top_{k}_accuracy"] = _ratio(hits, self.tokens)
        return out


def sequence_perplexity(nll: ArrayLike, tokens: ArrayLike) -> np.ndarray:
    """``exp(nll_i / tokens_i)`` per sequence; NaN for a sequence with no scored token.

    Examples
    --------
    >>> sequence_perplexity([2.0, 0.0], [2, 0])
    array([2.71828183,        nan])
    """
    nll_ = np.asarray(nll, dtype=np.float64)
    n = np.asarray(tokens, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.exp(np.where(n > 0, nll_ / n, np.nan))


def lm_eval_counts(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    r"""UTF-8 bytes and words of each text, as lm-evaluation-harness counts them.

    Bytes: ``len(text.encode("utf-8"))``; words: ``len(re.split(r"\s+", text))`` (so an
    empty text counts one word, and leading or trailing whitespace one more each), as its
    ``Task.count_bytes`` and ``Task.count_words``.

    Examples
    --------
    >>> lm_eval_counts(["héllo world", ""])
    (array([12,  0]), array([2, 1]))
    """
    items = list(texts)
    n_bytes = np.fromiter((len(s.encode("utf-8")) for s in items), np.int64, len(items))
    n_words = np.fromiter((len(_WHITESPACE.split(s)) for s in items), np.int64, len(items))
    return n_bytes, n_words


def _total(counts: ArrayLike | None, n: int, name: str) -> int | None:
    if counts is None:
        return None
    array = np.asarray(counts)
    if array.shape != (n,):
        raise InputError(name, f"must hold one count per sequence ({n}); got shape {array.shape}")
    if array.dtype.kind == "f" and _whole(array):  # 2.0 is an integer, as in JSON Schema (an FP64 tensor)
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu" or (array.size and array.min() < 0):
        raise InputError(name, "must hold non-negative integers")
    limit = int(np.iinfo(np.int64).max)
    if array.size and int(array.max()) > limit // array.size:  # an int64 sum could wrap: sum exactly
        total = sum(int(v) for v in array.tolist())
        if total > limit:
            raise InputError(name, f"must total at most 2**63 − 1 (int64); got {total}")
        return total
    return int(array.sum())


#: 2**63 as a float64 scalar: compared with a float16 array it promotes the array, where the Python
#: float 2.0**63 would be cast to float16 (past its range: an overflow warning).
_INT64_END = np.float64(2.0**63)


def _whole(array: np.ndarray) -> bool:
    """Whether float `array` holds whole numbers an int64 holds (non-negative ones are checked after)."""
    with np.errstate(invalid="ignore"):  # inf − inf: NaN, not whole
        return bool(np.all((array == np.trunc(array)) & (np.abs(array) < _INT64_END)))


def _ratio(num: float, den: int | None) -> float | None:
    return None if not den else num / den


def _exp(x: float | None) -> float | None:
    if x is None:
        return None
    return math.exp(x) if x < 709.78 else math.inf
