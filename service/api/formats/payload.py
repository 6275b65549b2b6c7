"""Read a JSON body once with orjson: one parse, its keys checked, booleans in arrays found.

Arrays arrive as nested JSON lists or as Open Inference Protocol (KServe v2)
tensor objects ``{"shape": [N, K], "datatype": "FP32", "data": [...]}``.
Pydantic never sees them element by element; :mod:`.arrays` turns them into ndarrays.
"""

import contextlib
import gc
import re
from collections.abc import Iterator
from typing import Any

import orjson

from ..errors.problems import ProblemError
from .json_keys import check_unique_keys

# `true`/`false` right after `[` or `,` can only be an array element (keys are strings).
_BOOLEAN_ELEMENT = re.compile(rb"[\[,]\s*(?:true|false)\b")


def has_boolean_elements(text: bytes | bytearray, end: int | None = None) -> bool:
    """Whether JSON ``text[:end]`` may hold ``true``/``false`` inside an array (NumPy would take them as 1/0).

    Looks for the literals with ``bytes.find`` and checks only where they occur: a body of
    numbers is scanned at memchr speed (a regex over every ``[`` and ``,`` of 1M floats took ~0.5 s).

    Examples
    --------
    >>> has_boolean_elements(b'{"per_sample": true, "labels": [0, 1]}')
    False
    >>> has_boolean_elements(b'{"labels": [0,  true]}')
    True
    """
    end = len(text) if end is None else end
    if text.find(b"u", 0, end) == -1 and text.find(b"f", 0, end) == -1:
        return False  # neither literal can occur: two memchr scans, ~10× faster than finding the words
    for word in (b"true", b"false"):
        at = _find_word(text, word, 0, end)
        while at != -1:
            start = max(0, at - 64)
            if _BOOLEAN_ELEMENT.search(text, start, at + len(word)) is not None:
                return True
            if start > 0 and not text[start:at].strip():  # a run of whitespace longer than the window
                return _BOOLEAN_ELEMENT.search(text, 0, end) is not None
            at = _find_word(text, word, at + 1, end)
    return False


#: Each literal's rarest byte and its offset in the word: "u" of true, "f" of false.
_PIVOTS = {b"true": (b"u", 2), b"false": (b"f", 0)}


def _find_word(text: bytes | bytearray, word: bytes, start: int, end: int) -> int:
    """``text.find(word, start, end)``, by memchr scans for the word's pivot byte.

    ``bytes.find`` of a four-letter word over a body of digits is a slow path (~8 µs over the
    6.7 KB of a 32×10 body, found because a key such as "temperature" holds a "u"), while the
    pivot byte occurs in a body of numbers only in its keys. After a few pivots that begin no
    word (a body of names, say), the rest is left to ``bytes.find``.

    Examples
    --------
    >>> _find_word(b'{"temperature": 1, "x": [true]}', b"true", 0, 31)
    25
    """
    pivot, offset = _PIVOTS[word]
    size = len(word)
    at = text.find(pivot, start + offset, end)
    for _ in range(16):
        if at == -1:
            return -1
        begin = at - offset
        if begin + size <= end and text[begin : begin + size] == word:
            return begin
        at = text.find(pivot, at + 1, end)
    return -1 if at == -1 else text.find(word, at - offset, end)


#: Bodies from this size are decoded with the cyclic garbage collector paused (see below).
PAUSE_GC_BYTES = 1 << 20


@contextlib.contextmanager
def collector_paused(pause: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector while a large body's objects are built (or walked).

    Decoding allocates one container per JSON object and array; each 700 of them start a
    collection that re-scans every young (and, as the tree grows, old) object, though
    orjson's output holds no reference cycle to find. On 6 MB of chat logprobs (100k objects)
    ``orjson.loads`` took ~220 ms with the collector running and ~45 ms paused. The collector
    is process-wide: it is re-enabled at once, only if it was enabled before.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def parse_json_object(body: bytes | bytearray, *, unique_keys: bool = True) -> dict[str, Any]:
    """Parse `body` as a JSON object, or raise 400; a repeated key too, unless `unique_keys` is False.

    The direct layer leaves the keys to :func:`~.plain.numbers_only` (two quotes a key and no
    more: no key was repeated) and checks them itself before any other reader takes the body.
    """
    if not body or body.isspace():  # (`strip()` would copy the body to find out)
        raise ProblemError(400, "request body is empty; send a JSON object")
    try:
        if len(body) < PAUSE_GC_BYTES:  # a small body: no context manager to enter (~1 µs)
            value = orjson.loads(body)
        else:
            with collector_paused(True):
                value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ProblemError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProblemError(400, f"request body must be a JSON object; got {json_type(value)}")
    if unique_keys:
        check_unique_keys(body, value)
    return value


def json_type(value: Any) -> str:
    """How an error names the JSON type of `value`: "an object", "null", "a number", ..."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")
