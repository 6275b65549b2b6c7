"""Parsers of each server's logprobs shape into one sequence of flat arrays, with their checks.

Used by :func:`~service.core.logprobs.parse_logprobs`; every error names the JSON path of the
offending value (``responses[0].choices[1].logprobs.content[3].top_logprobs``).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._typing import BoolArray, FloatArray, IntArray
from .errors import InputError

#: OpenAI's stand-in logprob for a token outside the top 20.
SENTINEL = -9999.0


@dataclass
class SequenceLogprobs:
    """One sequence's realised logprobs, alternatives (flat, `counts` per position) and ranks."""

    path: str
    teacher_forced: bool
    logprob: FloatArray
    n_bytes: IntArray
    alt: FloatArray  # flat alternatives
    counts: IntArray  # alternatives per position
    realised_in: BoolArray
    rank: IntArray
    first_null: bool
    style: str
    base: str


def parse_chat(content: list[Any], path: str, seq_path: str | None = None) -> SequenceLogprobs:
    """Chat ``content`` entries: every token sampled, alternatives as a list of objects."""
    try:
        lp = _floats([e["logprob"] for e in content])
        n_bytes = np.fromiter((-1 if e.get("bytes") is None else len(e["bytes"]) for e in content), np.int64)
        tops = [e.get("top_logprobs") or () for e in content]
        alt = _floats([a["logprob"] for top in tops for a in top])
        realised_in = np.fromiter(
            (any(a["token"] == e["token"] for a in top) for e, top in zip(content, tops, strict=True)), bool
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        _locate_chat(content, path)
        raise
    counts = np.fromiter(map(len, tops), np.int64, len(tops))
    _no_nulls(lp, path, "logprob", allow_first=False)
    _no_nulls(alt, path, "top_logprobs", allow_first=False, counts=counts)
    seq = SequenceLogprobs(
        seq_path or path,
        False,
        lp,
        n_bytes,
        alt,
        counts,
        realised_in,
        np.full(lp.size, -1),
        False,
        "chat",
        path,
    )
    _check_realised(seq, path, "top_logprobs")
    return seq


def parse_legacy(part: dict[str, Any], path: str) -> SequenceLogprobs:
    """Legacy completions ``logprobs``: parallel lists; an echoed prompt starts with ``null``."""
    tokens, lps = part.get("tokens"), part.get("token_logprobs")
    tops = part.get("top_logprobs")
    for name, values in (("tokens", tokens), ("token_logprobs", lps), ("top_logprobs", tops)):
        if values is not None and not isinstance(values, list):
            raise InputError(f"{path}.{name}", f"must be a list; got {kind_of(values)}")
    assert isinstance(lps, list)
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
    try:
        lp = _floats(lps)
    except (TypeError, ValueError):
        bad = next(j for j, v in enumerate(lps) if v is not None and not _is_number(v))
        raise InputError(
            f"{path}.token_logprobs[{bad}]", f"must be a number; got {kind_of(lps[bad])}"
        ) from None
    first_null = bool(n) and lps[0] is None
    _no_nulls(lp, path + ".token_logprobs", "", allow_first=True)
    tops = tops or [None] * n
    if tokens is None and any(t for t in tops):
        raise InputError(f"{path}.tokens", "must be present to match top_logprobs to the realised tokens")
    for j, top in enumerate(tops):
        if top is not None and not isinstance(top, dict):
            raise InputError(
                f"{path}.top_logprobs[{j}]", f"must be an object {{token: logprob}}; got {kind_of(top)}"
            )
        if top is None and j > 0 and any(t is not None for t in tops):
            raise InputError(f"{path}.top_logprobs[{j}]", "must not be null after the first position")
    try:
        alt = _floats([v for top in tops if top for v in top.values()])
    except (TypeError, ValueError):
        bad = next(j for j, top in enumerate(tops) if top and not all(map(_is_number, top.values())))
        raise InputError(f"{path}.top_logprobs[{bad}]", "must map tokens to numbers") from None
    counts = np.fromiter((len(top) if top else 0 for top in tops), np.int64, n)
    realised_in = np.fromiter(
        (bool(top) and tokens[j] in top for j, top in enumerate(tops)) if tokens is not None else (),
        bool,
        n if tokens is not None else 0,
    )
    if tokens is None:
        realised_in = np.zeros(n, bool)
    seq = SequenceLogprobs(
        path,
        first_null,
        lp,
        np.full(n, -1),
        alt,
        counts,
        realised_in,
        np.full(n, -1),
        first_null,
        "legacy",
        path,
    )
    _check_realised(seq, path, "top_logprobs")
    return seq


def parse_prompt(entries: Any, path: str, ids: Sequence[int]) -> SequenceLogprobs:
    """VLLM ``prompt_logprobs``: ``null``, then ``{token_id: {logprob, rank, decoded_token}}``."""
    if not isinstance(entries, list):
        raise InputError(path, f"must be a list; got {kind_of(entries)}")
    if len(ids) != len(entries):
        raise InputError(
            path, f"must have one entry per prompt token ({len(ids)} prompt_token_ids); got {len(entries)}"
        )
    n = len(entries)
    first_null = bool(n) and entries[0] is None
    for j, entry in enumerate(entries):
        if entry is None and j > 0:
            raise InputError(f"{path}[{j}]", "must not be null after the first position")
        if entry is not None and not isinstance(entry, dict):
            raise InputError(
                f"{path}[{j}]", f"must be an object {{token_id: {{logprob, rank}}}}; got {kind_of(entry)}"
            )
    keys = [str(t) for t in ids]
    missing = next((j for j, e in enumerate(entries) if e is not None and keys[j] not in e), None)
    if missing is not None:
        raise InputError(
            f"{path}[{missing}]",
            f"must contain the prompt token {keys[missing]} (prompt_token_ids[{missing}]): "
            "vLLM always includes it",
        )
    try:
        own = [e[keys[j]] if e is not None else None for j, e in enumerate(entries)]
        lp = _floats([o["logprob"] if o is not None else None for o in own])
        rank = np.fromiter((o.get("rank") or -1 if o is not None else -1 for o in own), np.int64, n)
        alt = _floats([v["logprob"] for e in entries if e for v in e.values()])
    except (KeyError, TypeError, AttributeError, ValueError):
        bad = next(j for j, e in enumerate(entries) if e and not all(_is_logprob_obj(v) for v in e.values()))
        raise InputError(f"{path}[{bad}]", "must map token ids to {logprob: number, rank: int}") from None
    _no_nulls(lp, path, "", allow_first=True)
    counts = np.fromiter((len(e) if e else 0 for e in entries), np.int64, n)
    realised_in = counts > 0
    return SequenceLogprobs(
        path, True, lp, np.full(n, -1), alt, counts, realised_in, rank, first_null, "prompt", path
    )


def _check_realised(seq: SequenceLogprobs, path: str, name: str) -> None:
    """The realised token must be among the alternatives when its logprob ranks it there.

    Alternatives are the top of the distribution: a realised token missing from them with a
    logprob above the smallest of them contradicts the list (1e-6 of slack for printing).
    """
    if not seq.alt.size:
        return
    has = seq.counts > 0
    starts = np.cumsum(seq.counts) - seq.counts
    smallest = np.full(seq.counts.size, np.inf)
    smallest[has] = np.minimum.reduceat(seq.alt, starts[has])
    bad = has & ~seq.realised_in & (seq.logprob > smallest + 1e-6) & (seq.logprob != SENTINEL)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}[{j}].{name}",
            f"must contain the realised token: its logprob {seq.logprob[j]} is above the smallest "
            f"alternative {smallest[j]}",
        )


