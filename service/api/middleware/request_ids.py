"""Request ids: taken from ``X-Request-ID`` when sane, otherwise made up, once per request.

A sane id is 1-128 characters of ``A-Z a-z 0-9 . _ : @ / + = -``. A generated one is 32 hex
digits: a random per-process prefix and a counter. :class:`service.api.middleware.exchange.ExchangeMiddleware`
keeps it in ``scope["state"]["request_id"]``, echoes it on the response and the access log
writes it.
"""

import os
import re
import secrets
from collections.abc import Iterator

from starlette.types import Scope

REQUEST_ID_HEADER = b"x-request-id"
SANE_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id(scope: Scope) -> str:
    """The request's own id when it sent a sane one, else a new one."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER and SANE_ID.fullmatch(value):
            return value.decode()
    return new_id()


class _Ids:
    """32 hex digits: 16 random ones drawn per process (again after a fork), then a 64-bit counter.

    Unique within a worker, and across workers and restarts but for a 2^-64 chance; an id
    names a request, it is no secret. ``uuid4().hex`` read 16 bytes of ``os.urandom`` per
    request (a system call; ~3 µs of a 32×10 request's ~400 µs in the app). The ids are
    formatted :attr:`BATCH` at a time: a request takes the next one made (formatting one
    per request ran the format-spec parser and the integer formatter each time, cold code
    for the processor's caches amid a request's other work).
    """

    BATCH = 256

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.count = 0  # ids made so far
        self.made: Iterator[str] = iter(())

    def __call__(self) -> str:
        identifier = next(self.made, None)
        if identifier is None:
            start, prefix = self.count + 1, self.prefix
            self.count += self.BATCH
            self.made = iter([f"{prefix}{n:016x}" for n in range(start, start + self.BATCH)])
            identifier = next(self.made)
        return identifier


new_id = _Ids()
