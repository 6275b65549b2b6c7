"""When and how long the clients wait before sending a request again.

Scoring is a pure function of the request, so every Xent call is safe to repeat.
"""

import random
from dataclasses import dataclass

import httpx

#: Transport errors after which the request is sent again. A read timeout is not among
#: them: a request that took too long would most likely take too long again.
RETRY_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ReadError,
    httpx.WriteError,
    httpx.RemoteProtocolError,
)


@dataclass(frozen=True)
class Retry:
    """Retry policy: exponential backoff with full jitter, honouring ``Retry-After``.

    Attempt ``i`` (0-based) waits a uniform random time in ``[0, min(cap, backoff · 2^i)]``
    (AWS's "full jitter"); a ``Retry-After`` of at most `cap` seconds on a retried status
    is waited instead.

    Attributes
    ----------
    retries : int
        Requests sent again after the first; 0 disables retrying.
    backoff : float
        Base delay in seconds.
    cap : float
        Longest single wait in seconds.
    statuses : frozenset of int
        Response statuses that are retried (the server is busy or restarting).
    """

    retries: int = 3
    backoff: float = 0.25
    cap: float = 8.0
    statuses: frozenset[int] = frozenset({502, 503, 504})

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        if response is not None:
            after = _retry_after(response)
            if after is not None and after <= self.cap:
                return after
        return random.uniform(0, min(self.cap, self.backoff * 2**attempt))


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds, when given as a number (the HTTP-date form is ignored)."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None
