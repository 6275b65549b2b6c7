"""Idempotency keys of monitor writes: a retried request counts once and is answered like the first.

A client that sends observations, labels or an event with an ``Idempotency-Key`` header (the
IETF httpapi draft's header, also Stripe's and most payment APIs') may retry it after a
timeout, a dropped connection or a 503 as often as it likes: the key is stored in the same
transaction as the write, so exactly one attempt commits. A retry that finds the key answers
the first attempt's body (with ``Idempotent-Replayed: true``) and writes nothing; the same key
with a different request (another route, body or segment) is a 422 and writes nothing.

A KServe logger event needs no header: its key defaults to a digest of its ``ce-source``,
``ce-id`` and its bytes, so a logger that re-sends an event it was not sure of counts it once
(an event reusing an id with other data is a new event).

Keys are per monitor, remembered for ``XENT_IDEMPOTENCY_TTL_S`` (default a day) and at most
``XENT_MAX_IDEMPOTENCY_KEYS`` per monitor (the background compaction forgets the oldest).
"""

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from service.core import InputError
from service.store import IdempotencyKey

HEADER = "Idempotency-Key"
MAX_KEY_CHARS = 255


def check_key(value: str | None) -> str | None:
    """The header's key: 1 to 255 printable ASCII characters (None: no header)."""
    if value is None:
        return None
    if not 0 < len(value) <= MAX_KEY_CHARS or not value.isascii() or not value.isprintable():
        raise InputError(HEADER, f"must be 1 to {MAX_KEY_CHARS} printable ASCII characters; got {value!r}")
    return value


def fingerprint(parts: Iterable[bytes | bytearray | memoryview | str]) -> bytes:
    """SHA-256 of the parts, each length-prefixed (so no two different lists collide by concatenation)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.digest()


def request_key(
    key: str | None, parts: Iterable[bytes | bytearray | memoryview | str], answer: Callable[[Any], bytes]
) -> IdempotencyKey | None:
    """The store's key for a request with header value `key` (None without one).

    Examples
    --------
    >>> k = request_key("retry-7", ["observations", b"{}"], lambda result: b"{}")
    >>> k.key, len(k.fingerprint)
    ('retry-7', 32)
    """
    checked = check_key(key)
    if checked is None:
        return None
    return IdempotencyKey(checked, fingerprint(parts), answer)


def event_key(source: str, event_id: str, parts: Iterable[bytes | bytearray | memoryview | str]) -> str:
    """The default key of a CloudEvent: ``ce:`` and a digest of its source, id and bytes."""
    return "ce:" + fingerprint([source, event_id, *parts]).hex()
