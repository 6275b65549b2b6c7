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
:mod:`~service.core.logprob_metrics`. Python loops here walk JSON, one comprehension per field.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._typing import BoolArray, FloatArray, IntArray
from .errors import InputError
from .logprob_formats import (
    SENTINEL,
    SequenceLogprobs,
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
        s = int(np.searchsorted(self.offsets, position, side="right")) - 1
        j, base = position - int(self.offsets[s]), self.bases[s]
        if self.styles[s] == "chat":
            return f"{base}[{j}].{what}"
        if self.styles[s] == "legacy":
            return f"{base}.{'token_logprobs' if what == 'logprob' else 'top_logprobs'}[{j}]"
        return f"{base}[{j}]"


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
    return list(own)


def _combine(seqs: list[SequenceLogprobs]) -> ParsedLogprobs:
    lengths = np.array([s.logprob.size for s in seqs], np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    counts = np.concatenate([s.counts for s in seqs])
    width = int(counts.max()) if counts.size else 0
    flat = np.concatenate([s.alt for s in seqs])
    alternatives = np.full((counts.size, width), -np.inf)
    rows = np.repeat(np.arange(counts.size), counts)
    cols = np.arange(flat.size) - np.repeat(np.cumsum(counts) - counts, counts)
    alternatives[rows, cols] = flat
    lp = np.concatenate([s.logprob for s in seqs])
    first = np.zeros(lp.size, bool)
    first[offsets[:-1][[s.first_null for s in seqs]]] = True
    outside = lp == SENTINEL
    lp = np.where(outside, np.nan, lp)
    return ParsedLogprobs(
        offsets=offsets,
        paths=[s.path for s in seqs],
        teacher_forced=np.array([s.teacher_forced for s in seqs], bool),
        logprob=lp,
        unconditioned=first,
        outside_top=outside,
        n_bytes=np.concatenate([s.n_bytes for s in seqs]),
        alternatives=alternatives,
        realised_in_alternatives=np.concatenate([s.realised_in for s in seqs]),
        rank=np.concatenate([s.rank for s in seqs]),
        styles=[s.style for s in seqs],
        bases=[s.base for s in seqs],
    )


# --- checks --------------------------------------------------------------------------------
