"""Rules of language-model logprob documents (/v1/logprobs, a monitor's sequences): vLLM prompts paired with
their token ids, alternatives summing below 1, one range, text or count per sequence."""

import itertools
import math
from typing import Any

import numpy as np

from tests.contract.repairs.arrays import (
    REPAIRED,
    array_or_none,
    cycled,
    fields_of,
    is_number,
    predictions_of,
    put_array,
)


def sequence_counts(body: dict[str, Any]) -> None:
    """Per-sequence `bytes` and `words` counts (a sequences request's): non-negative integers within int32."""
    fields = {k: v for k, v in fields_of(body).items() if k in ("bytes", "words")}
    if not isinstance(body.get("inputs"), list):
        fields = {k: body[k] for k in ("bytes", "words") if isinstance(body.get(k), list)}
    array = predictions_of(fields_of(body))
    for name, like in fields.items():
        counts = array_or_none(like)
        if counts is not None and counts.size == 0 and body.get(name) is like:
            del body[name]  # (no count for any sequence: as if not sent)
            REPAIRED[f"{name}: one per sequence"] += 1
            continue
        if counts is None or counts.size == 0:
            continue
        # (one per sequence of B×T×K predictions)
        fixed = (
            np.resize(counts.reshape(-1), array.shape[0]) if array is not None and array.ndim == 3 else counts
        )
        if fixed.shape == counts.shape and not np.any((counts < 0) | (counts >= 2**31)):
            continue
        REPAIRED["bytes and words counts: one per sequence, non-negative"] += 1
        # (a count past int64 has no integer to send: the draw's value modulo 2**31, or modulo its
        # tensor's integer datatype's range: |−32768| is past INT16)
        bound = 2.0**31
        datatype = like.get("datatype") if isinstance(like, dict) else None
        if isinstance(datatype, str) and datatype.startswith(("INT", "UINT")):
            bound = min(bound, float(np.iinfo(datatype.lower()).max) + 1)
        put_array(body, name, np.fmod(np.abs(np.trunc(fixed)), bound), like, integer=True)


def logprobs_documents(body: dict[str, Any]) -> None:
    """Logprobs documents (/v1/logprobs, a monitor's sequences): vLLM prompts paired with their token ids.

    Each ``prompt_logprobs`` list the server reads (in its order: service.core.language.logprobs) gets
    the token ids it needs, one per entry, each entry's own (a key of the entry; any for a null
    entry): in the body's `prompt_token_ids` when it sends them (or a bare list needs them), else in
    the list's holder. `ranges`: one per sequence read.
    """
    items = [body["response"]] if body.get("response") is not None else body.get("responses")
    if not isinstance(items, list):
        return
    slots: list[tuple[dict[str, Any] | None, Any]] = []
    try:
        n_sequences = sum(_read_item(item, str(body.get("use", "auto")), slots) for item in items)
    except (TypeError, AttributeError):
        return  # (a form the server refuses for its own reason: nothing to pair)
    ids = [_prompt_ids(entries) for _, entries in slots]
    if not slots and body.get("prompt_token_ids"):
        body["prompt_token_ids"] = None  # (no prompt_logprobs read: nothing to pair)
        REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
    if slots and all(i is not None for i in ids):
        if body.get("prompt_token_ids") is not None or any(holder is None for holder, _ in slots):
            if body.get("prompt_token_ids") != ids:
                body["prompt_token_ids"] = ids
                REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
        else:
            for (holder, _), own in zip(slots, ids, strict=True):
                if holder is not None and holder.get("prompt_token_ids") != own:
                    holder["prompt_token_ids"] = own
                    REPAIRED["prompt_token_ids: one list per prompt_logprobs"] += 1
    for item in items:
        _alternatives(item)
    ranges = body.get("ranges")
    if isinstance(ranges, list) and n_sequences and len(ranges) != n_sequences:
        body["ranges"] = cycled(ranges, n_sequences) if ranges else [[None, None]] * n_sequences
        REPAIRED["ranges: one per sequence"] += 1
    context = body.get("context_length")
    if isinstance(context, list) and n_sequences and len(context) != n_sequences:
        if context:
            body["context_length"] = cycled(context, n_sequences)
        else:
            del body["context_length"]
        REPAIRED["context_length: one per sequence"] += 1
    for name in ("texts", "bytes", "words"):  # (one text or count per sequence)
        values = body.get(name)
        if isinstance(values, list) and n_sequences and len(values) != n_sequences:
            if values:
                body[name] = cycled(values, n_sequences)
            else:
                del body[name]  # (none for any sequence: as if not sent)
            REPAIRED[f"{name}: one per sequence"] += 1


def _alternatives(value: Any) -> None:
    """Every position's alternatives (chat `top_logprobs` objects, legacy `{token: logprob}`) kept below 1."""
    if isinstance(value, list):
        for item in value:
            _alternatives(item)
        return
    if not isinstance(value, dict):
        return
    if isinstance(value.get("token_logprobs"), list):
        _legacy_lengths(value)
    tops, lps = value.get("top_logprobs"), value.get("token_logprobs")
    if _is_prompt_entry(value) and all(
        isinstance(v, dict) and is_number(v.get("logprob")) for v in value.values()
    ):
        _prompt_mass(value)
        return
    if is_number(value.get("logprob")) and isinstance(tops, list) and tops:
        if all(isinstance(a, dict) and is_number(a.get("logprob")) for a in tops):
            _position(value, "logprob", tops, [(a, "logprob") for a in tops], value.get("token"))
    elif isinstance(lps, list) and isinstance(tops, list) and value.get("tokens") is None and any(tops):
        del value["top_logprobs"]  # (alternatives match the realised tokens, which are not sent)
        REPAIRED["legacy top_logprobs only with tokens"] += 1
    elif isinstance(lps, list) and isinstance(tops, list) and isinstance(value.get("tokens"), list):
        _legacy_positions(lps, tops, value["tokens"])
    for item in value.values():
        if isinstance(item, list | dict):
            _alternatives(item)


