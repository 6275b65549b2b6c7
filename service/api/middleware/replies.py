"""What the direct layer gives back to the server: a body's first message once more, a finished response.

:class:`Replay` hands a request it read the first message of to the general layer;
:class:`Reply` sends a response with the request id, noting it on the exchange.
"""

from starlette.responses import Response
from starlette.types import Message, Receive, Send

from ..formats.answers import JSON
from .codings import GzipSend
from .exchange import Exchange
from .request_ids import REQUEST_ID_HEADER


class Replay:
    """A ``receive`` that gives `first` once more, then the request's own messages."""

    __slots__ = ("first", "receive")

    def __init__(self, first: Message, receive: Receive) -> None:
        self.first: Message | None = first
        self.receive = receive

    async def __call__(self) -> Message:
        """`first`, then the request's own messages."""
        first, self.first = self.first, None
        return first if first is not None else await self.receive()


#: A JSON answer's content type header, as ``BytesResponse`` writes it.
_JSON = (b"content-type", JSON)


class Reply:
    """Sends a finished response with the request id, noting its status and size on the exchange.

    With `gzip_ok` the messages pass through :class:`~.codings.GzipSend` first, and the bytes
    counted are those sent, as in the general layer.
    """

    __slots__ = ("send", "exchange", "echoed", "started", "out")

    def __init__(self, send: Send, exchange: Exchange, echoed: tuple[bytes, bytes], gzip_ok: bool) -> None:
        self.send = send
        self.exchange = exchange
        self.echoed = echoed
        self.started = False
        self.out: Send | None = GzipSend(self._counted) if gzip_ok else None

    async def __call__(self, response: Response) -> None:
        """Send `response` (status, headers with the request id, body), then its background task."""
        headers = response.raw_headers  # lower-case names, as Starlette and BytesResponse write them
        for key, _ in headers:
            if key == REQUEST_ID_HEADER:  # the request's id, not one a route set
                headers = [(k, v) for k, v in headers if k != REQUEST_ID_HEADER]
                break
        await self._send(response.status_code, [*headers, self.echoed], response.body)
        if response.background is not None:
            await response.background()

    async def json(self, body: bytes) -> None:
        """Send a route's plain answer: 200 and JSON `body`, with the headers ``BytesResponse(body)`` has."""
        await self._send(200, [(b"content-length", str(len(body)).encode()), _JSON, self.echoed], body)

    async def _send(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes | memoryview) -> None:
        exchange = self.exchange
        exchange.status = status
        self.started = True
        start = {"type": "http.response.start", "status": status, "headers": headers}
        message = {"type": "http.response.body", "body": body}
        if self.out is None:
            exchange.bytes_out += len(body)
            await self.send(start)
            await self.send(message)
        else:
            await self.out(start)
            await self.out(message)

    async def _counted(self, message: Message) -> None:
        if message["type"] == "http.response.body":
            self.exchange.bytes_out += len(message.get("body", b""))
        await self.send(message)
