"""Raw stats rows of one event-loop turn appended by one work: one monitor read and one insert for all.

A small write stored raw (``service.monitors.settle``) to a segment its monitor already has
needs, in its transaction, only the monitor's row (locked, and compared with the config the
batch was prepared with) and the insert of its row. `RawAppends` gathers the rows that the
requests of one turn of the loop append and hands the loop's `LoopCommit` a single work for all
of them: per monitor one read of its row, then one ``executemany``, where each write on its own
paid a ``SAVEPOINT``, a read, an insert, a segment upsert and a ``RELEASE``. Each request
resumes after the COMMIT with its own outcome: nothing (written), `MonitorNotFound` or
`ConfigChanged` (its row not written), `Cancelled` (its deadline passed before the work ran),
or the error of the whole transaction (`WouldBlock`, `LockHeld`, `StoreUnavailable`: nothing
written). A request cancelled before the work ran is left out.
"""

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from service.core.cancel import Cancelled, current_deadline
from service.store import sql
from service.store.base import ConfigChanged, MonitorConfig, MonitorNotFound, StatsRow, same_config

if TYPE_CHECKING:
    from service.store.sql_base import Cursor, SqlBase


@dataclass(eq=False)
class _Append:
    name: str
    row: StatsRow
    expect: MonitorConfig
    deadline: float | None
    done: "asyncio.Future[None]"
    #: Why this append was not written (its transaction otherwise committed), or None.
    error: BaseException | None = None


@dataclass(eq=False)
class _Turn:
    appends: list[_Append] = field(default_factory=list)


class RawAppends:
    """The raw rows appended on each event loop, one work per turn (module docstring)."""

    def __init__(
        self, store: "SqlBase", write_soon: "Callable[[Callable[[Cursor], None]], Awaitable[None]]"
    ) -> None:
        self._store = store
        self._write_soon = write_soon
        self._turns: dict[asyncio.AbstractEventLoop, _Turn] = {}

    async def append(self, name: str, row: StatsRow, expect: MonitorConfig) -> None:
        """Append `row` (a raw stats row) to monitor `name` in this turn's work; return once committed."""
        loop = asyncio.get_running_loop()
        turn = self._turns.get(loop)
        if turn is None:
            turn = self._turns[loop] = _Turn()
            # the shared work runs outside any request's context (no request's deadline is its own)
            task = loop.create_task(self._run(loop, turn), context=contextvars.Context())
            task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)
        done: asyncio.Future[None] = loop.create_future()
        turn.appends.append(_Append(name, row, expect, current_deadline(), done))
        await done

    async def _run(self, loop: asyncio.AbstractEventLoop, turn: _Turn) -> None:
        def work(cur: "Cursor") -> None:
            if self._turns.get(loop) is turn:
                del self._turns[loop]  # appends from here on go to the next turn's work
            live = [a for a in turn.appends if not a.done.cancelled()]
            now = time.monotonic()
            by_monitor: dict[str, list[_Append]] = {}
            for a in live:
                if a.deadline is not None and now >= a.deadline:
                    a.error = Cancelled("the request's deadline passed before its write began")
                else:
                    by_monitor.setdefault(a.name, []).append(a)
            for name, appends in by_monitor.items():
                config = self._store._select_monitor(cur, name, lock=True)
                rows = []
                checked: dict[int, bool] = {}  # per config object expected (mostly one: the process's cached)
                for a in appends:
                    if config is None:
                        a.error = MonitorNotFound(name)
                        continue
                    same = checked.get(id(a.expect))
                    if same is None:
                        same = checked[id(a.expect)] = same_config(config, a.expect)
                    if not same:
                        a.error = ConfigChanged(name, config)
                    else:
                        b, s, blob = a.row
                        rows.append((name, int(b), s, bytes(blob)))
                if rows:
                    cur.executemany(self._store._q(sql.INSERT_RAW_STATS), rows)

        failed: BaseException | None = None
        try:
            await self._write_soon(work)
        except BaseException as error:  # the transaction as a whole: nothing of it written
            failed = error
        finally:
            if self._turns.get(loop) is turn:
                del self._turns[loop]
        for a in turn.appends:
            if a.done.done():
                continue
            outcome = failed if failed is not None else a.error
            if outcome is None:
                a.done.set_result(None)
            elif isinstance(outcome, asyncio.CancelledError):
                a.done.cancel()
            else:
                a.done.set_exception(outcome)
