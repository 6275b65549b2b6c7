"""The deadlines of the requests the direct layer serves while they wait, on one timer."""

import asyncio
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

    - :meth:`first_message`: the request is noted while it awaits its body; a body already
      there is returned at once, a slow upload is stopped as above and answered 503, as the
      general layer answers it. (Stepping ``receive`` by hand to skip the note cost more: a
      finished coroutine's ``send`` raises ``StopIteration``, an exception made and caught on
      every request.)
    - A monitor's write awaited on the event loop is noted while it awaits its commit
      (``DirectScoring._written``).
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.period = min(timeout / 10, 0.25)
        self.waiting: dict[asyncio.Task[Any], float] = {}
        self.expired: set[asyncio.Task[Any]] = set()
        self.timer: asyncio.TimerHandle | None = None

    async def first_message(self, receive: Receive, due: float | None = None) -> Message | None:
        """The request's first message; None if its deadline `due` (default: timeout from now) passes first.

        The request is noted while it awaits ``receive``: a dict entry and its removal, the
        timer armed only if none is (nearly always the body has come, and ``await`` returns it
        at once, without the task suspending).
        """
        task = asyncio.current_task()
        assert task is not None  # a request is always served by a task
        cancelling = task.cancelling()
        self.watch(task, task.get_loop().time() + self.timeout if due is None else due)
        try:
            message: Message = await receive()
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