def _no_nulls(
    values: FloatArray, path: str, name: str, *, allow_first: bool, counts: IntArray | None = None
) -> None:
    """``null`` (NaN after conversion) only at position 0, and only where `allow_first`."""
    nan = np.isnan(values)
    if allow_first and nan.size:
        nan[0] = False
    if nan.any():
        j = int(np.flatnonzero(nan)[0])
        if counts is not None:
            j = int(np.searchsorted(np.cumsum(counts), j, side="right"))
        suffix = f".{name}" if name else ""
        where = f"{path}[{j}]{suffix}" if name else f"{path}[{j}]"
        raise InputError(
            where,
            "must be a number; got null"
            + ("" if allow_first else " (only a prompt's first position may be)"),
        )


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
        if not (e["logprob"] is None or _is_number(e["logprob"])):
            raise InputError(f"{where}.logprob", f"must be a number; got {kind_of(e['logprob'])}")
        if e.get("bytes") is not None and not isinstance(e["bytes"], list):
            raise InputError(f"{where}.bytes", f"must be a list of byte values; got {kind_of(e['bytes'])}")
        top = e.get("top_logprobs") or []
        if not isinstance(top, list):
            raise InputError(f"{where}.top_logprobs", f"must be a list; got {kind_of(top)}")
        for a, alt in enumerate(top):
            if not isinstance(alt, dict) or "token" not in alt or not _is_number(alt.get("logprob")):
                raise InputError(f"{where}.top_logprobs[{a}]", "must be an object {token, logprob: number}")


def _floats(values: list[Any]) -> FloatArray:
    """A float64 array of JSON numbers (``null`` becomes NaN); ValueError on anything else."""
    array = np.array(values)
    if array.ndim == 1 and array.dtype.kind in "fiu":
        return array.astype(np.float64, copy=False)
    if array.size == 0:
        return np.empty(0)
    if array.ndim == 1 and array.dtype == object and all(v is None or _is_number(v) for v in values):
        return np.array([np.nan if v is None else v for v in values], np.float64)
    raise ValueError("not a flat list of numbers")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_logprob_obj(value: Any) -> bool:
    return isinstance(value, dict) and _is_number(value.get("logprob"))


def is_prompt_entry(value: Any) -> bool:
    """A vLLM prompt_logprobs entry: an object keyed by token ids."""
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def kind_of(value: Any) -> str:
    """The JSON-ish name of a value's type, for error messages."""
    return "null" if value is None else type(value).__name__
