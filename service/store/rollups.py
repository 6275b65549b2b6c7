"""Hourly rollups of stats rows, kept by the background compaction (schema version 6).

For each (monitor, segment, hour) whose stats rows include some with ``rolled = 1``, the table
``stats_hours`` holds one row whose blob is the merge of exactly those rows. Unrolled rows (every
row is written unrolled) are read raw, so a read of the rollups of the whole hours in a window,
the unrolled rows of those hours and every row of its partial hours, in one statement, sees each
row once (`sql.SELECT_HOURS_STATS`). Whatever the interleaving, that invariant holds:

- writes and late labels add unrolled rows: they change no rollup;
- `roll_up` reads a (segment, hour)'s rollup and unrolled rows with no transaction open, merges
  them, then in one short transaction flags exactly those rows (``UPDATE ... WHERE rolled = 0 AND
  id IN (...) RETURNING id``) and writes the rollup only if it is still the version it read (a
  random token, replaced at every change); if another compactor (a worker, a replica) or
  retention got there first it rolls back;
- compaction merges rolled rows of one hour into one rolled row (the rollup's merge is unchanged)
  and deletes them only while still rolled;
- retention deletes rows with their hour and flag, and in the same transaction drops the rollups
  of the hours it deleted rolled rows from and unrolls the rest of those hours (`expire_rows`).

Only monitors whose buckets are finer than an hour (``bucket_s < coarse_bucket_s``) are rolled up.
"""

import logging
import secrets
from typing import TYPE_CHECKING, Any

from service.store import sql
from service.store.base import MonitorConfig

if TYPE_CHECKING:
    from service.store.sqlstore import Cursor, SqlStore

logger = logging.getLogger(__name__)

#: Most stats rows folded into a rollup in one transaction.
MAX_ROLL_ROWS = 500


class _Raced(Exception):
    """Another compactor or retention changed the rows or the rollup first: roll back."""


def rolls_up(store: "SqlStore", config: MonitorConfig) -> bool:
    """Whether the monitor keeps hourly rollups (its buckets are finer than an hour)."""
    return config.bucket_s < store.coarse_bucket_s


def roll_up(store: "SqlStore", now: float) -> int:
    """Fold every unrolled stats row (of a bucket within retention) into its hour's rollup; return rows."""
    rolled = 0
    for config in store.list_monitors():
        if rolls_up(store, config):
            rolled += roll_up_monitor(store, config, now)
    return rolled


def roll_up_monitor(store: "SqlStore", config: MonitorConfig, now: float) -> int:
    """`roll_up` for one monitor."""
    width = store.coarse_bucket_s
    oldest = int(now - config.retention_s)  # older rows are retention's to delete
    with store._reading() as cur:
        cur.execute(store._q(sql.ROLLUP_GROUPS), (width, width, config.name, oldest))
        groups = cur.fetchall()
    rolled = 0
    for segment, hour, count in groups:
        for _ in range(int(count) // MAX_ROLL_ROWS + 3):  # (a lost race is tried again)
            done = _roll_group(store, config.name, segment, int(hour), oldest)
            if done is None:
                break
            rolled += done
    return rolled


def _roll_group(store: "SqlStore", name: str, segment: str, hour: int, oldest: int) -> int | None:
    """Fold up to MAX_ROLL_ROWS unrolled rows of one (segment, hour) into its rollup.

    Returns the rows folded: 0 when another compactor or retention changed them first (rolled
    back), None when none is left to fold (or none merges).
    """
    q = store._q
    with store._reading() as cur:
        cur.execute(
            q(sql.SELECT_UNROLLED),
            (name, max(hour, oldest), hour + store.coarse_bucket_s, segment, MAX_ROLL_ROWS),
        )
        rows = cur.fetchall()
        cur.execute(q(sql.SELECT_ROLLUP), (name, hour, segment))
        existing = cur.fetchone()
    if not rows:
        return None
    prior = [] if existing is None else [bytes(existing[0])]
    try:
        blob = store.merge(prior + [bytes(row[2]) for row in rows])
    except Exception:  # a blob that does not merge: roll up the buckets that do, bucket by bucket
        rows, blob = _mergeable(store, name, rows, prior)
        if not rows:
            return None
    digest = _digest(store, name, blob)
    ids = [int(row[0]) for row in rows]
    token = secrets.randbits(63)  # the rollup's new version: never equal to one read before
    try:
        with store._transaction() as cur:
            marked = 0
            for chunk in sql.chunks(ids, store.max_params):
                cur.execute(q(sql.MARK_ROLLED.format(ids=sql.placeholders(len(chunk)))), tuple(chunk))
                marked += len(cur.fetchall())
            if marked != len(ids):
                raise _Raced
            if existing is None:
                cur.execute(q(sql.INSERT_ROLLUP), (name, segment, hour, blob, digest, token))
            else:
                cur.execute(
                    q(sql.UPDATE_ROLLUP), (blob, digest, token, name, hour, segment, int(existing[1]))
                )
            if cur.rowcount != 1:
                raise _Raced
    except _Raced:
        return 0
    return len(ids)


def _digest(store: "SqlStore", name: str, blob: bytes) -> bytes | None:
    """The app's digest of a rollup's blob, or None (no digest function, or it failed: logged)."""
    if store.digest is None:
        return None
    try:
        return store.digest(blob)
    except Exception:  # the rollup is still right; its series read its blob instead
        logger.exception("monitor %r: cannot digest a rollup", name)
        return None


def _mergeable(store: "SqlStore", name: str, rows: list[Any], prior: list[bytes]) -> tuple[list[Any], bytes]:
    """The rows of the buckets that merge with the rollup (and each other), and that merge.

    A bucket whose blobs cannot be merged is logged and left unrolled: it is read raw (as before
    version 6), and compaction, which merges rolled rows only, leaves it as it is.
    """
    kept: list[Any] = []
    for bucket in sorted({int(row[1]) for row in rows}):
        members = [row for row in rows if int(row[1]) == bucket]
        try:
            blob = store.merge(prior + [bytes(row[2]) for row in members])
        except Exception:
            logger.exception(
                "monitor %r: cannot merge %d stats rows of bucket %d", name, len(members), bucket
            )
            continue
        kept += members
        prior = [blob]
    return kept, prior[0] if kept else b""


def expire_rows(store: "SqlStore", cur: "Cursor", name: str, before: int, limit: int) -> int:
    """Delete up to `limit` stats rows with ``bucket_start < before`` (in the caller's transaction).

    The rollups of the (segment, hour)s that lost a rolled row are dropped and the rest of those
    hours unrolled, so that their remaining rows are read raw until `roll_up` folds them again.
    """
    q, width = store._q, store.coarse_bucket_s
    cur.execute(q(sql.DELETE_STATS_BEFORE_RETURNING), (name, before, limit))
    deleted: list[Any] = cur.fetchall()
    hours = sorted({(int(b) // width * width, s) for s, b, rolled in deleted if rolled})
    if hours:
        cur.executemany(q(sql.DELETE_ROLLUP), [(name, h, s) for h, s in hours])
        cur.executemany(q(sql.UNROLL_HOUR), [(name, h, h + width, s) for h, s in hours])
    return len(deleted)
