"""The deadlines of the requests the direct layer serves while they wait, on one timer."""

import asyncio
import functools
import types
from collections.abc import Coroutine, Generator
from typing import Any

from starlette.types import Message, Receive


class DeadlineWatch:
    """Cancels a waiting request at its deadline: every request the direct layer serves, on one timer.

    A timer per request (``loop.call_later``, then its cancel and its removal from the loop's
    heap) cost ~4 µs of a ~100 µs request whose body, nearly always, has already arrived, and
    ~180 Python steps of a monitor's small write. Here a request is noted with its due time only
    while it waits (:meth:`watch` … :meth:`unwatch`), and one timer, armed only while some
    request is noted, checks them every :attr:`period` seconds (a tenth of the timeout, at most
    0.25 s): a waiting request is cancelled between its deadline and one period after it.

    - :meth:`first_message`: ``receive`` is first stepped once: a body already there is returned
      with nothing noted (no task lookup, no clock); a slow upload is stopped as above and
      answered 503, as the general layer answers it.
    - A monitor's write awaited on the event loop is noted while it awaits its commit
      (``DirectScoring._written``).
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
        # a native coroutine, tested by its type (the Coroutine ABC's check is a Python call);
        # any other awaitable is watched from the start
        if type(pending) is types.CoroutineType:
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
        cancelling = task.cancelling()
        self.watch(task, task.get_loop().time() + self.timeout)
        try:
            message: Message = await pending
            return message
        except asyncio.CancelledError:
            if not self.cancelled(task, cancelling):
                raise  # cancelled from outside (the client left, the server stops), not by the deadline
            return None
        finally:
            self.unwatch(task)

    def watch(self, task: asyncio.Task[Any], due: float) -> None:
        """Cancel `task` once the loop's clock (``time.monotonic()``) passes `due`, until :meth:`unwatch`."""
        self.waiting[task] = due
        if self.timer is None:
            self.timer = task.get_loop().call_later(self.period, self._check)

    def cancelled(self, task: asyncio.Task[Any], cancelling: int) -> bool:
        """Whether `task`'s `CancelledError` is its deadline's alone (`cancelling`: its count before).

        If so the cancellation is taken back (``task.uncancel()``) and the request answers 503;
        a cancellation from outside (the client left, the server stops) is not.
        """
        return task in self.expired and task.uncancel() <= cancelling

    def unwatch(self, task: asyncio.Task[Any]) -> None:
        """Stop watching `task` (noted by :meth:`watch`)."""
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
