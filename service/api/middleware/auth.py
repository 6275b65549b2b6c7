"""API-key authentication: an ASGI middleware guarding /v1 (and /metrics on request).

Keys come from ``XENT_API_KEYS``: a comma-separated list, or the path of a file with
one key per line (blank lines and ``#`` comments skipped). A request shows its key as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The presented key is hashed
and compared with every configured key's hash by :func:`hmac.compare_digest`, with
no early exit, so timing says nothing about how close a guess was or which key
matched. Keys are never logged and never echoed in a response.
"""

import hashlib
import hmac
from pathlib import Path

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from service.settings import Settings

from ..problems import problem_response

CHALLENGE = 'Bearer realm="xent"'


def load_api_keys(settings: Settings) -> list[bytes]:
    """The configured keys (empty: authentication off); raise ValueError if set but empty."""
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


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class APIKeys:
    """The configured keys' digests and the paths they guard."""

    def __init__(self, keys: list[bytes], *, protect_metrics: bool) -> None:
        self.digests = [_digest(key) for key in keys]
        self.prefixes = ("/v1/", "/metrics") if protect_metrics else ("/v1/",)

    def protects(self, path: str) -> bool:
        """Whether a request for `path` must show a key."""
        return path.startswith(self.prefixes) or path == "/v1"

    def _valid(self, presented: bytes) -> bool:
        digest = _digest(presented)
        matched = False
        for known in self.digests:
            matched |= hmac.compare_digest(digest, known)
        return matched

    def refusal(self, headers: list[tuple[bytes, bytes]]) -> Response | None:
        """None if `headers` show a valid key, else the 401 to answer."""
        presented = _presented_keys(headers)
        if any(self._valid(key) for key in presented):
            return None
        detail = (
            "the API key is not valid"
            if presented
            else "an API key is required: send `Authorization: Bearer <key>` or `X-API-Key: <key>`"
        )
        return problem_response(401, detail, headers={"WWW-Authenticate": CHALLENGE})


class APIKeyMiddleware:
    """Refuse (401 problem+json) protected requests without a valid API key.

    The app checks keys in its one layer (:class:`service.api.middleware.exchange.ExchangeMiddleware`);
    this standalone middleware applies the same :class:`APIKeys` to any other ASGI app.
    """

    def __init__(self, app: ASGIApp, *, keys: list[bytes], protect_metrics: bool) -> None:
        self.app = app
        self.keys = APIKeys(keys, protect_metrics=protect_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or answer 401 with a Bearer challenge."""
        if scope["type"] != "http" or not self.keys.protects(scope["path"]):
            await self.app(scope, receive, send)
            return
        refusal = self.keys.refusal(scope["headers"])
        if refusal is None:
            await self.app(scope, receive, send)
            return
        scope.setdefault("state", {})["error_type"] = "unauthorized"
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