def _legacy_lengths(part: dict[str, Any]) -> None:
    """A legacy part's `token_logprobs` ≤ 0 and `tokens` one per entry (cycled); `top_logprobs` and
    `text_offset` of another length left out."""
    n = len(part["token_logprobs"])
    values = part["token_logprobs"]
    if any(is_number(v) and v > 0 for v in values):  # (a log-probability: ≤ 0)
        part["token_logprobs"] = [-v if is_number(v) and v > 0 else v for v in values]
        REPAIRED["legacy token_logprobs ≤ 0"] += 1
    tokens = part.get("tokens")
    if isinstance(tokens, list) and len(tokens) != n:
        if tokens and n:
            part["tokens"] = cycled(tokens, n)
        else:
            del part["tokens"]
        REPAIRED["legacy tokens one per token_logprobs entry"] += 1
    for name in ("top_logprobs", "text_offset"):
        values = part.get(name)
        if isinstance(values, list) and len(values) != n:
            del part[name]
            REPAIRED[f"legacy {name} one per token_logprobs entry"] += 1


def _prompt_mass(entry: dict[str, Any]) -> None:
    """A vLLM prompt entry's probabilities, lowered together by one factor to sum below 1."""
    mass = sum(math.exp(min(v["logprob"], 0.0)) for v in entry.values())
    if mass > 1:
        shift = math.log(mass) + 0.01
        for v in entry.values():
            v["logprob"] = min(v["logprob"], 0.0) - shift
        REPAIRED["top_logprobs summing below 1"] += 1


def _legacy_positions(lps: list[Any], tops: list[Any], tokens: list[Any]) -> None:
    if not len(lps) == len(tops) == len(tokens):
        return
    for j, top in enumerate(tops):
        if is_number(lps[j]) and isinstance(top, dict) and top and all(map(is_number, top.values())):
            _position(lps, j, list(top.items()), [(top, k) for k in top], tokens[j])


def _position(
    holder: Any, key: Any, tops: list[Any], alternatives: list[tuple[Any, Any]], token: Any
) -> None:
    """One position: the realised token (`holder[key]`) and its alternatives (each `where[k]`).

    A realised token missing from the alternatives is ranked below them (at most the smallest), and
    the probabilities (theirs, and its own when missing) are lowered together by one factor to sum
    below 1: the order of every logprob is kept.
    """
    alt = [where[k] for where, k in alternatives]
    realised_in = any((a.get("token") if isinstance(a, dict) else a[0]) == token for a in tops)
    if not realised_in and holder[key] > min(alt) + 1e-6:
        holder[key] = min(alt)
        REPAIRED["realised token ranked below its missing alternatives"] += 1
    mass = sum(math.exp(min(v, 0.0)) for v in alt) + (0.0 if realised_in else math.exp(min(holder[key], 0.0)))
    if mass > 1:
        shift = math.log(mass) + 0.01
        for where, k in alternatives:
            where[k] = min(where[k], 0.0) - shift
        holder[key] = min(holder[key], 0.0) - shift
        REPAIRED["top_logprobs summing below 1"] += 1


def _read_item(item: Any, use: str, slots: list[tuple[dict[str, Any] | None, Any]]) -> int:
    """How many sequences the server reads from `item`; the prompt lists it reads appended to `slots`."""
    if isinstance(item, list):
        if item and (item[0] is None or _is_prompt_entry(item[0])):
            slots.append((None, item))
        return 1
    if not isinstance(item, dict):
        return 0
    if "choices" in item and isinstance(item["choices"], list):
        top, n = item.get("prompt_logprobs"), 0
        if top is not None and use != "sampled":
            slots.append((item, top))
            n += 1
        for choice in sorted(item["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0):
            if not isinstance(choice, dict):
                continue
            if choice.get("prompt_logprobs") is not None and use != "sampled":
                slots.append((choice, choice["prompt_logprobs"]))
                n += 1
            elif (top is None or use == "sampled") and use != "prompt":
                n += 1
        return n
    if "prompt_logprobs" in item:
        slots.append((item, item["prompt_logprobs"]))
    return 1


def _is_prompt_entry(value: Any) -> bool:
    return isinstance(value, dict) and bool(value) and all(isinstance(k, str) and k.isdigit() for k in value)


def _prompt_ids(entries: Any) -> list[int] | None:
    """A token id per vLLM prompt entry (one of its keys; 0 for a null entry), or None."""
    if not isinstance(entries, list) or not all(e is None or isinstance(e, dict) for e in entries):
        return None
    ids = []
    for entry in entries:
        if entry is None:
            ids.append(0)
            continue
        # (a key the server finds as `str(id)`: ASCII digits, no leading zero, within int64)
        keys = [k for k in entry if k.isascii() and k.isdigit() and str(int(k)) == k and int(k) < 2**63]
        if not keys:  # the prompt token vLLM always includes, improbable (its logprob -1000)
            keys = [next(str(i) for i in itertools.count() if str(i) not in entry)]
            entry[keys[0]] = {"logprob": -1000.0}
        ids.append(int(keys[0]))
    return ids
