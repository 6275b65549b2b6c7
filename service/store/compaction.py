"""Retention, expiry and compaction of a `SqlStore`, in small transactions that hold no lock long.

For each monitor, `compact`:

1. deletes stats buckets and reservoir rows older than ``retention_s``, pending rows older than
   twice ``label_ttl_s`` (for one TTL after expiry a late label still counts as "expired", then
   "unknown"), stored reservoir rows outside the reservoir (`service.store.reservoir`), idempotency
   keys older than ``idempotency_ttl_s`` or past the newest ``max_idempotency_keys``, and segments
   left with no rows;
2. folds every new stats row into the rollup of its hour (`service.store.rollups`), for monitors
   with buckets finer than an hour;
3. merges the stats rows of each (segment, bucket) that holds several into one, and rows of minute
   buckets older than ``coarsen_after_s`` (a day) into one row per hour (``coarse_bucket_s``); on a
   monitor with rollups, only rows already rolled up (so each hour's rollup stays their merge).

Step 3 reads a group's rows and merges their blobs with no transaction open, then in one short
write transaction deletes exactly the ids it read (``DELETE ... RETURNING``) and inserts the merged
row. Rows are never updated, so if every id is still there the merge is exact; if another compactor
(a second worker process, a replica) got there first the transaction rolls back and the group is
left to the next run. Writes that arrive meanwhile add rows with new ids, which are not touched.
"""

import logging
from typing import TYPE_CHECKING

from service.store import reservoir, sql
from service.store.base import MonitorConfig
from service.store.rollups import expire_rows, roll_up_monitor, rolls_up

if TYPE_CHECKING:
    from service.store.sqlstore import SqlStore

logger = logging.getLogger(__name__)

#: Most stats rows merged in one transaction.
MAX_GROUP_ROWS = 100
#: Most stats (and pending) rows deleted by retention in one transaction.
MAX_DELETE_ROWS = 1000


class _Raced(Exception):
    """Another compactor merged some of the rows first: roll back."""


def compact(store: "SqlStore", now: float) -> int:
    """Run retention, expiry and compaction over every monitor; return stats rows merged away."""
    merged = 0
    for config in store.list_monitors():
        _expire(store, config, now)
        if rolls_up(store, config):  # every row rolled up first: compaction merges rolled rows only
            roll_up_monitor(store, config, now)
        merged += _merge_buckets(store, config, now)
    return merged


def _expire(store: "SqlStore", config: MonitorConfig, now: float) -> None:
    q, name = store._q, config.name
    deleted = 0
    while True:  # in chunks: a long outage or a shortened retention must not hold the lock long
        with store._transaction() as cur:
            stats = expire_rows(store, cur, name, int(now - config.retention_s), MAX_DELETE_ROWS)
            deleted += stats
            cur.execute(
                q(sql.DELETE_PENDING_BEFORE_SOME), (name, name, now - 2 * config.label_ttl_s, MAX_DELETE_ROWS)
            )
            if pending := cur.rowcount:
                deleted += pending
                cur.execute(q(sql.ADD_PENDING), (-pending, name))
                cur.fetchall()
        if max(stats, pending) < MAX_DELETE_ROWS:
            break
    with store._transaction() as cur:
        reservoir.expire(store, cur, name, now - config.retention_s)
        cur.execute(q(sql.DELETE_LM_SUMS_BEFORE), (name, int(now - config.retention_s)))
        deleted += cur.rowcount
        cur.execute(q(sql.DELETE_KEYS_BEFORE), (name, now - store.limits.idempotency_ttl_s))
        cur.execute(q(sql.DELETE_OLDEST_KEYS), (name, name, store.limits.max_idempotency_keys))
    if deleted:
        _forget_empty_segments(store, name)


def _forget_empty_segments(store: "SqlStore", name: str) -> None:
    """Delete segments left with no stats, pending or language-model rows (found first with no lock held)."""
    with store._reading() as cur:

        def segments(statement: str) -> set[str]:
            cur.execute(store._q(statement), (name,))
            return {row[0] for row in cur.fetchall()}

        known = segments(sql.SELECT_SEGMENTS)
        used = segments(sql.SELECT_STATS_SEGMENTS) | segments(sql.SELECT_PENDING_SEGMENTS)
        used |= segments(sql.SELECT_LM_SEGMENTS)
    if empty := sorted(known - used):
        with store._transaction() as cur:  # each checked again: a write may have used it meanwhile
            cur.executemany(
                store._q(sql.DELETE_EMPTY_SEGMENT), [(name, s, name, s, name, s, name, s) for s in empty]
            )


def _merge_buckets(store: "SqlStore", config: MonitorConfig, now: float) -> int:
    width = store.coarse_bucket_s
    if config.bucket_s < width and width % config.bucket_s == 0:
        cutoff = int(now - store.coarsen_after_s) // width * width  # an hour boundary
    else:
        cutoff = -(2**62)  # buckets already this coarse, or not on its grid: never coarsened
    rolled = rolls_up(store, config)
    with store._reading() as cur:
        groups_sql = sql.COMPACTION_GROUPS_ROLLED if rolled else sql.COMPACTION_GROUPS
        cur.execute(store._q(groups_sql), (cutoff, width, width, config.name))
        groups = cur.fetchall()
    merged = 0
    for segment, target, count, low, high in groups:
        for _ in range(int(count) // (MAX_GROUP_ROWS - 1) + 2):
            done = _merge_group(store, config.name, segment, int(target), int(low), int(high), rolled)
            if done is None:
                break
            merged += done
    return merged


def _merge_group(
    store: "SqlStore", name: str, segment: str, target: int, low: int, high: int, rolled: bool
) -> int | None:
    """Merge up to MAX_GROUP_ROWS rows of a group into one at `target`: rows merged away, or None if done.

    `rolled`: merge rolled rows only, into a rolled row (the hour's rollup already holds them).
    """
    with store._reading() as cur:
        select = sql.SELECT_GROUP_ROLLED if rolled else sql.SELECT_GROUP
        cur.execute(store._q(select), (name, segment, low, high, MAX_GROUP_ROWS))
        rows = cur.fetchall()
    if not rows or (len(rows) == 1 and rows[0][1] == target):
        return None
    blobs = [bytes(row[2]) for row in rows]
    try:
        blob = store.merge(blobs)
    except Exception:  # a blob the app cannot read: leave the group as it is, and say so
        logger.exception("monitor %r: cannot merge %d stats rows of bucket %d", name, len(rows), target)
        return None
    ids = [int(row[0]) for row in rows]
    try:
        with store._transaction() as cur:
            deleted = 0
            for statement, chunk in store._ids(
                ids, sql.DELETE_ROLLED_IDS if rolled else sql.DELETE_STATS_IDS
            ):
                cur.execute(statement, tuple(chunk))
                deleted += len(cur.fetchall())
            if deleted != len(ids):
                raise _Raced
            insert = sql.INSERT_ROLLED_STATS if rolled else sql.INSERT_STATS
            cur.execute(store._q(insert), (name, target, segment, blob))
    except _Raced:
        return None
    return len(ids) - 1
