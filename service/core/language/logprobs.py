"""Token log-probabilities as LLM servers return them, parsed into flat arrays.

Pure data transformation over already-decoded JSON (dicts and lists), no I/O. Three shapes:

- OpenAI chat completions: ``choices[i].logprobs.content[]`` entries ``{token, logprob, bytes,
  top_logprobs: [{token, logprob, bytes}]}``; ``logprob = -9999.0`` means "not in the top 20".
- Legacy completions: ``choices[i].logprobs = {tokens, token_logprobs, top_logprobs:
  [{token: logprob}], text_offset}``; with ``echo`` the prompt's first ``token_logprobs`` and
  ``top_logprobs`` entries are ``null`` (lm-evaluation-harness's scoring call).
- vLLM ``prompt_logprobs``: ``[null, {token_id: {logprob, rank, decoded_token}}, ...]`` on each
  completions choice or at the top level of a chat completion, with the prompt's token ids
  (``prompt_token_ids``, sent alongside) naming the realised token of each position.

Whole responses or only their ``logprobs`` (or ``prompt_logprobs``) parts are accepted. Each
sequence becomes a run of positions in :class:`ParsedLogprobs`; metrics are in
:mod:`~service.core.language.logprob_metrics`. Python loops here walk JSON, one comprehension per field.
"""

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from .._typing import BoolArray, FloatArray, IntArray
from ..errors import InputError
from .logprob_formats import (
    SENTINEL,
    SequenceLogprobs,
    floats,
    is_number,
    is_prompt_entry,
    kind_of,
    parse_chat,
    parse_legacy,
    parse_prompt,
)

Use = Literal["auto", "prompt", "sampled"]


@dataclass(frozen=True)
class ParsedLogprobs:
    """Realised-token log-probabilities of S sequences, flattened to n positions.

    Attributes
    ----------
    offsets : ndarray of int, shape (S + 1,)
        Sequence s holds positions ``offsets[s]:offsets[s + 1]``.
    paths : list of str
        Where each sequence was found (``responses[0].choices[1].logprobs``).
    teacher_forced : ndarray of bool, shape (S,)
        The sequence's tokens were given (prompt logprobs, echoed prompts), not sampled.
    logprob : ndarray of float64, shape (n,)
        Natural-log probability of the realised token; NaN where there is none (a prompt's
        first position) or it was reported as the ``-9999.0`` sentinel.
    unconditioned, outside_top : ndarray of bool, shape (n,)
        The position had ``null`` (first prompt token) / the ``-9999.0`` sentinel.
    n_bytes : ndarray of int, shape (n,)
        UTF-8 bytes of the token (``len(bytes)``), -1 where not given.
    alternatives : ndarray of float64, shape (n, A)
        The distinct top-logprob alternatives of each position (the realised token included
        where it is among them), padded with ``-inf``; A = 0 when none were asked for.
    realised_in_alternatives : ndarray of bool, shape (n,)
    rank : ndarray of int, shape (n,)
        vLLM's 1-based vocabulary rank of the realised token, -1 where not given.
    """

    offsets: IntArray
    paths: list[str]
    teacher_forced: BoolArray
    logprob: FloatArray
    unconditioned: BoolArray
    outside_top: BoolArray
    n_bytes: IntArray
    alternatives: FloatArray
    realised_in_alternatives: BoolArray
    rank: IntArray
    styles: list[str]
    bases: list[str]

    @property
    def n_sequences(self) -> int:
        """S."""
        return len(self.paths)

    def position_path(self, position: int, what: Literal["logprob", "top_logprobs"]) -> str:
        """Path of flat `position`'s realised logprob or alternatives, for error messages."""
        return position_path(self.offsets, self.styles, self.bases, position, what)


