"""Settling raw stats rows: many small writes' logits and labels replaced by their statistics at once.

A raw row (schema version 8, ``stats.raw = 1``) holds a batch as it came
(:mod:`service.core.monitoring.raw_batch`); every read counts it as its statistics, so it is
stored whole from the moment its write commits. `settle` takes the oldest raw rows (about
`SETTLE_ROWS`), per monitor in one transaction: it deletes the monitor's raw rows up to the
largest id among them (``DELETE ... RETURNING``: a row settled by another worker or replica
meanwhile is simply not returned, a row written meanwhile with a smaller id is, so each row is
settled exactly once, by the transaction that deleted it), asks the
app (`SqlStore.settle_rows`) for the statistics of each (bucket, segment) group and the rows to
offer the reservoir, inserts those statistics and offers those rows. After the commit the app is
told what was stored (`SqlStore.on_settled`: the Prometheus counters count a row then).

Rollups and compaction leave raw rows alone (they would merge a row the settle then deletes);
retention deletes them like any row of an expired bucket.
"""

from typing import TYPE_CHECKING

from service.store import sql
from service.store.base import MonitorNotFound, Settled

if TYPE_CHECKING:
    from service.store.sql_base import Cursor
    from service.store.sqlstore import SqlStore

#: Most raw rows settled in one transaction.
SETTLE_ROWS = 512


def settle(store: "SqlStore", name: str | None = None, *, limit: int = SETTLE_ROWS) -> int:
    """Settle the oldest `limit` raw rows (of monitor `name`, or of any); return the rows settled."""
    settled = 0
    for monitor, upto in _raw_spans(store, name, limit).items():
        try:
            done = store._write(lambda cur, m=monitor, u=upto: _settle_monitor(store, cur, m, u))  # type: ignore[misc]
        except MonitorNotFound:  # deleted meanwhile, its rows with it
            continue
        settled += _told(store, monitor, done)
    return settled


def settle_all(store: "SqlStore", name: str | None = None) -> int:
    """`settle` until a pass takes fewer than it may: every raw row written before it (of `name`, or any)."""
    settled = 0
    while (done := settle(store, name)) > 0:
        settled += done
        if done < SETTLE_ROWS:
            break
    return settled


async def settle_soon(store: "SqlStore", *, limit: int = SETTLE_ROWS) -> int:
    """`settle` from an event loop: each transaction joins the loop's turn of small writes.

    Raises `WouldBlock` or `LockHeld` (nothing settled by that transaction) where the store's
    ``_write_soon`` does: the caller settles from a thread then.
    """
    settled = 0
    for monitor, upto in _raw_spans(store, None, limit).items():
        try:
            done = await store._write_soon(lambda cur, m=monitor, u=upto: _settle_monitor(store, cur, m, u))  # type: ignore[misc]
        except MonitorNotFound:
            continue
        settled += _told(store, monitor, done)
    return settled


def _raw_spans(store: "SqlStore", name: str | None, limit: int) -> dict[str, int]:
    """Per monitor, the largest id among the oldest `limit` raw rows (of `name`, or any monitor's)."""
    if store.settle_rows is None:
        return {}
    with store._reading() as cur:
        if name is None:
            cur.execute(store._q(sql.SELECT_RAW_SPANS), (limit,))
        else:
            cur.execute(store._q(sql.SELECT_RAW_SPANS_OF), (name, limit))
        return {monitor: int(upto) for monitor, upto in cur.fetchall()}


def _told(store: "SqlStore", monitor: str, done: tuple[int, Settled] | None) -> int:
    """Tell the app what a committed settle stored (`on_settled`); the rows it settled."""
    if done is None:
        return 0
    rows, result = done
    if store.on_settled is not None and result.summaries:
        store.on_settled(monitor, result.summaries)
    return rows


def _settle_monitor(store: "SqlStore", cur: "Cursor", name: str, upto: int) -> tuple[int, Settled] | None:
    """Replace monitor `name`'s raw rows up to id `upto` by their statistics, in `cur`'s transaction."""
    assert store.settle_rows is not None
    config, state = store._require_reservoir(cur, name)  # locked: a delete waits for this settle
    cur.execute(store._q(sql.DELETE_RAW_UPTO), (name, upto))
    # (id, bucket, segment, blob)
    rows = [(int(id_), int(b), s, bytes(blob)) for id_, b, s, blob in cur.fetchall()]
    if not rows:
        return None
    rows.sort()  # in write order (RETURNING's order is the engine's)
    result = store.settle_rows(config, [(b, s, blob) for _, b, s, blob in rows])
    store._insert_stats(cur, name, result.stats)
    # a batched raw append adds no segment (its writer knew it); one deleted by retention in a race
    # is back once its rows are settled (no cap here: the segment was counted when first written)
    segments = sorted({segment for _, segment, _ in result.stats})
    cur.executemany(store._q(sql.INSERT_SEGMENT), [(name, segment) for segment in segments])
    for i, batch in enumerate(result.reservoir):
        store._add_to_reservoir(cur, config, batch, state if i == 0 else None)
    return len(rows), result
