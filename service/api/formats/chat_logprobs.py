"""A fast reader for the common case of ``POST /v1/logprobs``: OpenAI chat completions, decoded typed.

A 1,000-choice chat response with 5 top_logprobs per token is ~100,000 JSON objects. Decoded
generically (orjson) that is a dict per object, a list per ``bytes``, then a collection that
re-scans them and a deallocation of each: ~180 ms for 6 MB. Decoded by msgspec straight into
the few fields scored (structs the garbage collector does not track, unknown fields skipped),
it is ~40 ms, and the fields are pulled into flat lists with ``map`` (no Python loop per token).

The reader takes the request only when it is sure to answer exactly as the generic path would;
whenever it is not — another shape (legacy completions, vLLM prompt_logprobs, logprobs parts),
a value of an unexpected type, an unknown field, invalid JSON — it returns None and the body is
parsed by the generic path, which gives every error its usual wording and JSON path.

**Duplicate keys** (refused with 400 on every JSON body, :mod:`.json_keys`): msgspec keeps the
last of a repeated key, so the reader counts the keys it decoded (fields present in each struct,
keys of the generic values) and the colons inside strings, and compares with the body's colons.
Every key/value pair brings exactly one structural colon, so the counts agree only if no key was
repeated (or skipped as unknown): otherwise the generic path decides.
"""

import itertools
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np
from msgspec import UNSET, UnsetType

from service.core.language.logprobs import FlatLogprobs, ParsedLogprobs, combine

from .payload import PAUSE_GC_BYTES, collector_paused

#: Bodies from this size go through the typed reader first (below it, orjson is as fast).
FAST_BYTES = 1 << 18


class ParsedChat:
    """The ``response(s)`` field of a body the fast reader took: its logprobs already parsed."""

    def __init__(self, parsed: ParsedLogprobs) -> None:
        self.parsed = parsed


class Alternative(msgspec.Struct, gc=False):
    """One of ``top_logprobs``: its token and logprob (``bytes`` only counted as a key)."""

    token: str
    logprob: float
    bytes: msgspec.Raw | UnsetType = UNSET  # never read: kept raw, no list built


class Entry(msgspec.Struct, gc=False):
    """One ``content`` entry: the realised token."""

    token: str
    logprob: float
    bytes: list[int] | None | UnsetType = UNSET
    top_logprobs: list[Alternative] | None | UnsetType = UNSET


class ChoiceLogprobs(msgspec.Struct, gc=False):
    """A choice's ``logprobs``: chat ``content`` (a legacy object fails here: generic path)."""

    content: list[Entry]
    refusal: Any = UNSET


class Choice(msgspec.Struct, gc=False):
    """A choice; fields never scored are decoded generically so their keys can be counted."""

    logprobs: ChoiceLogprobs
    index: int | UnsetType = UNSET
    message: Any = UNSET
    finish_reason: Any = UNSET
    stop_reason: Any = UNSET
    text: Any = UNSET
    prompt_logprobs: Any = UNSET
    prompt_token_ids: Any = UNSET
    token_ids: Any = UNSET
    content_filter_results: Any = UNSET


class ChatResponse(msgspec.Struct, gc=False):
    """A chat completion (OpenAI, vLLM); unknown fields are skipped, so the body goes generic."""

    choices: list[Choice]
    id: Any = UNSET
    object: Any = UNSET
    created: Any = UNSET
    model: Any = UNSET
    usage: Any = UNSET
    system_fingerprint: Any = UNSET
    service_tier: Any = UNSET
    prompt_logprobs: Any = UNSET
    prompt_token_ids: Any = UNSET
    kv_transfer_params: Any = UNSET
    prompt_filter_results: Any = UNSET


_CHOICE_EXTRA = tuple(f for f in Choice.__struct_fields__ if f not in ("logprobs", "index"))
_RESPONSE_EXTRA = tuple(f for f in ChatResponse.__struct_fields__ if f != "choices")


def _request_decoder(option_names: tuple[str, ...]) -> Any:
    fields: list[tuple[str, Any, Any]] = [
        ("response", ChatResponse | UnsetType, UNSET),
        ("responses", list[ChatResponse] | UnsetType, UNSET),
    ]
    fields += [(name, Any, UNSET) for name in option_names if name not in ("response", "responses")]
    request = msgspec.defstruct("LogprobsRequest", fields, gc=False)
    return msgspec.json.Decoder(request)


_decoders: dict[tuple[str, ...], Any] = {}


def read_chat(body: bytes | bytearray, option_names: tuple[str, ...]) -> dict[str, Any] | None:
    """The body's fields, ``response``/``responses`` as a :class:`ParsedChat`; None to parse generically.

    `option_names` are the request's other top-level fields (decoded generically, and given to
    the route as they are). Raises :class:`~service.core.InputError` for what the checks of
    :func:`~service.core.language.logprobs.combine` refuse, with the generic path's wording.
    """
    decoder = _decoders.get(option_names)
    if decoder is None:
        decoder = _decoders[option_names] = _request_decoder(option_names)
    # The lists it builds (``bytes``, ``top_logprobs``) hold no cycle: the collector need not see
    # them, and they are freed on return (see ``collector_paused``).
    with collector_paused(len(body) >= PAUSE_GC_BYTES):
        return _read(decoder, body)


