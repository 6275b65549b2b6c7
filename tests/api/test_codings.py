"""Issue 21, compression: gzip request bodies decoded bounded, other codings 415, large answers gzipped."""

import asyncio
import gzip
import json
import sys
import tracemalloc
import zlib

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from scipy.special import log_softmax

from service.api.errors.problems import ProblemError
from service.api.middleware.codings import CHUNK, MIN_GZIP_BYTES, DecodedReceive, accepts_gzip
from service.app import create_app
from service.settings import Settings
from tests.conftest import assert_problem

JSON = {"content-type": "application/json"}


def _body(rng: np.random.Generator, n: int, k: int = 3) -> tuple[dict, np.ndarray]:
    logits = rng.standard_normal((n, k))
    labels = rng.integers(0, k, n)
    expected = -log_softmax(logits, axis=1)[np.arange(n), labels]
    return {"logits": logits.tolist(), "labels": labels.tolist(), "per_sample": True}, expected


@pytest.mark.parametrize("coding", ["gzip", "x-gzip", "GZip"])
def test_a_gzip_body_is_scored_like_the_plain_one(client, rng, coding):
    body, expected = _body(rng, 50)
    plain = client.post("/v1/cross-entropy", json=body)
    packed = gzip.compress(json.dumps(body).encode())
    coded = client.post("/v1/cross-entropy", content=packed, headers={**JSON, "content-encoding": coding})
    assert coded.status_code == 200, coded.text
    assert coded.json() == plain.json()
    np.testing.assert_allclose(coded.json()["losses"], expected, rtol=1e-12)


def test_a_gzip_body_in_several_members_and_network_pieces_is_decoded_whole(rng):
    body, expected = _body(rng, 4_000)
    text = json.dumps(body).encode()
    half = len(text) // 2
    packed = gzip.compress(text[:half]) + gzip.compress(text[half:])  # RFC 1952: members concatenate

    async def post() -> httpx.Response:
        async def pieces():
            for i in range(0, len(packed), 777):
                yield packed[i : i + 777]

        transport = httpx.ASGITransport(app=create_app(Settings()))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            headers = {**JSON, "content-encoding": "gzip"}
            return await client.post("/v1/cross-entropy", content=pieces(), headers=headers)

    response = asyncio.run(post())
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["losses"], expected, rtol=1e-12)


def test_a_zstd_body_is_decoded_when_the_extra_is_installed(client, rng):
    zstd = (
        pytest.importorskip("backports.zstd")
        if sys.version_info < (3, 14)
        else pytest.importorskip("compression.zstd")
    )
    body, expected = _body(rng, 3_000)
    text = json.dumps(body).encode()
    packed = zstd.compress(text[:1000]) + zstd.compress(text[1000:])  # two frames
    response = client.post("/v1/cross-entropy", content=packed, headers={**JSON, "content-encoding": "zstd"})
    assert response.status_code == 200, response.text
    np.testing.assert_allclose(response.json()["losses"], expected, rtol=1e-12)
    bomb = zstd.compress(b" " * (64 << 20))
    with TestClient(create_app(Settings(max_body_bytes=1 << 20))) as small:
        refused = small.post("/v1/cross-entropy", content=bomb, headers={**JSON, "content-encoding": "zstd"})
    assert_problem(refused, 413, match="once zstd-decoded")


def test_identity_is_the_body_as_it_is(client, rng):
    body, expected = _body(rng, 5)
    response = client.post(
        "/v1/cross-entropy",
        content=json.dumps(body).encode(),
        headers={**JSON, "content-encoding": "identity"},
    )
    np.testing.assert_allclose(response.json()["losses"], expected, rtol=1e-12)


@pytest.mark.parametrize("coding", ["br", "deflate", "compress", "gzip, gzip"])
def test_an_unsupported_coding_is_a_415_naming_it(client, coding):
    response = client.post(
        "/v1/cross-entropy", content=b"\x00\x01", headers={**JSON, "content-encoding": coding}
    )
    assert_problem(response, 415, match=f"Content-Encoding '{coding}' is not supported")
    assert "gzip" in response.headers["accept-encoding"]


def test_a_gzip_body_that_is_not_gzip_or_ends_early_is_a_400(client, rng):
    body, _ = _body(rng, 50)
    packed = gzip.compress(json.dumps(body).encode())
    garbage = client.post(
        "/v1/cross-entropy", content=b"{not gzip}", headers={**JSON, "content-encoding": "gzip"}
    )
    assert_problem(garbage, 400, match="not valid gzip data")
    cut = client.post("/v1/cross-entropy", content=packed[:-20], headers={**JSON, "content-encoding": "gzip"})
    assert_problem(cut, 400, match="ends before its gzip data does")


