"""Reading a request body: refused early when too large, and never allocated ahead of the bytes."""

import asyncio
import os
import tracemalloc

import numpy as np
import pytest
from starlette.requests import Request

from service.api.errors.problems import ProblemError
from service.api.formats.body import ALIGNMENT, PREALLOCATE_BYTES, read_body


def _request(chunks: list[bytes], declared: int | None) -> Request:
    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    messages = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive():
        return messages.pop(0)

    return Request({"type": "http", "method": "POST", "path": "/v1/x", "headers": headers}, receive)


def test_the_body_is_the_bytes_sent_in_order():
    chunks = [b"a" * 70_000, b"b" * 3, b"c" * 200_000]
    body = asyncio.run(read_body(_request(chunks, sum(map(len, chunks))), 1 << 20))
    assert isinstance(body, bytearray) and body == b"".join(chunks)


def test_a_declared_length_is_not_allocated_ahead_of_the_bytes():
    # A 40 MB buffer zero-filled up front is ~10,000 page faults in one step on the event
    # loop (~40 ms here, every other request waits); the buffer grows as bytes arrive instead.
    tracemalloc.start()
    try:
        body = asyncio.run(read_body(_request([b"x" * 1000], 40_000_000), 64 << 20))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert body == b"x" * 1000
    assert peak < 1 << 20


def test_too_large_is_413_from_the_declared_length_before_reading():
    with pytest.raises(ProblemError) as raised:
        asyncio.run(read_body(_request([], 2_000), 1_000))
    assert raised.value.status == 413 and "2000 bytes" in raised.value.detail


def test_too_large_is_413_while_streaming_without_a_declared_length():
    with pytest.raises(ProblemError) as raised:
        asyncio.run(read_body(_request([b"x" * 600, b"x" * 600], None), 1_000))
    assert raised.value.status == 413 and "exceeds the limit of 1000" in raised.value.detail


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(("kind", "align_at"), [("binary", 37), ("binary", 64), ("npz", 0)])
def test_large_binary_bodies_are_read_into_one_aligned_buffer(kind, align_at):
    size = PREALLOCATE_BYTES + 12_345
    data = os.urandom(size)
    chunks = [data[i : i + 65_536] for i in range(0, size, 65_536)]
    body = asyncio.run(read_body(_request(chunks, size), 64 << 20, kind=kind, align_at=align_at))
    assert isinstance(body, memoryview) and body.nbytes == size and body == data
    assert (np.frombuffer(body, np.uint8).ctypes.data + align_at) % ALIGNMENT == 0


def test_a_preallocated_buffer_is_touched_only_by_the_bytes_that_arrive():
    declared = 48 << 20
    rss: list[int] = []

    def chunks():
        yield b"x" * (1 << 20)
        rss.append(_rss_bytes())  # 1 MiB in: the other 47 MiB must not be resident
        yield b"x"

    request = _request([], declared)
    messages = iter(chunks())

    async def receive():
        chunk = next(messages)
        return {"type": "http.request", "body": chunk, "more_body": len(chunk) > 1}

    request._receive = receive
    before = _rss_bytes()
    with pytest.raises(ProblemError) as raised:  # the client stopped short of its Content-Length
        asyncio.run(read_body(request, 64 << 20, kind="binary"))
    assert raised.value.status == 400 and f"Content-Length says {declared}" in raised.value.detail
    assert rss[0] - before < 16 << 20  # not 48 MiB: no zero-fill, no pages ahead of the bytes


def test_a_body_longer_than_its_content_length_is_400():
    size = PREALLOCATE_BYTES
    request = _request([b"x" * size, b"y"], size)
    with pytest.raises(ProblemError) as raised:
        asyncio.run(read_body(request, 64 << 20, kind="npz"))
    assert raised.value.status == 400 and "longer than its Content-Length" in raised.value.detail
