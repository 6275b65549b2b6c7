"""`xent serve`'s HTTP protocol: a turn's writes to a connection held and sent as one (issue #22).

The wrapper is checked against a recording transport, then under the installed uvicorn serving
real sockets: the same bytes as uvicorn's own httptools protocol, a small answer in one send,
a streamed body chunk by chunk, keep-alive, pipelining and ``Connection: close``.
"""

import asyncio
import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from service.api import one_write
from service.api.one_write import HeldWrites, OneWriteHttpTools
from service.api.serving import http_protocol
from tests.serving.server import free_port


class Recording:
    """A transport that notes what reaches it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def writelines(self, lines: list[bytes]) -> None:
        self.calls.append(("writelines", list(lines)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def get_write_buffer_size(self) -> int:
        return 7

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.calls.append(("limits", (high, low)))


def test_a_turns_writes_go_out_together_in_order_at_its_end():
    async def run() -> Recording:
        transport = Recording()
        held = HeldWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"head")
        held.writelines([b"body", b"tail"])
        assert transport.calls == [] and held.get_write_buffer_size() == 7 + 12  # held, not sent
        await asyncio.sleep(0)
        assert transport.calls == [("writelines", [b"head", b"body", b"tail"])]
        held.write(b"next turn")  # a later turn: on its own, as a plain write
        await asyncio.sleep(0)
        return transport

    transport = asyncio.run(run())
    assert transport.calls[1:] == [("write", b"next turn")]


def test_closing_sends_what_is_held_first_and_abort_drops_it():
    async def run() -> tuple[Recording, Recording]:
        loop = asyncio.get_running_loop()
        closed, aborted = Recording(), Recording()
        for transport, end in ((closed, "close"), (aborted, "abort")):
            held = HeldWrites(transport, loop)  # type: ignore[arg-type]
            held.write(b"answer")
            getattr(held, end)()
        await asyncio.sleep(0)  # the turn's send finds nothing left
        return closed, aborted

    closed, aborted = asyncio.run(run())
    assert closed.calls == [("write", b"answer"), ("close", None)]
    assert aborted.calls == [("abort", None)]


def test_a_connection_already_closing_gets_nothing_and_the_rest_is_the_transports():
    async def run() -> Recording:
        transport = Recording()
        held = HeldWrites(transport, asyncio.get_running_loop())  # type: ignore[arg-type]
        held.write(b"late")
        transport.closing = True  # the peer left during the turn
        await asyncio.sleep(0)
        held.set_write_buffer_limits(high=10)  # not one of its own: the transport's
        return transport

    assert asyncio.run(run()).calls == [("limits", (10, None))]


# -- under the installed uvicorn ---------------------------------------------------------------


async def _app(scope, receive, send) -> None:
    """Small answers; ``/stream`` sends two chunks, the second once the test has read the first."""
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/stream":
        start = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        await send(start)
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, FIRST_READ.wait, 5)
        await send({"type": "http.response.body", "body": b"second"})
        return
    answer = b'{"path": "%s", "got": %d}' % (scope["path"].encode(), len(body))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(answer)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


FIRST_READ = threading.Event()


@contextlib.contextmanager
def _serving(protocol: object) -> Iterator[int]:
    """uvicorn on uvloop serving :func:`_app` with `protocol` in a thread; yields its port."""
    port = free_port()
    config = uvicorn.Config(
        _app, port=port, http=protocol, loop="uvloop", lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def _request(path: str, body: bytes = b"", close: bool = False) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


def _read_answer(sock: socket.socket, buffer: bytearray) -> bytes:
    """One whole answer (head and its content-length body) from `sock`, the rest left in `buffer`."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed before an answer"
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    length = int(re.search(rb"content-length: (\d+)", bytes(buffer[:end])).group(1))  # type: ignore[union-attr]
    while len(buffer) < end + length:
        buffer += sock.recv(65536)
    answer = bytes(buffer[: end + length])
    del buffer[: end + length]
    return re.sub(rb"date: [^\r]*\r\n", b"", answer)  # the only header that differs run to run


def _exchanges(port: int) -> list[bytes]:
    """Keep-alive, pipelined and closing requests on real sockets; every answer, date left out."""
    answers = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        buffer = bytearray()
        for n in range(3):  # one connection, one request after another
            sock.sendall(_request(f"/one/{n}", b"x" * n))
            answers.append(_read_answer(sock, buffer))
        sock.sendall(_request("/two/a", b"abc") + _request("/two/b", b"de"))  # pipelined
        answers += [_read_answer(sock, buffer), _read_answer(sock, buffer)]
        sock.sendall(_request("/last", close=True))
        answers.append(_read_answer(sock, buffer))
        assert sock.recv(1) == b"" and not buffer  # closed after its answer, nothing more
    return answers


@pytest.mark.parametrize("size", [0, 5, 200_000])
def test_real_requests_get_the_bytes_uvicorn_would_send(size):
    with _serving(HttpToolsProtocol) as port:
        theirs = _exchanges(port)
    with _serving(OneWriteHttpTools) as port:
        ours = _exchanges(port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:  # a large body too
            sock.sendall(_request("/big", b"y" * size))
            big = _read_answer(sock, bytearray())
    assert ours == theirs and len(ours) == 6
    assert big.endswith(b'{"path": "/big", "got": %d}' % size)


def test_a_small_answer_leaves_in_one_send(monkeypatch):
    sent: list[int] = []
    original = HeldWrites.send_held

    def noting(self: HeldWrites) -> None:
        if self.held:
            sent.append(len(self.held))
        original(self)

    monkeypatch.setattr(HeldWrites, "send_held", noting)
    with (
        _serving(OneWriteHttpTools) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        for _ in range(3):
            sock.sendall(_request("/small", b"{}"))
            _read_answer(sock, bytearray())
    assert sent == [2, 2, 2]  # head and body of each answer: one writelines, one writev


def test_a_streamed_body_leaves_chunk_by_chunk():
    """The first chunk reaches the client while the app still waits to send the second."""
    FIRST_READ.clear()
    with (
        _serving(OneWriteHttpTools) as port,
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        sock.sendall(_request("/stream"))
        received = b""
        while b"first;" not in received:
            chunk = sock.recv(65536)
            assert chunk, "closed before the first chunk"
            received += chunk
        assert b"second" not in received
        FIRST_READ.set()
        while not received.endswith(b"0\r\n\r\n"):
            received += sock.recv(65536)
    assert b"second" in received


def test_xent_serve_runs_it_on_the_uvicorn_it_was_written_for():
    """What the wrapper relies on: every write through the transport of `connection_made`, `self.loop`."""
    assert http_protocol() == one_write.PROTOCOL
    assert uvicorn.importer.import_from_string(one_write.PROTOCOL) is OneWriteHttpTools
    source = HttpToolsProtocol.connection_made.__code__.co_names
    assert "transport" in source and "FlowControl" in source

    async def made() -> bool:
        loop = asyncio.get_running_loop()
        state = uvicorn.server.ServerState()
        protocol = OneWriteHttpTools(uvicorn.Config(_app), server_state=state, app_state={}, _loop=loop)
        return protocol.loop is loop

    assert asyncio.run(made())
