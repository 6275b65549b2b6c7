"""Parsers of each server's logprobs shape into one sequence of flat arrays, with their checks.

Used by :func:`~service.core.language.logprobs.parse_logprobs`; every error names the JSON path of the
offending value (``responses[0].choices[1].logprobs.content[3].top_logprobs``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._typing import FloatArray
from ..errors import InputError

#: OpenAI's stand-in logprob for a token outside the top 20.
SENTINEL = -9999.0


@dataclass
class SequenceLogprobs:
    """One sequence as Python lists, straight from the JSON; converted to arrays once for all.

    ``tokens[j]`` identifies the realised token of position j and ``alt_tokens`` the
    alternatives (``counts[j]`` of them at position j), so membership is one vectorised compare.
    """

    path: str
    teacher_forced: bool
    style: str  # "chat", "legacy" or "prompt": how a position's path is spelled
    base: str  # the path positions are indexed under
    first_null: bool  # position 0 may be null (a prompt's first token)
    logprob: list[Any]
    tokens: list[Any]
    counts: list[int]
    alt: list[Any]
    alt_tokens: list[Any]
    n_bytes: list[int] | None = None
    rank: list[Any] | None = None


def parse_chat(content: list[Any], path: str, seq_path: str | None = None) -> SequenceLogprobs:
    """Chat ``content`` entries: every token sampled, alternatives as a list of objects."""
    try:
        lp = [e["logprob"] for e in content]
        tokens = [e["token"] for e in content]
        n_bytes = [-1 if (b := e.get("bytes")) is None else _byte_count(b) for e in content]
        tops = [e.get("top_logprobs") or () for e in content]
        flat = [a for top in tops for a in top]
        alt = [a["logprob"] for a in flat]
        alt_tokens = [a["token"] for a in flat]
        counts = [len(top) for top in tops]
    except (KeyError, TypeError, AttributeError):
        _locate_chat(content, path)
        raise InputError(path, "must be a list of {token, logprob, bytes, top_logprobs} objects") from None
    return SequenceLogprobs(
        seq_path or path, False, "chat", path, False, lp, tokens, counts, alt, alt_tokens, n_bytes
    )


def parse_legacy(part: dict[str, Any], path: str) -> SequenceLogprobs:
    """Legacy completions ``logprobs``: parallel lists; an echoed prompt starts with ``null``."""
    tokens, lps, tops = part.get("tokens"), part.get("token_logprobs"), part.get("top_logprobs")
    for name, values in (("tokens", tokens), ("token_logprobs", lps), ("top_logprobs", tops)):
        if values is not None and not isinstance(values, list):
            raise InputError(f"{path}.{name}", f"must be a list; got {kind_of(values)}")
    if not isinstance(lps, list):
        raise InputError(f"{path}.token_logprobs", f"must be a list; got {kind_of(lps)}")
    n = len(lps)
    for name, values in (
        ("tokens", tokens),
        ("top_logprobs", tops),
        ("text_offset", part.get("text_offset")),
    ):
        if isinstance(values, list) and len(values) != n:
            raise InputError(
                f"{path}.{name}", f"must have one entry per token_logprobs entry ({n}); got {len(values)}"
            )
    if tops is None:
        tops = [None] * n
    elif n > 1 and None in tops[1:] and any(t is not None for t in tops):
        j = tops.index(None, 1)
        raise InputError(f"{path}.top_logprobs[{j}]", "must not be null after the first position")
    bad = next((j for j, top in enumerate(tops) if top is not None and not isinstance(top, dict)), None)
    if bad is not None:
        raise InputError(
            f"{path}.top_logprobs[{bad}]", f"must be an object {{token: logprob}}; got {kind_of(tops[bad])}"
        )
    if tokens is None:
        if any(tops):
            raise InputError(f"{path}.tokens", "must be present to match top_logprobs to the realised tokens")
        tokens = [None] * n
    first_null = n > 0 and lps[0] is None
    return SequenceLogprobs(
        path,
        first_null,  # an echoed prompt: given, not sampled
        "legacy",
        path,
        first_null,
        lps,
        tokens,
        [len(top) if top else 0 for top in tops],
        [v for top in tops if top for v in top.values()],
        [k for top in tops if top for k in top],
    )


def parse_prompt(entries: Any, path: str, ids: Sequence[Any]) -> SequenceLogprobs:
    """The vLLM ``prompt_logprobs``: ``null``, then ``{token_id: {logprob, rank, decoded_token}}``."""
    if not isinstance(entries, list):
        raise InputError(path, f"must be a list; got {kind_of(entries)}")
    if len(ids) != len(entries):
        raise InputError(
            path, f"must have one entry per prompt token ({len(ids)} prompt_token_ids); got {len(entries)}"
        )
    if len(entries) > 1 and None in entries[1:]:
        raise InputError(f"{path}[{entries.index(None, 1)}]", "must not be null after the first position")
    bad = next((j for j, e in enumerate(entries) if e is not None and not isinstance(e, dict)), None)
    if bad is not None:
        raise InputError(
            f"{path}[{bad}]",
            f"must be an object {{token_id: {{logprob, rank}}}}; got {kind_of(entries[bad])}",
        )
    keys = [str(t) for t in ids]
    missing = next(
        (j for j, (e, k) in enumerate(zip(entries, keys, strict=True)) if e is not None and k not in e), None
    )
    if missing is not None:
        raise InputError(
            f"{path}[{missing}]",
            f"must contain the prompt token {keys[missing]} (prompt_token_ids[{missing}]): "
            "vLLM always includes it",
        )
    try:
        own = [e[k] if e is not None else None for e, k in zip(entries, keys, strict=True)]
        lp = [o["logprob"] if o is not None else None for o in own]
        rank = [(o.get("rank") or -1) if o is not None else -1 for o in own]
        alt = [v["logprob"] for e in entries if e for v in e.values()]
    except (KeyError, TypeError, AttributeError):
        bad = next(j for j, e in enumerate(entries) if e and not all(_is_logprob_obj(v) for v in e.values()))
        raise InputError(f"{path}[{bad}]", "must map token ids to {logprob: number, rank: int}") from None
    return SequenceLogprobs(
        path,
        True,
        "prompt",
        path,
        bool(entries) and entries[0] is None,
        lp,
        keys,
        [len(e) if e else 0 for e in entries],
        alt,
        [k for e in entries if e for k in e],
        rank=rank,
    )


def _byte_count(value: Any) -> int:
    """The length of a token's ``bytes`` list; a TypeError for anything else (located by the caller)."""
    if not isinstance(value, list):
        raise TypeError("bytes must be a list")
    return len(value)


