"""Pydantic's validation errors of the options, in Xent's wording: "`field` rule; got value".

Pydantic's own messages ("Input should be ...", "Value error, ...", "Extra inputs are not
permitted") and its locations (which name union members: ``eps.constrained-float``,
``parameters.vector.scale``) are turned into the template the core's
:class:`~service.core.InputError` uses, with one pointer per field into the body as sent.
"""

import re
import reprlib
from collections.abc import Mapping, Sequence
from typing import Any

_SHOULD = re.compile(r"^(?:Input|String|List|Value|Dictionary|Tuple|Decimal|Object) should ")
_PREFIXES = ("Value error, ", "Assertion failed, ")
_PLAIN = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
}


def describe(
    errors: Sequence[Mapping[str, Any]], root: Any, pointers: Mapping[str, str]
) -> list[dict[str, str]]:
    """One ``{"pointer", "detail", "field"}`` per field in error, reasons for the same field joined.

    `root` is the body the options were read from (to tell field names from union members in a
    location); `pointers` maps a top-level field to where it was in the request (an inference
    request's ``#/parameters/eps``).
    """
    merged: dict[str, list[str]] = {}
    for error in errors:
        path = _path([part for part in error.get("loc", ()) if part != "body"], root, error)
        reason = _reason(error)
        if error.get("type") == "union_tag_invalid" or error.get("type") == "union_tag_not_found":
            path = [*path, str(error.get("ctx", {}).get("discriminator", "")).strip("'")]
        key = _name(path)
        reasons = merged.setdefault(key, [])
        if reason not in reasons:
            reasons.append(reason)
    out = []
    for key, reasons in merged.items():
        parts = re.findall(r"[^.\[\]]+", key)
        base = pointers.get(parts[0], f"#/{parts[0]}") if parts else "#"
        reason = _join(reasons)
        out.append(
            {
                "pointer": "/".join([base, *parts[1:]]),
                "detail": f"`{key or 'body'}` {reason}",
                "field": key,
            }
        )
    return out


def _name(path: list[Any]) -> str:
    """A location as the core names it: ``bootstrap.n``, ``metrics[0]``."""
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _path(loc: list[Any], root: Any, error: Mapping[str, Any]) -> list[Any]:
    """`loc` without the names of union members: the parts that index into `root`.

    A missing field (the last part of its location) is kept too.
    """
    if root is None:
        return loc
    kept, value = [], root
    for i, part in enumerate(loc):
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if in_list or (isinstance(value, dict) and part in value):
            kept.append(part)
            value = value[part]
        elif i == len(loc) - 1 and isinstance(value, dict) and error.get("type") == "missing":
            kept.append(part)
    return kept


def _reason(error: Mapping[str, Any]) -> str:
    kind = str(error.get("type", ""))
    if kind in _PLAIN:
        return _PLAIN[kind]
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        return f"must be one of {ctx.get('expected_tags')}; got {ctx.get('tag')!r}"
    if kind == "union_tag_not_found":
        return "is required"
    message = str(error.get("msg", "is not valid"))
    for prefix in _PREFIXES:
        message = message.removeprefix(prefix)
    message = _SHOULD.sub("must ", message)
    if message[:1].isupper():
        message = "is not valid: " + message[0].lower() + message[1:]
    if "; got " not in message and "input" in error and not isinstance(error["input"], dict | list):
        message += f"; got {reprlib.repr(error['input'])}"
    return message


def _join(reasons: list[str]) -> str:
    """Reasons of one field (one per union member) as one: "must be < 1 or 'auto'; got 2"."""
    got = {r.partition("; got ")[2] for r in reasons}
    rules = [r.partition("; got ")[0] for r in reasons]
    joined = rules[0]
    for rule in rules[1:]:
        joined += " or " + (rule.removeprefix("must be ") if joined.startswith("must be ") else rule)
    return joined + (f"; got {got.pop()}" if len(got) == 1 and "" not in got else "")
