"""API-key authentication and scopes: an ASGI check guarding /v1 and /v2 (and /metrics on request).

/v2's health probes (``/v2/health/live``, ``/v2/health/ready``) stay open, as /healthz and /readyz do.

Keys come from ``XENT_API_KEYS``: a comma-separated list, or the path of a file with
one key per line (blank lines and ``#`` comments skipped). A request shows its key as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The presented key is hashed
and compared with every configured key's hash by :func:`hmac.compare_digest`, with
no early exit, so timing says nothing about how close a guess was or which key
matched. Keys are never logged and never echoed in a response.

Each entry is ``KEY[:SCOPES[:MONITORS]]`` (see :func:`parse_entry`): ``SCOPES`` is
``read``, ``write`` and ``admin`` joined by ``+``, ``MONITORS`` monitor names joined by
``+``. A bare ``KEY`` has every scope on every monitor (the keys of before scopes).
``KEY`` may be ``sha256:<64 hex digits>``, the key's SHA-256 digest, so the file or
Secret need not hold the key itself. What each request needs is :func:`required_scope`.
"""

import hashlib
import hmac
import re
from pathlib import Path
from typing import NamedTuple

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

from ..errors.problems import problem_response

CHALLENGE = 'Bearer realm="xent"'
SCOPES = ("read", "write", "admin")
_SCOPE_LIST = re.compile(r"(?:read|write|admin)(?:\+(?:read|write|admin))*")
_MONITOR_LIST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}(?:\+[A-Za-z0-9][A-Za-z0-9._-]{0,127})*")
_HASHED = re.compile(r"sha256:([0-9a-fA-F]{64})")
_MONITORS = "/v1/monitors"


def load_api_keys(settings: Settings) -> list[bytes]:
    """The configured entries (empty: authentication off); raise ValueError if set but empty."""
    if settings.api_keys is None:
        return []
    raw = settings.api_keys.get_secret_value().strip()
    path = Path(raw)
    if "," not in raw and path.is_file():
        lines = path.read_text(encoding="utf-8").splitlines()
        keys = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
        source = f"file {path}"
    else:
        keys = [key.strip() for key in raw.split(",") if key.strip()]
        source = "XENT_API_KEYS"
    if not keys:
        raise ValueError(f"{source} holds no API key; unset XENT_API_KEYS to turn authentication off")
    return [key.encode() for key in keys]


class Grant(NamedTuple):
    """What one configured key may do: its scopes, and the monitors it is limited to (None: all)."""

    digest: bytes
    scopes: frozenset[str]
    monitors: frozenset[str] | None


def parse_entry(entry: bytes) -> Grant:
    """One ``XENT_API_KEYS`` entry as a :class:`Grant`.

    Only trailing ``:``-fields that parse as grants are read as grants: the last field if it
    is a scope list (``read+write``), else the last two if they are a scope list then a
    monitor list. Anything else is part of the key, so ``abc:def`` is the key ``abc:def`` with
    full access. A key that itself ends in a scope list keeps full access when written with
    an explicit ``:read+write+admin``. A key part ``sha256:<64 hex>`` is that key's digest.
    """
    text = entry.decode()
    key, scopes, monitors = text, frozenset(SCOPES), None
    head, sep, last = text.rpartition(":")
    if sep and head and _SCOPE_LIST.fullmatch(last):
        key, scopes = head, frozenset(last.split("+"))
    elif sep and head and _MONITOR_LIST.fullmatch(last):
        first, sep2, middle = head.rpartition(":")
        if sep2 and first and _SCOPE_LIST.fullmatch(middle):
            key, scopes, monitors = first, frozenset(middle.split("+")), frozenset(last.split("+"))
    hashed = _HASHED.fullmatch(key)
    digest = bytes.fromhex(hashed.group(1)) if hashed else _digest(key.encode())
    return Grant(digest, scopes, monitors)