def _read(decoder: Any, body: bytes | bytearray) -> dict[str, Any] | None:
    try:
        request = decoder.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    sent = [name for name in ("response", "responses") if getattr(request, name) is not UNSET]
    if len(sent) != 1:
        return None
    fields = {
        name: value
        for name in request.__struct_fields__
        if name not in ("response", "responses") and (value := getattr(request, name)) is not UNSET
    }
    if fields.get("use") not in (None, "auto", "sampled") or fields.get("prompt_token_ids") is not None:
        return None
    colons = len(fields) + 1 + _generic_colons(list(fields.values()))
    if sent[0] == "response":
        items, names = [request.response], ["response"]
    else:
        items = request.responses
        names = [f"responses[{i}]" for i in range(len(items))]
        if not items:
            return None
    flat, counted = _flatten(items, names)
    # Every key the structs skip or a repeat dropped makes the count fall short of the body's; only
    # an escaped colon (counted decoded, absent from the body) could make up for one.
    if flat is None or colons + counted != _count_colons(body) or _escaped_colon(body):
        return None
    fields[sent[0]] = ParsedChat(combine(flat))
    return fields


def _flatten(items: list[Any], names: list[str]) -> tuple[FlatLogprobs | None, int]:
    """Every choice's content as one :class:`FlatLogprobs`, and the keys and string colons it held."""
    colons = 0
    contents: list[list[Any]] = []
    paths: list[str] = []
    generic: list[Any] = []  # values decoded generically: their keys are counted in one walk
    for response, name in zip(items, names, strict=True):
        if response.prompt_logprobs is not None and response.prompt_logprobs is not UNSET:
            return None, 0
        extra = [v for f in _RESPONSE_EXTRA if (v := getattr(response, f)) is not UNSET]
        colons += 1 + len(extra)
        generic += extra
        if not response.choices:
            return None, 0  # "has no logprobs to score": the generic path says so
        order = sorted(
            range(len(response.choices)),
            key=lambda j: 0 if response.choices[j].index is UNSET else response.choices[j].index,
        )
        for j, k in enumerate(order):
            choice = response.choices[k]
            if choice.prompt_logprobs is not None and choice.prompt_logprobs is not UNSET:
                return None, 0
            extra = [v for f in _CHOICE_EXTRA if (v := getattr(choice, f)) is not UNSET]
            refusal = choice.logprobs.refusal
            colons += 2 + (choice.index is not UNSET) + len(extra) + (refusal is not UNSET)
            generic += extra
            if refusal is not UNSET:
                generic.append(refusal)
            contents.append(choice.logprobs.content)
            paths.append(f"{name}.choices[{j}].logprobs")
    entries = list(itertools.chain.from_iterable(contents))
    token_bytes = list(map(attrgetter("bytes"), entries))
    tops = list(map(attrgetter("top_logprobs"), entries))
    n_bytes, n_tops = len(entries) - token_bytes.count(UNSET), len(entries) - tops.count(UNSET)
    colons += 2 * len(entries) + n_bytes + n_tops
    if n_tops < len(tops) or None in tops:  # an entry without top_logprobs: none to chain
        tops = [t if t.__class__ is list else () for t in tops]
    alternatives = list(itertools.chain.from_iterable(tops))
    tokens = list(map(attrgetter("token"), entries))
    alt_tokens = list(map(attrgetter("token"), alternatives))
    colons += (
        2 * len(alternatives) + len(alternatives) - list(map(attrgetter("bytes"), alternatives)).count(UNSET)
    )
    colons += "".join(tokens).count(":") + "".join(alt_tokens).count(":") + _generic_colons(generic)
    n = len(entries)
    flat = FlatLogprobs(
        lengths=list(map(len, contents)),
        paths=paths,
        styles=["chat"] * len(paths),
        bases=[f"{p}.content" for p in paths],
        teacher_forced=[False] * len(paths),
        first_null=[False] * len(paths),
        logprob=np.fromiter(map(attrgetter("logprob"), entries), np.float64, count=n),
        tokens=tokens,
        counts=list(map(len, tops)),
        alt=np.fromiter(map(attrgetter("logprob"), alternatives), np.float64, count=len(alternatives)),
        alt_tokens=alt_tokens,
        n_bytes=(
            list(map(len, token_bytes))
            if n_bytes == n and None not in token_bytes
            else [len(b) if b.__class__ is list else -1 for b in token_bytes]
        ),
        rank=[-1] * n,
    )
    return flat, colons


def _generic_colons(values: list[Any]) -> int:
    """Keys (and colons inside strings) of generically decoded JSON values.

    Encoded again, each key brings one colon and a string's colons stay as they are (JSON
    escapes no colon): the colons of the encoding, counted in one pass of C.
    """
    return msgspec.json.encode(values).count(b":")


def _count_colons(body: bytes | bytearray) -> int:
    """Colons in the body (NumPy's compare and count: a quarter of ``bytes.count``'s time)."""
    return int(np.count_nonzero(np.frombuffer(body, np.uint8) == ord(":")))


def _escaped_colon(body: bytes | bytearray) -> bool:
    r"""Whether the body may spell a colon as ``\\u003a`` (decoded, it counts where the body has none).

    No backslash (one ``memchr``) is the common answer; otherwise one pass over each ``\\u003``.
    """
    at = body.find(b"\\")
    if at == -1:
        return False
    at = body.find(b"\\u003", at)
    while at != -1:
        if body[at + 5 : at + 6] in (b"a", b"A"):
            return True
        at = body.find(b"\\u003", at + 5)
    return False
