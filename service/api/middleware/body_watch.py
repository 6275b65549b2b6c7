"""The deadline of a request body's first message, for every request the direct layer serves, on one timer."""

import asyncio
import functools
import types
from collections.abc import Coroutine, Generator
from typing import Any

from starlette.types import Message, Receive


class BodyWatch:
    """The deadline of the body's first message, for every request served here, on one timer.

    A timer per request (``loop.call_later``, then its cancel and its removal from the loop's
    heap) cost ~4 µs of a ~100 µs request whose body, nearly always, has already arrived. Here
    ``receive`` is first stepped once: a body already there is returned with nothing noted
    (no task lookup, no clock). Only a request that must wait is noted with its due time, and
    one timer, armed only while some request is waiting, checks them every :attr:`period`
    seconds (a tenth of the timeout, at most 0.25 s): a slow upload is stopped between its
    deadline and one period after it, and answered 503 as the general layer answers it.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.period = min(timeout / 10, 0.25)
        self.waiting: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None

    async def first_message(self, receive: Receive) -> Message | None:
        """The request's first message; None if its deadline passes first."""
        pending = receive()
        if isinstance(pending, Coroutine):
            try:
                signal = pending.send(None)
            except StopIteration as done:  # it had come: nothing to wait for (nearly always)
                message: Message = done.value
                return message
            return await self._watched(_resumed(pending, signal))
        return await self._watched(pending)

    async def _watched(self, pending: Any) -> Message | None:
        """`pending` (the rest of ``receive``) awaited under the deadline; None if it passes first."""
        task = asyncio.current_task()
        assert task is not None  # a request is always served by a task
        loop = task.get_loop()
        self.waiting[task] = loop.time() + self.timeout
        if self.timer is None:
            self.timer = loop.call_later(self.period, self._check)
        cancelling = task.cancelling()
        try:
            message: Message = await pending
            return message
        except asyncio.CancelledError:
            if task not in self.expired or task.uncancel() > cancelling:
                raise  # cancelled from outside (the client left, the server stops), not by the deadline
            return None
        finally:
            del self.waiting[task]
            if self.expired:
                self.expired.discard(task)

    def _check(self) -> None:
        """Cancel the requests whose deadline passed; check again in a period while any wait."""
        self.timer = None
        if not self.waiting:
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, due in self.waiting.items():
            if due <= now and task not in self.expired:
                self.expired.add(task)
                task.cancel()
        self.timer = loop.call_later(self.period, self._check)


@types.coroutine
def _resumed(coro: Coroutine[Any, Any, Message], signal: Any) -> Generator[Any, Any, Message]:
    """The rest of `coro`, whose first step yielded `signal` to the task: what ``await`` would have done.

    The task waits on `signal`, then resumes `coro` with what it sends (or throws in what it
    throws: a cancellation reaches `coro`, which cleans up as it would have), until `coro` returns.
    """
    while True:
        try:
            sent = yield signal
        except BaseException as error:
            step = functools.partial(coro.throw, error)
        else:
            step = functools.partial(coro.send, sent)
        try:
            signal = step()
        except StopIteration as done:
            answer: Message = done.value
            return answer