def parse_logprobs(
    items: Sequence[Any],
    *,
    prompt_token_ids: Sequence[Sequence[int] | None] | None = None,
    use: Use = "auto",
    field: str = "responses",
    names: Sequence[str] | None = None,
) -> ParsedLogprobs:
    """Parse response objects (or their logprobs parts) into one :class:`ParsedLogprobs`.

    Parameters
    ----------
    items : sequence
        Each a chat or completions response, a choice's ``logprobs`` object, a chat
        ``content`` list, or a vLLM ``prompt_logprobs`` list (or ``{"prompt_logprobs": …}``).
    prompt_token_ids : sequence of (sequence of int or None), optional
        Token ids of each prompt that has ``prompt_logprobs``, in order of appearance; a
        response's own ``prompt_token_ids`` (vLLM ``return_token_ids``) is used otherwise.
    use : {"auto", "prompt", "sampled"}, default="auto"
        Where a response has both, score its ``prompt_logprobs`` ("prompt", and "auto") or the
        sampled tokens' ``logprobs`` ("sampled").
    field : str, default="responses"
        Name of `items` in error paths (``responses[0]``).
    names : sequence of str, optional
        The path of each item instead (``["response"]`` for a single one).

    Examples
    --------
    >>> chat = {"choices": [{"logprobs": {"content": [
    ...     {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []}]}}]}
    >>> p = parse_logprobs([chat])
    >>> p.logprob, p.n_bytes, p.paths
    (array([-0.5]), array([2]), ['responses[0].choices[0].logprobs'])
    """
    ids = list(prompt_token_ids) if prompt_token_ids is not None else None
    cursor = [0]
    seqs: list[SequenceLogprobs] = []
    for i, item in enumerate(items):
        seqs.extend(_item(item, names[i] if names is not None else f"{field}[{i}]", use, ids, cursor))
    if ids is not None and cursor[0] != len(ids):
        raise InputError(
            "prompt_token_ids", f"must hold one list per prompt_logprobs ({cursor[0]}); got {len(ids)}"
        )
    if not seqs:
        raise InputError(field, "must hold at least one sequence of logprobs; got none")
    return _combine(seqs)


def _item(item: Any, path: str, use: Use, ids: list[Any] | None, cursor: list[int]) -> list[SequenceLogprobs]:
    """The sequences of one item: a whole response, a logprobs part or a bare list."""
    if isinstance(item, list):
        if item and (item[0] is None or is_prompt_entry(item[0])):
            return [parse_prompt(item, path, _take_ids(None, ids, cursor, path))]
        return [parse_chat(item, path)]
    if not isinstance(item, dict):
        raise InputError(path, f"must be a response object, a logprobs object or a list; got {kind_of(item)}")
    if "choices" in item:
        return _response(item, path, use, ids, cursor)
    if "prompt_logprobs" in item:
        return [
            parse_prompt(
                item["prompt_logprobs"], f"{path}.prompt_logprobs", _take_ids(item, ids, cursor, path)
            )
        ]
    return [_part(item, path)]


