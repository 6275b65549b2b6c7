"""A minimal HTTP/1.1 keep-alive load generator, run as its own process.

    python -m benchmarks._rawload PORT PATH CLIENTS SECONDS BODY_FILE CONTENT_TYPE

Each client sends the same prebuilt request bytes and reads the response by its
Content-Length, nothing more, so one core drives a server harder than a full HTTP client
library can: the server, not the client, is what runs out. Prints one JSON line:
requests/s, p50 and p99 latency in ms, and the count of non-200 answers.
"""

import asyncio
import json
import sys
import time
from pathlib import Path

from benchmarks._timing import load_summary


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bool:
    """Send prebuilt `request` bytes; read the answer by its Content-Length. Whether it was a 200."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def _client(port: int, request: bytes, deadline: float, latencies: list[float], bad: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            ok = await exchange(reader, writer, request)
            latencies.append(time.perf_counter() - start)
            if not ok:
                bad.append(1)
    finally:
        writer.close()


async def run(
    port: int, path: str, clients: int, seconds: float, body: bytes, content_type: str
) -> dict[str, float]:
    """Drive `clients` keep-alive connections for `seconds`; return rps, p50/p99 ms and non-200 count."""
    request = (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    bad: list[int] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(_client(port, request, deadline, latencies, bad) for _ in range(clients)))
    elapsed = time.perf_counter() - start
    return {**load_summary(latencies, elapsed), "non_200": float(len(bad))}


def main(argv: list[str]) -> int:
    port, path, clients, seconds, body_file, content_type = argv
    body = Path(body_file).read_bytes()
    result = asyncio.run(run(int(port), path, int(clients), float(seconds), body, content_type))
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
