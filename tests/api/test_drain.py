"""Issue 6: the drain hook holds SIGTERM back from the server until the requests in flight are done."""

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Iterator

import pytest

from service.api.middleware.drain import install_drain_hook
from service.api.middleware.limits import Gate


@pytest.fixture
def server_handler() -> Iterator[list[tuple[int, float]]]:
    """Stand in for uvicorn's handlers: record which signal arrived and when."""
    seen: list[tuple[int, float]] = []
    originals = {
        sig: signal.signal(sig, lambda signum, frame: seen.append((signum, time.monotonic())))
        for sig in (signal.SIGTERM, signal.SIGINT)
    }
    yield seen
    for sig, handler in originals.items():
        signal.signal(sig, handler)


def run(scenario: Callable[[Gate], Awaitable[None]], **hook: float) -> Gate:
    gate = Gate()

    async def main() -> None:
        restore = install_drain_hook(gate, **hook)
        try:
            await scenario(gate)
        finally:
            restore()

    asyncio.run(main())
    return gate


async def until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def test_sigterm_waits_for_the_requests_in_flight(server_handler):
    async def scenario(gate: Gate) -> None:
        gate.in_flight = 1
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: gate.draining)
        assert gate.draining
        await asyncio.sleep(0.3)  # well past drain_s, but a request is in flight
        assert server_handler == []
        gate.in_flight = 0
        released = time.monotonic()
        await until(lambda: bool(server_handler))
        assert [sig for sig, _ in server_handler] == [signal.SIGTERM]
        assert server_handler[0][1] - released < 1.0

    run(scenario, drain_s=0.05, grace_s=30)


def test_sigterm_keeps_answering_for_the_minimum_window_even_when_idle(server_handler):
    async def scenario(gate: Gate) -> None:
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: bool(server_handler))
        assert [sig for sig, _ in server_handler] == [signal.SIGTERM]
        assert server_handler[0][1] - sent >= 0.4
        assert gate.draining

    run(scenario, drain_s=0.4, grace_s=30)


def test_sigint_skips_the_minimum_window(server_handler):
    async def scenario(gate: Gate) -> None:
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
        await until(lambda: bool(server_handler))
        assert [sig for sig, _ in server_handler] == [signal.SIGINT]
        assert server_handler[0][1] - sent < 5.0  # not the 30 s window
        assert gate.draining

    run(scenario, drain_s=30, grace_s=60)


def test_the_grace_period_ends_the_wait_whatever_is_in_flight(server_handler):
    async def scenario(gate: Gate) -> None:
        gate.in_flight = 3
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: bool(server_handler))
        assert [sig for sig, _ in server_handler] == [signal.SIGTERM]
        assert 0.3 <= server_handler[0][1] - sent < 5.0

    run(scenario, drain_s=0.0, grace_s=0.3)


def test_a_second_signal_goes_to_the_server_at_once_and_only_once(server_handler):
    async def scenario(gate: Gate) -> None:
        gate.in_flight = 1
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: gate.draining)
        await asyncio.sleep(0.1)
        assert server_handler == []
        os.kill(os.getpid(), signal.SIGTERM)
        await until(lambda: bool(server_handler))
        assert [sig for sig, _ in server_handler] == [signal.SIGTERM]
        gate.in_flight = 0  # the watcher must not hand the first signal over again
        await asyncio.sleep(0.3)
        assert [sig for sig, _ in server_handler] == [signal.SIGTERM]

    run(scenario, drain_s=0.0, grace_s=30)


def test_restore_puts_the_server_handlers_back(server_handler):
    before = signal.getsignal(signal.SIGTERM)

    async def scenario(gate: Gate) -> None:
        assert signal.getsignal(signal.SIGTERM) is not before

    run(scenario, drain_s=0, grace_s=0)
    assert signal.getsignal(signal.SIGTERM) is before


def test_no_hook_off_the_main_thread(server_handler):
    results: list[object] = []

    async def main() -> None:
        before = signal.getsignal(signal.SIGTERM)
        restore = install_drain_hook(Gate(), drain_s=0, grace_s=0)
        results.append(signal.getsignal(signal.SIGTERM) is before)
        restore()

    thread = threading.Thread(target=lambda: asyncio.run(main()))
    thread.start()
    thread.join()
    assert results == [True]