def _locate_chat(content: list[Any], path: str) -> None:
    """Raise an InputError at the first malformed chat entry (called when parsing failed)."""
    for j, e in enumerate(content):
        where = f"{path}[{j}]"
        if not isinstance(e, dict):
            raise InputError(
                where, f"must be an object {{token, logprob, bytes, top_logprobs}}; got {kind_of(e)}"
            )
        for key in ("token", "logprob"):
            if key not in e:
                raise InputError(f"{where}.{key}", "is required")
        if not (e["logprob"] is None or is_number(e["logprob"])):
            raise InputError(f"{where}.logprob", f"must be a number; got {kind_of(e['logprob'])}")
        if e.get("bytes") is not None and not isinstance(e["bytes"], list):
            raise InputError(f"{where}.bytes", f"must be a list of byte values; got {kind_of(e['bytes'])}")
        top = e.get("top_logprobs") or []
        if not isinstance(top, list):
            raise InputError(f"{where}.top_logprobs", f"must be a list; got {kind_of(top)}")
        for a, alt in enumerate(top):
            if not isinstance(alt, dict) or "token" not in alt or not is_number(alt.get("logprob")):
                raise InputError(f"{where}.top_logprobs[{a}]", "must be an object {token, logprob: number}")


def floats(values: list[Any]) -> FloatArray:
    """A float64 array of JSON numbers (``null`` becomes NaN); ValueError on anything else."""
    array = np.array(values)
    if array.ndim == 1 and array.dtype.kind in "fiu":
        return array.astype(np.float64, copy=False)
    if array.size == 0:
        return np.empty(0)
    if array.ndim == 1 and array.dtype == object and all(v is None or is_number(v) for v in values):
        return np.array([np.nan if v is None else v for v in values], np.float64)
    raise ValueError("not a flat list of numbers")


def is_number(value: Any) -> bool:
    """A JSON number (not a boolean)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_logprob_obj(value: Any) -> bool:
    return isinstance(value, dict) and is_number(value.get("logprob"))


def is_prompt_entry(value: Any) -> bool:
    """A vLLM prompt_logprobs entry: an object keyed by token ids."""
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def kind_of(value: Any) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    return "null" if value is None else type(value).__name__
