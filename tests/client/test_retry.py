"""Retries, timeouts, API keys and non-problem error bodies."""

import socket
import time

import httpx
import numpy as np
import pytest

from service.app import create_app
from service.client import Retry, XentAPIError, XentClient, XentTimeoutError
from service.settings import Settings
from tests.live import bound_socket, running, url_of


def test_client_retries_until_a_late_server_comes_up():
    sock = bound_socket()  # bound but not listening yet: connections are refused
    with (
        running(create_app(Settings()), sock, delay=0.5) as url,
        XentClient(url, retry=Retry(retries=20, backoff=0.1, cap=0.5)) as client,
    ):
        result = client.cross_entropy(logits=np.zeros((2, 2)), labels=[0, 1])
    assert result.loss == pytest.approx(np.log(2))


def test_read_timeout_raises_timeout_error_without_retrying():
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with (
            XentClient(url_of(silent), timeout=0.3, retry=Retry(retries=3)) as client,
            pytest.raises(XentTimeoutError),
        ):
            client.request("/healthz")
        assert time.monotonic() - started < 1.5


def _scripted(statuses: list[int], seen: list[httpx.Request], headers=None) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        status = statuses[min(len(seen), len(statuses)) - 1]
        if status == 200:
            return httpx.Response(200, json={"status": "ok"})
        problem = {"type": "about:blank", "title": "Service Unavailable", "status": status, "detail": "busy"}
        return httpx.Response(status, json=problem, headers=headers or {})

    return httpx.MockTransport(handle)


def test_503_is_retried_then_succeeds():
    seen: list[httpx.Request] = []
    transport = _scripted([503, 503, 200], seen)
    with XentClient("http://xent", transport=transport, retry=Retry(retries=3, backoff=0.001)) as client:
        assert client.request("/readyz") == {"status": "ok"}
    assert len(seen) == 3


def test_503_gives_up_after_the_retries_with_the_problem():
    seen: list[httpx.Request] = []
    transport = _scripted([503], seen)
    with (
        XentClient("http://xent", transport=transport, retry=Retry(retries=2, backoff=0.001)) as client,
        pytest.raises(XentAPIError, match="503 Service Unavailable: busy") as caught,
    ):
        client.request("/v1/cross-entropy", {"labels": np.array([0])})
    assert len(seen) == 3
    assert caught.value.problem.detail == "busy"
    assert seen[0].content == seen[2].content  # the same body went out each time


def test_retry_after_is_honoured():
    seen: list[httpx.Request] = []
    transport = _scripted([503, 200], seen, headers={"Retry-After": "0.3"})
    with XentClient("http://xent", transport=transport, retry=Retry(backoff=0.001)) as client:
        started = time.monotonic()
        client.request("/readyz")
    assert time.monotonic() - started >= 0.3


def test_422_is_not_retried():
    seen: list[httpx.Request] = []
    with (
        XentClient("http://xent", transport=_scripted([422], seen)) as client,
        pytest.raises(XentAPIError),
    ):
        client.request("/v1/cross-entropy", {})
    assert len(seen) == 1


def test_backoff_is_jittered_exponential_and_capped():
    retry = Retry(backoff=0.5, cap=3.0)
    delays = np.array([[retry.delay(attempt) for attempt in range(5)] for _ in range(200)])
    assert (delays >= 0).all()
    np.testing.assert_array_less(delays.max(axis=0), [0.5, 1.0, 2.0, 3.0, 3.0] + np.full(5, 1e-12))
    assert delays[:, 4].max() > 2.0  # the cap is reached, not a lower ceiling


def test_api_key_is_sent_as_bearer_token():
    seen: list[httpx.Request] = []
    with XentClient("http://xent", api_key="s3cret", transport=_scripted([200], seen)) as client:
        client.request("/healthz")
    assert seen[0].headers["authorization"] == "Bearer s3cret"
    assert seen[0].headers["user-agent"].startswith("xent-client/")


def test_non_json_error_body_becomes_a_problem():
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="<html>bad gateway</html>"))
    with (
        XentClient("http://xent", transport=transport, retry=Retry(retries=0)) as client,
        pytest.raises(XentAPIError) as caught,
    ):
        client.request("/healthz")
    assert caught.value.status == 502
    assert caught.value.problem.title == "Bad Gateway"
    assert caught.value.detail == "<html>bad gateway</html>"


def test_async_client_retries_503_and_connection_errors():
    import asyncio

    from service.client import AsyncXentClient

    calls = []

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        if len(calls) == 2:
            return httpx.Response(503, json={"title": "Service Unavailable", "status": 503, "detail": "busy"})
        return httpx.Response(200, json={"status": "ok"})

    async def call():
        transport = httpx.MockTransport(handle)
        async with AsyncXentClient("http://xent", transport=transport, retry=Retry(backoff=0.001)) as client:
            return await client.request("/readyz")

    assert asyncio.run(call()) == {"status": "ok"}
    assert len(calls) == 3


def test_async_client_retries_until_a_late_server_comes_up():
    import asyncio

    from service.client import AsyncXentClient

    sock = bound_socket()

    async def call(url):
        async with AsyncXentClient(url, retry=Retry(retries=20, backoff=0.1, cap=0.5)) as client:
            return await client.divergence(p_probs=[[0.5, 0.5]], q_probs=[[0.5, 0.5]])

    with running(create_app(Settings()), sock, delay=0.5) as url:
        result = asyncio.run(call(url))
    assert result.mean.kl_pq == 0
