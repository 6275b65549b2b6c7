"""The HTTP protocol ``xent serve`` runs: uvicorn's httptools protocol, a turn's writes sent as one.

uvicorn writes a response's status line and headers when the app sends ``http.response.start``
and its body when the app sends ``http.response.body``: two ``write`` system calls, two TCP
segments, for every small answer. On loopback each one costs the sender the whole way through
the network stack to the receiver's socket (~40 µs of a 32×10 cross-entropy request's ~220 µs
of server CPU went to the second one, measured in docs/performance.md). Here the connection's
transport is wrapped: what the protocol writes during one turn of the event loop is held and
sent at the end of that turn (``loop.call_soon``) as one ``writelines`` — one ``writev``, one
segment for a small answer — in the order written. Nothing is held past the turn it was written
in, so a streamed body still leaves chunk by chunk as the app yields between chunks; closing
sends what is held first; a connection already closing (the peer left) drops it, as its
transport would.

The wrapper relies on uvicorn's ``HttpToolsProtocol`` taking every write through the
transport it is given in ``connection_made`` and keeping its event loop as ``self.loop``;
``tests/api/test_one_write.py`` checks both against the installed uvicorn, and serves real
requests (keep-alive, pipelined, streamed, ``Connection: close``) both ways to the same bytes.
"""

import asyncio
from collections.abc import Iterable
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: What ``uvicorn.run(http=...)`` is given: a path, so that spawned workers import it themselves.
PROTOCOL = "service.api.one_write:OneWriteHttpTools"


class HeldWrites:
    """`transport`, but writes made in one turn of `loop` go out together at the end of that turn."""

    __slots__ = (
        "transport",
        "loop",
        "held",
        "is_closing",
        "get_extra_info",
        "pause_reading",
        "resume_reading",
    )

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self.held: list[bytes] = []
        # called on every request: bound once instead of looked up through `__getattr__`
        self.is_closing = transport.is_closing
        self.get_extra_info = transport.get_extra_info
        self.pause_reading = transport.pause_reading
        self.resume_reading = transport.resume_reading

    def write(self, data: bytes) -> None:
        """Hold `data` until the end of this turn (the turn's first write schedules the send)."""
        held = self.held
        if not held:
            self.loop.call_soon(self.send_held)
        held.append(data)

    def writelines(self, lines: Iterable[bytes]) -> None:
        """Hold each of `lines`, as :meth:`write` does."""
        for data in lines:
            self.write(data)

    def send_held(self) -> None:
        """Send what is held, as one ``writelines``; dropped if the connection is already closing."""
        held = self.held
        if not held:
            return
        self.held = []
        if self.transport.is_closing():
            return  # the peer left (or the connection was aborted): the transport would refuse it
        if len(held) == 1:
            self.transport.write(held[0])
        else:
            self.transport.writelines(held)

    def get_write_buffer_size(self) -> int:
        """The transport's buffered bytes and those held here."""
        return self.transport.get_write_buffer_size() + sum(map(len, self.held))

    def close(self) -> None:
        """Send what is held, then close (the transport sends its buffer before it closes)."""
        self.send_held()
        self.transport.close()

    def abort(self) -> None:
        """Drop what is held and close at once."""
        self.held = []
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class OneWriteHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol on a :class:`HeldWrites` transport."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Take the connection as uvicorn does, its writes held until the end of each turn."""
        super().connection_made(HeldWrites(transport, self.loop))  # type: ignore[arg-type]