def required_scope(method: str, path: str) -> tuple[str | None, str | None]:
    """The scope a request needs (None: any valid key) and the monitor it names (None: none).

    ``GET``/``HEAD`` on ``/v1/monitors...`` and ``/metrics`` need ``read``; ``PUT`` and
    ``DELETE`` on a monitor need ``admin``; any other method on a monitor's paths (the
    ``POST``s of observations, labels, events, temperature) needs ``write``. Scoring
    requests change no state, so any valid key may make them.
    """
    if path == "/metrics":
        return "read", None
    if path != _MONITORS and not path.startswith(_MONITORS + "/"):
        return None, None
    name = path[len(_MONITORS) + 1 :].split("/", 1)[0] or None
    if method in ("GET", "HEAD"):
        return "read", name
    if method in ("PUT", "DELETE"):
        return "admin", name
    return "write", name


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class APIKeys:
    """The configured keys' grants and the paths they guard."""

    def __init__(self, keys: list[bytes], *, protect_metrics: bool) -> None:
        self.grants = [parse_entry(key) for key in keys]
        self.digests = [grant.digest for grant in self.grants]
        self.prefixes = ("/v1/", "/v2", "/metrics") if protect_metrics else ("/v1/", "/v2")

    def protects(self, path: str) -> bool:
        """Whether a request for `path` must show a key (OIP health probes stay open, as /healthz)."""
        return (path.startswith(self.prefixes) and not path.startswith("/v2/health/")) or path == "/v1"

    def match(self, presented: bytes) -> Grant | None:
        """The grant of the key `presented`, comparing its digest with every digest (no early exit)."""
        digest = _digest(presented)
        found: Grant | None = None
        for grant, known in zip(self.grants, self.digests, strict=True):
            if hmac.compare_digest(digest, known):
                found = grant
        return found

    def _grant(self, headers: list[tuple[bytes, bytes]]) -> tuple[Grant | None, bool]:
        presented = _presented_keys(headers)
        for key in presented:
            grant = self.match(key)
            if grant is not None:
                return grant, True
        return None, bool(presented)

    def refusal(self, headers: list[tuple[bytes, bytes]], path: str | None = None) -> Response | None:
        """None if `headers` show a valid key, else the 401 to answer (at `path`)."""
        grant, presented = self._grant(headers)
        return None if grant is not None else _unauthorized(presented, path)

    def admit(self, scope: Scope) -> Response | None:
        """None if the request may go on (its key's monitors noted in the state), else the 401/403."""
        grant, presented = self._grant(scope["headers"])
        state = scope.setdefault("state", {})
        if grant is None:
            state["error_type"] = "unauthorized"
            return _unauthorized(presented, scope["path"])
        needed, monitor = required_scope(scope["method"], scope["path"])
        if needed is not None and needed not in grant.scopes:
            state["error_type"] = "forbidden"
            detail = f"the API key lacks the `{needed}` scope this request needs"
            return problem_response(403, detail, path=scope["path"])
        if grant.monitors is not None:
            if monitor is not None and monitor not in grant.monitors:
                state["error_type"] = "forbidden"
                return problem_response(
                    403, f"the API key may not use monitor `{monitor}`", path=scope["path"]
                )
            state["api_key_monitors"] = grant.monitors
        return None


def _unauthorized(presented: bool, path: str | None) -> Response:
    detail = (
        "the API key is not valid"
        if presented
        else "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
    )
    return problem_response(401, detail, headers={"WWW-Authenticate": CHALLENGE}, path=path)


class APIKeyMiddleware:
    """Refuse protected requests without a valid key (401) or its scope (403), as problem+json.

    The app checks keys in its one layer (:class:`service.api.middleware.exchange.ExchangeMiddleware`);
    this standalone middleware applies the same :class:`APIKeys` to any other ASGI app.
    """

    def __init__(self, app: ASGIApp, *, keys: list[bytes], protect_metrics: bool) -> None:
        self.app = app
        self.keys = APIKeys(keys, protect_metrics=protect_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 401 with a Bearer challenge, or 403."""
        if scope["type"] != "http" or not self.keys.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        refusal = self.keys.admit(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        await refusal(scope, receive, send)


def _presented_keys(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    keys = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, credentials = value.partition(b" ")
            if scheme.lower() == b"bearer" and credentials.strip():
                keys.append(credentials.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys
