"""Load limits on the scoring routes: a concurrency cap, a compute deadline, and draining.

All three answer ``503 Service Unavailable`` as problem+json with ``Retry-After``:

- more than ``max_concurrency`` scoring requests in flight in this worker (so memory
  stays bounded under a burst: a refused request is never read);
- a request still computing after ``request_timeout_s``. Its 503 goes out at once and
  the event loop moves on. The request runs under a deadline (:mod:`service.core.cancel`,
  set here before the request's task starts and copied into its worker thread), and the
  core's long loops check it between blocks of work, so the computation stops within one
  block (milliseconds) with :class:`~service.core.cancel.Cancelled`: the thread, the
  memory and the concurrency slot are freed. That exception is swallowed here, so it makes
  no second response, no 500 and no error log; the request counts once, as ``timeout``.
  A single NumPy call between two checkpoints cannot be interrupted: until it returns,
  the request keeps its slot, so abandoned work still counts against the cap.
  Small bodies that their route scores on the event loop (``inline_bytes``, see
  :func:`service.api.deps.scoring`; ``inline_named`` for a monitor's small writes while its
  store commits without blocking) skip the task: their computation is bounded by their
  size, and a plain timeout still bounds a slow upload;
- the worker is shutting down (SIGTERM seen, see :mod:`service.api.middleware.drain`): requests
  in flight complete, new ones are refused with ``Connection: close``.

The :class:`Gate` also tells when a worker has gone idle: ``idle_s`` after its last scoring
request finished with none since, it calls ``on_idle`` once (``xent serve``: give the freed
memory back to the system, :func:`service.api.serving.trim_malloc`).
"""

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.core.cancel import Cancelled, deadline
from service.settings import Settings

from ..errors.problems import problem_response
from .dispatch import NamedPost
from .metrics import ERROR_LOGGER

PREFIX = ("/v1/", "/v2/models/")  # /v1 scoring and /v2 (Open Inference Protocol) models


@dataclass(slots=True)
class Gate:
    """Per-worker load state shared by the middleware and the shutdown hook.

    :meth:`enter` and :meth:`leave` run on the event loop. When the last request in flight
    leaves, a timer is set (one at a time) for ``idle_s`` later; it calls ``on_idle`` if no
    request has come in the meantime, and re-arms for the rest of the wait if one came and went.
    """

    in_flight: int = 0
    draining: bool = False
    on_idle: Callable[[], object] | None = None
    idle_s: float = 1.0
    _idle_since: float = 0.0
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    def enter(self) -> None:
        """A scoring request starts."""
        self.in_flight += 1

    def leave(self) -> None:
        """A scoring request is done (answered, refused after entering, or abandoned and stopped).

        The last one out notes the time by ``time.monotonic`` (a request's ``loop.time()``
        would look the loop up first, a ``getpid`` system call on Python 3.11) and arms the
        timer if none is set.
        """
        self.in_flight -= 1
        if self.in_flight or self.on_idle is None:
            return
        self._idle_since = time.monotonic()
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.idle_s, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        if self.in_flight:
            return  # its leave() arms the next timer
        rest = self._idle_since + self.idle_s - time.monotonic()
        if rest > 0:  # a request came and went meanwhile: wait out the rest
            self._timer = asyncio.get_running_loop().call_later(rest, self._check_idle)
        elif self.on_idle is not None:
            self.on_idle()


class LimitsMiddleware:
    """Concurrency cap, compute deadline and drain for paths under /v1/ and /v2/models/."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        gate: Gate,
        inline_bytes: dict[str, int] | None = None,
        inline_named: Sequence[NamedPost] = (),
    ) -> None:
        self.app = app
        self.settings = settings
        self.inline_bytes = inline_bytes or {}  # path -> largest body its route scores on the event loop
        #: Routes with a name in their path that may handle a body on the event loop (a monitor's
        #: writes), each with its bound.
        self.inline_named = [
            (post, bound) for post in inline_named if (bound := post.inline_bytes) is not None
        ]
        self.max_concurrency = settings.max_concurrency
        self.timeout = settings.request_timeout_s
        self.retry_after = str(settings.retry_after_s)
        self.gate = gate
        self._background: set[asyncio.Task[Any]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse, or run the request under the deadline while holding a slot."""
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        await self.limit(scope, receive, send, declared_length(scope["headers"]))

    async def limit(self, scope: Scope, receive: Receive, send: Send, length: int | None) -> None:
        """Apply the limits to a /v1 request whose body declared `length` bytes (None: not declared).

        :class:`~service.api.middleware.exchange.ExchangeMiddleware` calls this with the length
        it read in its one pass over the headers.
        """
        refusal = self.gate_refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        limit = self.inline_bytes.get(scope["path"], 0) or self._named_limit(scope)
        if limit and length is not None and length <= limit:
            await self._run_inline(scope, receive, send)
            return
        self.gate.enter()
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if timed_out:
                return  # the 503 has been sent; the late result is dropped
            started = True
            await send(message)

        timed_out = False
        with deadline(self.timeout):  # copied into the task's context, and from there into its threads
            task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        task.add_done_callback(self._release)
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if done and not (_was_cancelled(task) and not started):
            task.result()
            return
        if started:  # the response is already streaming: let it finish
            await task
            return
        timed_out = True
        if not done:
            self._background.add(task)  # keep a reference until it stops (and releases its slot)
        await self._refuse_timeout(scope, receive, send)

    def _named_limit(self, scope: Scope) -> int:
        """The on-loop bound of a named route's request (a monitor's write); 0 unless its route says so."""
        for post, bound in self.inline_named:
            if post.name(scope["path"]) is not None:
                return bound(scope)
        return 0

    async def _run_inline(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A small body scored on the event loop: no task of its own, the deadline as a plain timeout.

        Its computation cannot be interrupted (it holds the loop), but it is bounded by the body
        size; the timeout bounds a slow upload, which would otherwise hold a slot indefinitely.
        The timeout is one timer handle that cancels this task when it fires (what
        ``asyncio.timeout`` does, without its per-request object and rescheduling).
        """
        started = expired = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        task = asyncio.current_task()
        assert task is not None  # a request is always served by a task
        cancelling = task.cancelling()

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        self.gate.enter()
        timer = asyncio.get_running_loop().call_later(self.timeout, expire)
        try:
            with deadline(self.timeout):
                await self.app(scope, receive, tracking_send)
        except asyncio.CancelledError:
            if not expired or task.uncancel() > cancelling:
                raise  # cancelled from outside (the client left, the server stops), not by the timer
            if started:
                raise TimeoutError from None
            await self._refuse_timeout(scope, receive, send)
        except Cancelled:
            if started:
                raise
            await self._refuse_timeout(scope, receive, send)
        finally:
            timer.cancel()
            self.gate.leave()

    def _release(self, task: "asyncio.Task[Any]") -> None:
        self.gate.leave()
        abandoned = task in self._background
        self._background.discard(task)
        if task.cancelled():
            return
        error = task.exception()  # retrieved here: a request still being awaited re-raises it itself
        if abandoned and error is not None and not isinstance(error, Cancelled | ClientDisconnect):
            # Its 503 went out at the deadline; nobody else will see this error. (A client that
            # hung up after that 503 while its body was still being read is no error of ours.)
            ERROR_LOGGER.error("Unhandled error in a request abandoned at its deadline", exc_info=error)

    def gate_refusal(self, scope: Scope) -> Response | None:
        """The 503 for a request arriving while draining or with every slot taken; None if it may go on."""
        if self.gate.draining:
            return self.refusal(scope, "draining", "the server is shutting down; retry")
        if self.gate.in_flight >= self.max_concurrency:
            in_flight, most = self.gate.in_flight, self.max_concurrency
            detail = f"{in_flight} requests are in flight, the limit is {most}; retry"
            return self.refusal(scope, "overloaded", detail)
        return None

    def timeout_refusal(self, scope: Scope) -> Response:
        """The 503 for a request stopped at its deadline."""
        detail = f"the request did not finish within {self.timeout:g} s; it was stopped"
        return self.refusal(scope, "timeout", detail)

    def refusal(self, scope: Scope, kind: str, detail: str) -> Response:
        """A 503 of `kind` (noted for the metrics and the log) with ``Retry-After``."""
        scope.setdefault("state", {})["error_type"] = kind
        headers = {"Retry-After": self.retry_after}
        if kind == "draining":
            headers["Connection"] = "close"
        return problem_response(503, detail, headers=headers, path=scope["path"])

    async def _refuse_timeout(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.timeout_refusal(scope)(scope, receive, send)


def declared_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The request's Content-Length, or None when it sent none (or not a number)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _was_cancelled(task: "asyncio.Task[Any]") -> bool:
    """Whether the request stopped at a checkpoint because its deadline passed."""
    return not task.cancelled() and isinstance(task.exception(), Cancelled)