def test_a_zip_bomb_is_a_413_before_it_is_inflated_and_memory_stays_bounded():
    limit = 1 << 20
    packed = gzip.compress(b" " * (256 << 20), compresslevel=9)  # 256 MiB of spaces: ~250 KB coded
    assert len(packed) < limit // 2  # the coded body is well within the limit
    tracemalloc.start()
    try:
        with TestClient(create_app(Settings(max_body_bytes=limit))) as client:
            tracemalloc.reset_peak()
            response = client.post(
                "/v1/cross-entropy", content=packed, headers={**JSON, "content-encoding": "gzip"}
            )
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_problem(response, 413, match=f"exceeds the limit of {limit} bytes once gzip-decoded")
    assert peak < 8 * limit  # the limit, a chunk, the coded body and copies of it; never 256 MiB


def test_decoding_stops_at_the_limit_without_reading_the_rest():
    """The 413 comes after at most limit + one chunk of decoded bytes; the rest is never decoded."""
    limit = 3 * CHUNK
    packed = gzip.compress(b"0" * (64 << 20))
    messages = [{"type": "http.request", "body": packed, "more_body": False}]

    async def receive():
        return messages.pop(0)

    async def drain() -> int:
        decoded = DecodedReceive(receive, "gzip", limit)
        total = 0
        with pytest.raises(ProblemError) as refused:
            while True:
                message = await decoded()
                total += len(message["body"])
                assert len(message["body"]) <= CHUNK
        assert refused.value.status == 413
        return total

    assert asyncio.run(drain()) <= limit


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip", True),
        (b"gzip, deflate, br", True),
        (b"deflate", False),
        (b"gzip;q=0", False),
        (b"gzip; q=0.000", False),
        (b"gzip;q=0.5", True),
        (b"*", True),
        (b"*, gzip;q=0", False),
        (b"identity", False),
    ],
)
def test_accept_encoding_is_read_with_its_weights(value, expected):
    assert accepts_gzip(value) is expected


def _raw_post(client: TestClient, body: dict, accept: str | None) -> tuple[httpx.Headers, bytes]:
    """A POST's headers and its body as sent (httpx would inflate a gzipped one silently)."""
    headers = {**JSON, "accept-encoding": accept} if accept else {**JSON, "accept-encoding": "identity"}
    request = client.build_request(
        "POST", "/v1/cross-entropy", content=json.dumps(body).encode(), headers=headers
    )
    response = client.send(request, stream=True)
    raw = b"".join(response.iter_raw())
    response.close()
    return response.headers, raw


def test_a_large_answer_is_gzipped_when_accepted(client, rng):
    body, expected = _body(rng, 2_000)
    headers, raw = _raw_post(client, body, "gzip")
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(raw)
    text = gzip.decompress(raw)
    assert len(raw) < 0.6 * len(text)  # random 17-digit floats: ~half
    np.testing.assert_allclose(json.loads(text)["losses"], expected, rtol=1e-12)
    assert headers["x-request-id"]


def test_an_answer_is_plain_when_not_accepted_or_small_or_binary(client, rng):
    body, _ = _body(rng, 2_000)
    headers, raw = _raw_post(client, body, None)
    assert "content-encoding" not in headers and len(json.loads(raw)["losses"]) == 2_000
    headers, raw = _raw_post(client, {"logits": [[1.0, 0.0]], "labels": [0]}, "gzip")
    assert len(raw) < MIN_GZIP_BYTES and "content-encoding" not in headers
    headers, raw = _raw_post(client, {**body, "binary_data_output": True}, "gzip")
    assert headers["content-type"] == "application/octet-stream" and len(raw) > 16_000
    assert "content-encoding" not in headers


def test_metrics_and_problems_are_gzipped_too(client):
    response = client.get("/metrics", headers={"accept-encoding": "gzip"})
    assert response.headers["content-encoding"] == "gzip"  # httpx decoded it:
    assert "xent_http_requests_total" in response.text
    long_field = {"logits": [[1.0, 0.0]], "labels": [0], "x" * 2_000: 1}
    problem = client.post("/v1/cross-entropy", json=long_field, headers={"accept-encoding": "gzip"})
    assert problem.status_code == 422 and problem.headers.get("content-encoding") in (None, "gzip")
    assert problem.json()["status"] == 422


def test_a_streamed_answer_is_gzipped_piece_by_piece():
    from starlette.responses import StreamingResponse

    from service.api.middleware.codings import GzipSend

    pieces = [b'{"a": "' + b"x" * 5_000, b"y" * 5_000, b'"}']
    sent: list = []

    async def send(message):
        sent.append(message)

    async def receive():
        await asyncio.sleep(3600)  # the client stays

    async def run():
        response = StreamingResponse(iter(pieces), media_type="application/json")
        scope = {"type": "http", "method": "GET", "asgi": {"spec_version": "2.4"}}
        await response(scope, receive, GzipSend(send))

    asyncio.run(run())
    headers = dict(sent[0]["headers"])
    assert headers[b"content-encoding"] == b"gzip" and b"content-length" not in headers
    assert sent[-1]["more_body"] is False
    assert zlib.decompress(b"".join(m.get("body", b"") for m in sent[1:]), 16 + zlib.MAX_WBITS) == b"".join(
        pieces
    )