def _response(
    item: dict[str, Any], path: str, use: Use, ids: list[Any] | None, cursor: list[int]
) -> list[SequenceLogprobs]:
    choices = item["choices"]
    if not isinstance(choices, list):
        raise InputError(f"{path}.choices", f"must be a list; got {kind_of(choices)}")
    top_prompt = item.get("prompt_logprobs")
    out: list[SequenceLogprobs] = []
    if top_prompt is not None and use != "sampled":  # chat: the prompt is one sequence
        out.append(parse_prompt(top_prompt, f"{path}.prompt_logprobs", _take_ids(item, ids, cursor, path)))
    for j, choice in enumerate(
        sorted(choices, key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    ):
        where = f"{path}.choices[{j}]"
        if not isinstance(choice, dict):
            raise InputError(where, f"must be an object; got {kind_of(choice)}")
        prompt = choice.get("prompt_logprobs")
        if prompt is not None and use != "sampled":
            out.append(
                parse_prompt(prompt, f"{where}.prompt_logprobs", _take_ids(choice, ids, cursor, where))
            )
        elif (top_prompt is None or use == "sampled") and use != "prompt":
            part = choice.get("logprobs")
            if part is None:
                raise InputError(
                    f"{where}.logprobs", "must be present (ask the server for logprobs); got null"
                )
            out.append(_part(part, f"{where}.logprobs"))
    if not out:
        raise InputError(path, f"has no {'prompt_logprobs' if use == 'prompt' else 'logprobs'} to score")
    return out


def _part(part: Any, path: str) -> SequenceLogprobs:
    """A choice's ``logprobs`` object: chat (``content``) or legacy (``token_logprobs``)."""
    if isinstance(part, dict) and "content" in part:
        if not isinstance(part["content"], list):
            raise InputError(f"{path}.content", f"must be a list; got {kind_of(part['content'])}")
        return parse_chat(part["content"], f"{path}.content", seq_path=path)
    if isinstance(part, dict) and "token_logprobs" in part:
        return parse_legacy(part, path)
    raise InputError(path, "must hold `content` (chat), `token_logprobs` (completions) or `prompt_logprobs`")


def _take_ids(
    holder: dict[str, Any] | None, ids: list[Any] | None, cursor: list[int], path: str
) -> Sequence[int]:
    """The next prompt's token ids: sent alongside (in order), or the response's own."""
    if ids is not None:
        if cursor[0] >= len(ids):
            raise InputError(
                "prompt_token_ids", f"must hold a list for each prompt_logprobs; {path} has none"
            )
        found = ids[cursor[0]]
        cursor[0] += 1
        if found is not None:
            return list(found)
    own = None if holder is None else holder.get("prompt_token_ids")
    if own is None:
        raise InputError(
            "prompt_token_ids",
            f"must be sent to score {path}'s prompt_logprobs (vLLM does not mark the realised token)",
        )
    if not isinstance(own, list):
        raise InputError(f"{path}.prompt_token_ids", f"must be a list of token ids; got {kind_of(own)}")
    return list(own)


@dataclass
class FlatLogprobs:
    """Every sequence's fields concatenated, as JSON gave them (lists) or already as arrays.

    What :func:`combine` turns into a :class:`ParsedLogprobs`. A decoder that reads a body's
    logprobs straight into flat lists (``service.api.formats.chat_logprobs``) builds it without
    a :class:`SequenceLogprobs` per sequence. ``lengths[s]`` positions belong to sequence s;
    ``counts[j]`` of ``alt`` / ``alt_tokens`` belong to position j.
    """

    lengths: list[int]
    paths: list[str]
    styles: list[str]
    bases: list[str]
    teacher_forced: list[bool]
    first_null: list[bool]
    logprob: Any
    tokens: list[Any]
    counts: list[int]
    alt: Any
    alt_tokens: list[Any]
    n_bytes: list[int]
    rank: list[Any]


def _combine(seqs: list[SequenceLogprobs]) -> ParsedLogprobs:
    """Concatenate every sequence's lists, then :func:`combine` them."""
    flat = FlatLogprobs(
        lengths=[len(s.logprob) for s in seqs],
        paths=[s.path for s in seqs],
        styles=[s.style for s in seqs],
        bases=[s.base for s in seqs],
        teacher_forced=[s.teacher_forced for s in seqs],
        first_null=[s.first_null for s in seqs],
        logprob=_chain(s.logprob for s in seqs),
        tokens=_chain(s.tokens for s in seqs),
        counts=_chain(s.counts for s in seqs),
        alt=_chain(s.alt for s in seqs),
        alt_tokens=_chain(s.alt_tokens for s in seqs),
        n_bytes=_chain(s.n_bytes or [-1] * len(s.logprob) for s in seqs),
        rank=_chain(s.rank or [-1] * len(s.logprob) for s in seqs),
    )
    return combine(flat)


def combine(flat: FlatLogprobs) -> ParsedLogprobs:
    """Convert each field of `flat` once, then check the whole (every error names a JSON path).

    Examples
    --------
    >>> flat = FlatLogprobs([2], ["s"], ["chat"], ["s.content"], [False], [False], [-0.5, -1.0],
    ...     ["a", "b"], [1, 0], [-0.5], ["a"], [1, 1], [-1, -1])
    >>> p = combine(flat)
    >>> p.logprob, p.realised_in_alternatives
    (array([-0.5, -1. ]), array([ True, False]))
    """
    offsets = np.concatenate([[0], np.cumsum(np.asarray(flat.lengths, np.int64))]).astype(np.int64)
    styles, bases = flat.styles, flat.bases

    def where(i: int, what: Literal["logprob", "top_logprobs"]) -> str:
        return position_path(offsets, styles, bases, i, what)

    lp = _numbers(flat.logprob, where, "logprob")
    first = np.zeros(lp.size, bool)
    first[offsets[:-1][np.asarray(flat.first_null, bool)]] = True
    null = np.isnan(lp) & ~first
    if null.any():
        i = int(np.flatnonzero(null)[0])
        raise InputError(
            where(i, "logprob"), "must be a number; got null (only a prompt's first position may be)"
        )
    counts = np.asarray(flat.counts, np.int64)
    rows = np.repeat(np.arange(lp.size), counts)
    alt = _numbers(flat.alt, lambda k, what: where(int(rows[k]), what), "top_logprobs")
    if np.isnan(alt).any():
        raise InputError(
            where(int(rows[np.flatnonzero(np.isnan(alt))[0]]), "top_logprobs"), "must hold numbers; got null"
        )
    tokens = _objects(flat.tokens)
    alt_tokens = _objects(flat.alt_tokens)
    realised_in = np.zeros(lp.size, bool)
    realised_in[rows[alt_tokens == tokens[rows]]] = True
    _check_realised(lp, alt, counts, realised_in, where)
    width = int(counts.max()) if counts.size else 0
    alternatives = np.full((lp.size, width), -np.inf)
    alternatives[rows, np.arange(alt.size) - np.repeat(np.cumsum(counts) - counts, counts)] = alt
    outside = lp == SENTINEL
    try:
        rank = np.array(flat.rank, np.int64)
    except (TypeError, ValueError, OverflowError):
        prompt = next((p for p, s in zip(flat.paths, styles, strict=True) if s == "prompt"), flat.paths[0])
        raise InputError(prompt, "must give each `rank` as an integer") from None
    return ParsedLogprobs(
        offsets=offsets,
        paths=flat.paths,
        teacher_forced=np.array(flat.teacher_forced, bool),
        logprob=np.where(outside, np.nan, lp),
        unconditioned=first,
        outside_top=outside,
        n_bytes=np.array(flat.n_bytes, np.int64),
        alternatives=alternatives,
        realised_in_alternatives=realised_in,
        rank=rank,
        styles=styles,
        bases=bases,
    )


def position_path(
    offsets: IntArray, styles: list[str], bases: list[str], i: int, what: Literal["logprob", "top_logprobs"]
) -> str:
    """The JSON path of flat position `i`'s realised logprob or alternatives."""
    s = int(np.searchsorted(offsets, i, side="right")) - 1
    j, base = i - int(offsets[s]), bases[s]
    if styles[s] == "chat":
        return f"{base}[{j}].{what}"
    if styles[s] == "legacy":
        return f"{base}.{'token_logprobs' if what == 'logprob' else 'top_logprobs'}[{j}]"
    return f"{base}[{j}]"


def _chain(lists: Iterable[list[Any]]) -> list[Any]:
    return list(itertools.chain.from_iterable(lists))


def _objects(values: list[Any]) -> np.ndarray:
    """A 1-D object array of `values` (never a 2-D one, whatever the values are)."""
    return np.fromiter(values, dtype=object, count=len(values))


def _numbers(values: Any, where: Callable[[int, Any], str], what: str) -> FloatArray:
    """`values` as float64 (``null`` as NaN), or an InputError at the first value that is no number."""
    try:
        return floats(values)
    except (TypeError, ValueError):
        bad = next(k for k, v in enumerate(values) if v is not None and not is_number(v))
        raise InputError(where(bad, what), f"must be a number; got {kind_of(values[bad])}") from None


def _check_realised(
    lp: FloatArray,
    alt: FloatArray,
    counts: IntArray,
    realised_in: BoolArray,
    where: Callable[[int, Any], str],
) -> None:
    """The realised token must be among the alternatives when its logprob ranks it there.

    Alternatives are the top of the distribution: a realised token missing from them with a
    logprob above the smallest of them contradicts the list (1e-6 of slack for printing).
    """
    has = counts > 0
    if not has.any():
        return
    smallest = np.full(lp.size, np.inf)
    smallest[has] = np.minimum.reduceat(alt, (np.cumsum(counts) - counts)[has])
    bad = has & ~realised_in & (lp > smallest + 1e-6) & (lp != SENTINEL)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            where(i, "top_logprobs"),
            f"must contain the realised token: its logprob {lp[i]} is above the smallest alternative "
            f"{smallest[i]}",
        )
