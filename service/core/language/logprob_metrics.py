"""NLL, perplexities, top-1 accuracy, calibration and entropy bounds from parsed server logprobs.

Works on :class:`~service.core.language.logprobs.ParsedLogprobs`, vectorised over all positions of all
sequences. Which positions count is set per sequence by a slice ``[start, stop)`` (Python
semantics: negative values count from the end), e.g. ``[context_length, -1]`` for
lm-evaluation-harness's echoed scoring call (``token_logprobs[ctxlen:-1]``).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from .._typing import BoolArray, FloatArray, IntArray
from ..calibration import Convention, calibration_report
from ..distribution import Distribution
from ..errors import InputError
from .logprobs import ParsedLogprobs
from .perplexity import PerplexityTotals

#: Logprobs above this are not log-probabilities (servers print ``0.0`` or tiny negatives at most).
MAX_LOGPROB = 1e-4
#: Alternatives may sum past 1 by this much (printing), no more.
MASS_TOLERANCE = 1e-3


@dataclass(frozen=True)
class LogprobScores:
    """What the realised tokens' logprobs (and their alternatives) say about the model.

    Attributes
    ----------
    totals : PerplexityTotals
        Over scored positions (realised logprob known): NLL, tokens, bytes where every scored
        token had ``bytes``, top-1 hits where every scored position had alternatives or a rank.
    sequence_nll, sequence_tokens, sequence_outside_top : ndarray, shape (S,)
        Per-sequence NLL sums (nats), scored tokens, and sentinel (``-9999.0``) tokens in range.
    n_outside_top, n_unconditioned : int
        Positions in range left out of the NLL: reported as outside the top (sentinel), or a
        prompt's first token (``null``: nothing to condition on).
    nll_lower_bound : float or None
        Σ NLL with each sentinel token at the least NLL it can have (minus the smaller of its
        smallest alternative's logprob and the log of the mass left outside them); None when
        there are no sentinels or one of them had no alternatives to bound it.
    confidence, correct : ndarray, shape (m,)
        Top-1 probability and whether the realised token was top-1, at the m scored positions
        where the top-1 token is known.
    entropy_lower, entropy_upper : ndarray, shape (m2,), entropy_upper possibly None
        Per position with alternatives: entropy (nats) of the truncated distribution — the
        known tokens plus one "rest" bucket holding the missing mass — which is a **lower
        bound** on the true entropy (merging outcomes never raises entropy); with a vocabulary
        size V, the rest spread evenly over the V - n unseen tokens gives the upper bound.
    n_teacher_forced, n_sampled : int
        Scored tokens from given text (prompt logprobs) and from sampled output.
    sequence_bytes, sequence_words, sequence_hits : ndarray of int64, shape (S,), or None
        Per sequence: the bytes and words behind ``totals.bytes`` / ``totals.words`` and the
        top-1 hits behind ``totals.hits[1]`` (None where the totals have none); what a
        :class:`~service.core.language.perplexity_series.PerplexitySeries` observes.
    """

    totals: PerplexityTotals
    sequence_nll: FloatArray
    sequence_tokens: IntArray
    sequence_outside_top: IntArray
    n_outside_top: int
    n_unconditioned: int
    nll_lower_bound: float | None
    confidence: FloatArray
    correct: BoolArray
    entropy_lower: FloatArray
    entropy_upper: FloatArray | None
    n_teacher_forced: int
    n_sampled: int
    sequence_bytes: IntArray | None = None
    sequence_words: IntArray | None = None
    sequence_hits: IntArray | None = None


def score_logprobs(
    parsed: ParsedLogprobs,
    *,
    ranges: Sequence[Sequence[int | None]] | None = None,
    vocab_size: int | None = None,
    n_bytes: ArrayLike | None = None,
    n_words: ArrayLike | None = None,
) -> LogprobScores:
    """Score the realised tokens of every sequence of `parsed`.

    Parameters
    ----------
    parsed : ParsedLogprobs
    ranges : array-like of int or None, shape (S, 2), optional
        ``[start, stop)`` positions of each sequence to score, Python slice semantics
        (negative from the end; ``None`` for stop as the end). Default: all positions.
    vocab_size : int, optional
        V, for the upper bound of the truncated entropy.
    n_bytes, n_words : array-like of int, shape (S,), optional
        Bytes / words of each sequence's scored text (lm-evaluation-harness's counts), for
        ``byte_perplexity``, ``bits_per_byte`` and ``word_perplexity``; bytes default to the
        sum of the tokens' ``bytes`` when every scored token has them.

    Examples
    --------
    >>> from service.core.language.logprobs import parse_logprobs
    >>> legacy = {"tokens": ["a", "b", "c"], "token_logprobs": [None, -1.0, -2.0]}
    >>> s = score_logprobs(parse_logprobs([legacy]))
    >>> s.sequence_nll, s.sequence_tokens, s.n_unconditioned
    (array([3.]), array([2]), 1)
    """
    n_seq = parsed.n_sequences
    lengths = np.diff(parsed.offsets)
    seq_id = np.repeat(np.arange(n_seq), lengths)
    in_range = _in_range(parsed, ranges, lengths, seq_id)
    lp = parsed.logprob
    _check_at_most_zero(parsed, lp, parsed.alternatives)
    scored = in_range & ~parsed.unconditioned & ~parsed.outside_top
    nll = np.where(scored, -np.nan_to_num(lp), 0.0)
    seq_nll: FloatArray = np.bincount(seq_id, weights=nll, minlength=n_seq).astype(np.float64)
    seq_tokens = np.bincount(seq_id, weights=scored, minlength=n_seq).astype(np.int64)
    outside = in_range & parsed.outside_top
    seq_outside = np.bincount(seq_id, weights=outside, minlength=n_seq).astype(np.int64)

    alt = parsed.alternatives
    n_alt = np.count_nonzero(alt > -np.inf, axis=1) if alt.size else np.zeros(lp.size, np.int64)
    top1_known, confidence, correct = _top1(parsed, lp, alt, n_alt)
    mass, plogp = _known_mass(parsed, lp, alt)
    with_alt = in_range & (n_alt > 0)
    _check_mass(parsed, mass, with_alt)
    rest = np.clip(1.0 - mass, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rest_term = np.where(rest > 0, rest * np.log(rest), 0.0)
    entropy_lower = np.maximum(-(plogp + rest_term), 0.0)[with_alt]
    entropy_upper = None
    if vocab_size is not None:
        unseen = vocab_size - (n_alt + ~parsed.realised_in_alternatives)
        if (unseen[with_alt] < 0).any():
            raise InputError(
                "vocab_size", f"must be at least the tokens seen at one position; got {vocab_size}"
            )
        with np.errstate(divide="ignore"):
            spread = np.where(rest > 0, rest * np.log(np.maximum(unseen, 1)), 0.0)
        entropy_upper = entropy_lower + spread[with_alt]

    calibrated = scored & top1_known
    hits = {1: np.bincount(seq_id, weights=calibrated & correct, minlength=n_seq)} if calibrated.any() else {}
    if hits and not np.array_equal(calibrated, scored):
        hits = {}  # accuracy needs every scored position's top-1: a partial count would mislead
    seq_bytes = n_bytes if n_bytes is not None else _token_bytes(parsed, scored, seq_id, n_seq)
    seq_hits = {k: v.astype(np.int64) for k, v in hits.items()}
    totals = PerplexityTotals.from_sequences(
        seq_nll, seq_tokens, bytes=seq_bytes, words=n_words, hits=seq_hits
    )
    return LogprobScores(
        totals=totals,
        sequence_nll=seq_nll,
        sequence_tokens=seq_tokens,
        sequence_outside_top=seq_outside,
        n_outside_top=int(outside.sum()),
        n_unconditioned=int((in_range & parsed.unconditioned).sum()),
        nll_lower_bound=_nll_lower_bound(totals.nll, alt, mass, n_alt, outside),  # (sum: +inf past the range)
        confidence=confidence[calibrated],
        correct=correct[calibrated],
        entropy_lower=entropy_lower,
        entropy_upper=entropy_upper,
        n_teacher_forced=int(seq_tokens[parsed.teacher_forced].sum()),
        n_sampled=int(seq_tokens[~parsed.teacher_forced].sum()),
        sequence_bytes=None if totals.bytes is None else np.asarray(seq_bytes, np.int64).reshape(-1),
        sequence_words=None if totals.words is None else np.asarray(n_words, np.int64).reshape(-1),
        sequence_hits=seq_hits.get(1),
    )


def top1_calibration(confidence: FloatArray, correct: BoolArray) -> dict[str, float]:
    """Calibration of the top-1 token: ECE with 15 equal-width bins and with 10 equal-mass bins.

    ``ece`` bins confidences in 15 intervals ``(i/15, (i+1)/15]`` (Guo et al.'s layout);
    ``ece_equal_mass_10`` in 10 equal-mass bins, as HELM reports calibration. Both weight
    bins by their share of tokens (l1). Also the mean confidence and the accuracy.

    Examples
    --------
    >>> c = top1_calibration(np.array([0.9, 0.9, 0.6, 0.6]), np.array([True, True, True, False]))
    >>> round(c["ece"], 6), c["accuracy"]
    (0.1, 0.75)
    """
    labels = correct.astype(np.int64)
    dist = Distribution.from_probs(np.clip(confidence, 0.0, 1.0), eps=0.0)
    metrics = ("ece", "mce", "accuracy")
    uniform = calibration_report(
        labels, dist, Convention(n_bins=15, target="positive_class"), metrics=metrics
    )
    mass = calibration_report(
        labels, dist, Convention(binning="quantile", n_bins=10, target="positive_class"), metrics=("ece",)
    )
    return {
        "ece": uniform.scalars["ece"],
        "mce": uniform.scalars["mce"],
        "ece_equal_mass_10": mass.scalars["ece"],
        "mean_confidence": float(confidence.mean()),
        "accuracy": float(correct.mean()),
    }


def _in_range(
    parsed: ParsedLogprobs, ranges: Sequence[Sequence[int | None]] | None, lengths: IntArray, seq_id: IntArray
) -> BoolArray:
    """Positions inside each sequence's ``[start, stop)``, slice semantics."""
    if ranges is None:
        return np.ones(seq_id.size, bool)
    r = np.asarray(ranges, dtype=object)
    if r.shape != (lengths.size, 2):
        raise InputError(
            "ranges", f"must hold one [start, stop] per sequence ({lengths.size}); got shape {r.shape}"
        )
    start = np.array([0 if v is None else v for v in r[:, 0]], np.int64)
    stop = np.array([n if v is None else v for v, n in zip(r[:, 1], lengths, strict=True)], np.int64)
    start = np.clip(np.where(start < 0, start + lengths, start), 0, lengths)
    stop = np.clip(np.where(stop < 0, stop + lengths, stop), 0, lengths)
    position = np.arange(seq_id.size) - parsed.offsets[seq_id]
    return (position >= start[seq_id]) & (position < stop[seq_id])


def _check_at_most_zero(parsed: ParsedLogprobs, lp: FloatArray, alt: FloatArray) -> None:
    bad = lp > MAX_LOGPROB
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(parsed.position_path(i, "logprob"), f"must be a log-probability ≤ 0; got {lp[i]}")
    if alt.size and (alt > MAX_LOGPROB).any():
        i = int(np.flatnonzero((alt > MAX_LOGPROB).any(axis=1))[0])
        raise InputError(
            parsed.position_path(i, "top_logprobs"), f"must hold log-probabilities ≤ 0; got {alt[i].max()}"
        )


def _top1(
    parsed: ParsedLogprobs, lp: FloatArray, alt: FloatArray, n_alt: IntArray
) -> tuple[BoolArray, FloatArray, BoolArray]:
    """Where the top-1 token is known, its probability, and whether it is the realised token.

    With vLLM's rank: top-1 iff rank 1, and the top-1 entry is known when the realised token is
    it or another entry sits beside it. Otherwise the alternatives are the top: the realised
    token is top-1 iff its logprob is at least their maximum (ties count for it, as
    lm-evaluation-harness's ``is_greedy``).
    """
    ranked = parsed.rank > 0
    top = alt.max(axis=1) if alt.size else np.full(lp.size, -np.inf)
    known_lp = ~np.isnan(lp)
    best = np.where(known_lp, np.fmax(top, lp), top)
    known = np.where(ranked, (parsed.rank == 1) | (n_alt >= 2), n_alt > 0)
    correct = np.where(ranked, parsed.rank == 1, known_lp & (lp >= top))
    return known, np.exp(np.minimum(best, 0.0)), correct


def _known_mass(parsed: ParsedLogprobs, lp: FloatArray, alt: FloatArray) -> tuple[FloatArray, FloatArray]:
    """``Σ p`` and ``Σ p log p`` over the alternatives and the realised token (if not among them)."""
    p = np.exp(alt)
    mass = p.sum(axis=1) if alt.size else np.zeros(lp.size)
    with np.errstate(invalid="ignore"):
        plogp = np.where(p > 0, p * alt, 0.0).sum(axis=1) if alt.size else np.zeros(lp.size)
    extra = ~parsed.realised_in_alternatives & ~np.isnan(lp)
    own = np.exp(np.where(extra, lp, -np.inf))
    with np.errstate(invalid="ignore"):
        return mass + own, plogp + np.where(own > 0, own * np.nan_to_num(lp), 0.0)


def _check_mass(parsed: ParsedLogprobs, mass: FloatArray, where: BoolArray) -> None:
    bad = where & (mass > 1 + MASS_TOLERANCE)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            parsed.position_path(i, "top_logprobs"),
            f"must hold probabilities summing to at most 1; got {mass[i]:.6g}",
        )


def _token_bytes(parsed: ParsedLogprobs, scored: BoolArray, seq_id: IntArray, n_seq: int) -> IntArray | None:
    """Σ of the tokens' ``bytes`` lengths per sequence, when every scored token has them."""
    if not scored.any() or (parsed.n_bytes[scored] < 0).any():
        return None
    return np.bincount(seq_id, weights=np.where(scored, parsed.n_bytes, 0), minlength=n_seq).astype(np.int64)


def _nll_lower_bound(
    nll: float, alt: FloatArray, mass: FloatArray, n_alt: IntArray, outside: BoolArray
) -> float | None:
    """Σ NLL plus, per sentinel token, ``-min(min alternative, log(rest))``: the least it can add."""
    if not outside.any() or (n_alt[outside] == 0).any():
        return None
    smallest = np.where(alt[outside] > -np.inf, alt[outside], np.inf).min(axis=1)
    rest = np.clip(1.0 - mass[outside], 0.0, 1.0)
    with np.errstate(divide="ignore"):
        bound = np.minimum(smallest, np.log(rest))
    return nll - float(bound.sum())
