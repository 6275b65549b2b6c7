"""The labelled-row reservoir stored in blocks: one database row per write, its sampled rows as arrays.

The reservoir of a monitor is a bottom-k sample: of every labelled row it received (less those that
retention deleted), the ``reservoir_size`` rows with the smallest random 64-bit keys. Keys are iid
uniform, so it is a uniform sample without replacement. A row offered with a key already taken is
not kept (the first row of a key wins), as a primary key on the key would do.

Storage. A write appends its rows as ONE row of ``reservoir_blocks`` (arrays of keys, times, labels
and the rows' bytes), after dropping the keys at or above the monitor's ``reservoir_threshold``:
the largest key of the reservoir once it is full (NULL before). Such a key can never enter it.
The blocks hold a superset S of the reservoir R, and R is always the bottom ``reservoir_size`` of
S (bottom-k of a union is bottom-k of the bottom-k of its parts), so reads select it from the
blocks: `select` is exact whatever blocks there are. The threshold is kept tight from the keys
alone (`tighten`: one column read, nothing rewritten) when S first holds ``reservoir_size`` rows
and at each further multiple of it, so the rows a write keeps fall off as the rows seen grow. The
background compaction rewrites the blocks into R itself whenever S holds more than R (`rewrite`),
and before retention deletes old rows (rows outside R must go first: they are not in the
reservoir); a write that passes `REWRITE_FACTOR` times ``reservoir_size`` rows does so too, so
storage stays bounded without the compactor. A change of ``reservoir_size`` rewrites too
(growing: R stays what it was, and fills with later rows only). Only a rewrite drops a row whose
key repeats one stored earlier (keys the caller drew; random ones do not repeat): until then reads
skip it.

Everything here runs inside the caller's write transaction, after ``RESERVOIR_STATE`` with the
dialect's lock (`lock_state`): on PostgreSQL one writer of a monitor's reservoir at a time.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from service.store import sql
from service.store.base import LabelledRow, ReservoirBatch

if TYPE_CHECKING:
    from service.store.sql_base import Cursor, SqlBase

#: A block's parameters after the monitor's name, in `sql.INSERT_RESERVOIR_BLOCK` order (the payload
#: of a batch's rows a view of its array: SQLite and psycopg bind any buffer as a BLOB / bytea).
BlockParams = tuple[int, int, float, str, str, str, bytes, bytes, bytes, bytes | memoryview]
#: The blocks' rows pass this multiple of ``reservoir_size``: the write rewrites them (the
#: compaction already does past 1×; writes tighten the threshold at every multiple).
REWRITE_FACTOR = 8

_KEY, _TIME, _LABEL = np.dtype("<i8"), np.dtype("<f8"), np.dtype("<i8")


def _block(
    segment: str,
    kind: str,
    dtype: str,
    keys: npt.NDArray[np.int64],
    times: npt.NDArray[np.float64],
    labels: npt.NDArray[np.int64],
    payload: bytes | memoryview,
) -> BlockParams:
    return (
        int(keys.size),
        int(keys[keys.argmin()]),  # (an index of the least: ~40% cheaper than a reduction at 32 rows)
        float(times[times.argmin()]),
        segment,
        kind,
        dtype,
        keys.astype(_KEY, copy=False).tobytes(),
        times.astype(_TIME, copy=False).tobytes(),
        labels.astype(_LABEL, copy=False).tobytes(),
        payload,
    )


def batch_blocks(batch: ReservoirBatch, below: int | None) -> list[BlockParams]:
    """The block of a columnar batch's rows with a key below `below` (None: all); [] if none."""
    if below is None:
        if not len(batch):
            return []
        if batch.rows is None:  # every row, as they came (the usual batch until the reservoir is full)
            payload = _bytes_of(batch.payload)
            return [
                _block(batch.segment, batch.kind, batch.dtype, batch.keys, batch.times, batch.labels, payload)
            ]
        keep: Any = slice(None)
    else:
        keep = (batch.keys < below).nonzero()[0]
        if not keep.size:
            return []
    rows = keep if batch.rows is None else batch.rows[keep]  # the payload's rows: gathered once
    payload = _bytes_of(_as_records(batch.payload).take(rows))
    return [
        _block(
            batch.segment,
            batch.kind,
            batch.dtype,
            batch.keys[keep],
            batch.times[keep],
            batch.labels[keep],
            payload,
        )
    ]


def _as_records(payload: npt.NDArray[np.uint8]) -> np.ndarray:
    """The N × width bytes as N opaque records of `width` bytes: one gather copies whole rows."""
    rows = np.ascontiguousarray(payload)
    return rows.view(np.dtype((np.void, rows.shape[1]))).reshape(-1)


def _bytes_of(array: np.ndarray) -> memoryview:
    """An array's bytes as a view, not copied (the driver copies them into the statement anyway).

    A large batch's ``tobytes`` is a fresh ``mmap`` in a worker (``service.api.serving.MALLOC_ENV``),
    page-faulted in for one copy.
    """
    return np.ascontiguousarray(array).data.cast("B")


def row_blocks(
    rows: Sequence[LabelledRow], below: int | None, draw: Callable[[int], int]
) -> list[BlockParams]:
    """Blocks of row objects with a key below `below`: one per segment, kind, dtype and row width.

    A row without a key gets ``draw(64) - 2**63``, drawn for every row in order (kept or not).
    """
    keys = [draw(64) - 2**63 if r.key is None else r.key for r in rows]
    groups: dict[tuple[str, str, str, int], list[int]] = {}
    for i, (r, key) in enumerate(zip(rows, keys, strict=True)):
        if below is None or key < below:
            groups.setdefault((r.segment, r.kind, r.dtype, len(r.row)), []).append(i)
    return [
        _block(
            segment,
            kind,
            dtype,
            np.array([keys[i] for i in members], np.int64),
            np.array([rows[i].time for i in members], np.float64),
            np.array([rows[i].label for i in members], np.int64),
            b"".join(rows[i].row for i in members),
        )
        for (segment, kind, dtype, _), members in groups.items()
    ]


def bottom(keys: npt.NDArray[np.int64], size: int) -> npt.NDArray[np.intp]:
    """Indices of the `size` smallest distinct `keys` (the first of a repeated key), in index order.

    No comparison sort of every key (~25 ns a key here): the `size`-th smallest is found by counting
    the keys in 4,096 buckets of their top bits and ranking only its bucket's few keys, and only the
    kept keys that share their top 16 bits with another can repeat one (a few percent of random
    keys, sorted). Keys not spread over the buckets (a caller's small keys) come out exact, slower.
    """
    n = keys.size
    if size <= 0 or n == 0:
        return np.empty(0, np.intp)
    if n <= size:
        candidates = np.arange(n)
    else:
        bucket = keys >> 52  # (arithmetic: the buckets keep the keys' order)
        bucket += 2048
        before = np.bincount(bucket, minlength=4096).cumsum()
        edge = int(before.searchsorted(size))  # the bucket of the size-th smallest key
        rank = size - 1 - (int(before[edge - 1]) if edge else 0)
        kth = np.partition(keys[bucket == edge], rank)[rank]
        candidates = np.flatnonzero(keys <= kth)
    if candidates.size <= size and _distinct(keys[candidates]):
        return candidates
    order = np.lexsort((np.arange(n), keys))  # a key repeats: by key, then by index
    first = np.ones(n, bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    return np.sort(order[first][:size])


def _distinct(values: npt.NDArray[np.int64]) -> bool:
    """No value repeats: equal values share their top 16 bits; only those sharing them are sorted."""
    top = (values >> 48).astype(np.int16)
    order = np.argsort(top, kind="stable")  # (16-bit integers: a radix sort)
    ranked = top[order]
    same = ranked[1:] == ranked[:-1]
    shared = np.zeros(values.size, bool)
    shared[1:] = same
    shared[:-1] |= same
    suspects = np.sort(values[order[shared]])
    return not (suspects[1:] == suspects[:-1]).any()


@dataclass
class Stored:
    """A monitor's stored reservoir rows, column by column, in insertion order (block by block)."""

    ids: list[int]
    blocks: list[tuple[str, str, str]]  # (segment, kind, dtype) of each block
    payloads: list[npt.NDArray[np.uint8]]  # each block's rows, (n_rows, width)
    block_of: npt.NDArray[np.intp]
    keys: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    labels: npt.NDArray[np.int64]

    @classmethod
    def read(cls, cur: "Cursor", q: Callable[[str], str], name: str) -> "Stored":
        """Every block of the monitor `name`, decoded (one statement: one snapshot)."""
        cur.execute(q(sql.SELECT_RESERVOIR_BLOCKS), (name,))
        rows = cur.fetchall()
        keys = [np.frombuffer(row[4], _KEY) for row in rows]
        payloads = [
            np.frombuffer(row[7], np.uint8).reshape(k.size, -1) for row, k in zip(rows, keys, strict=True)
        ]
        sizes = [k.size for k in keys]
        return cls(
            ids=[int(row[0]) for row in rows],
            blocks=[(row[1], row[2], row[3]) for row in rows],
            payloads=payloads,
            block_of=np.repeat(np.arange(len(rows)), sizes),
            keys=np.concatenate(keys).astype(np.int64) if rows else np.empty(0, np.int64),
            times=np.concatenate([np.frombuffer(row[5], _TIME) for row in rows]).astype(np.float64)
            if rows
            else np.empty(0, np.float64),
            labels=np.concatenate([np.frombuffer(row[6], _LABEL) for row in rows]).astype(np.int64)
            if rows
            else np.empty(0, np.int64),
        )

    def __len__(self) -> int:
        return int(self.keys.size)

    def select(self, size: int) -> npt.NDArray[np.intp]:
        """Indices of the reservoir, in insertion order (`bottom`)."""
        return bottom(self.keys, size)

    def by_key(self, picked: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
        """`picked` ordered by key (distinct keys, as `select` returns them)."""
        return picked[np.argsort(self.keys[picked], kind="stable")]

    def rows(self, picked: npt.NDArray[np.intp]) -> list[LabelledRow]:
        """The rows at `picked`, in that order (as reads return them: without their keys)."""
        starts = np.cumsum([0] + [p.shape[0] for p in self.payloads])
        out = []
        for i, b, t, y in zip(
            picked.tolist(),
            self.block_of[picked].tolist(),
            self.times[picked].tolist(),
            self.labels[picked].tolist(),
            strict=True,
        ):
            segment, kind, dtype = self.blocks[b]
            out.append(LabelledRow(t, segment, kind, dtype, self.payloads[b][i - starts[b]].tobytes(), y))
        return out

    def blocks_of(self, picked: npt.NDArray[np.intp]) -> list[BlockParams]:
        """The rows at `picked` as blocks, one per segment, kind, dtype and width, rows in `picked` order."""
        starts = np.cumsum([0] + [p.shape[0] for p in self.payloads])
        groups: dict[tuple[str, str, str, int], list[int]] = {}
        for b, (attrs, payload) in enumerate(zip(self.blocks, self.payloads, strict=True)):
            groups.setdefault((*attrs, payload.shape[1]), []).append(b)
        out = []
        for (segment, kind, dtype, _), members in groups.items():
            inside = np.isin(self.block_of[picked], members)
            rows = picked[inside]
            if not rows.size:
                continue
            matrix = np.concatenate([self.payloads[b] for b in members])
            offset = np.zeros(len(self.blocks), np.intp)  # a row's index in `matrix`: its block's start there
            offset[members] = np.cumsum([0] + [self.payloads[b].shape[0] for b in members[:-1]])
            blocks = self.block_of[rows]
            local = offset[blocks] + rows - starts[blocks]
            out.append(
                _block(
                    segment,
                    kind,
                    dtype,
                    self.keys[rows],
                    self.times[rows],
                    self.labels[rows],
                    np.ascontiguousarray(matrix[local]).tobytes(),
                )
            )
        return out


def lock_state(store: "SqlBase", cur: "Cursor", name: str) -> tuple[int | None, int, int]:
    """The monitor's threshold, stored row count and reservoir_size, its row locked (PostgreSQL)."""
    cur.execute(store._q(sql.RESERVOIR_STATE + sql.RESERVOIR_LOCK[store.dialect]), (name,))
    threshold, count, size = cur.fetchone()
    return (None if threshold is None else int(threshold)), int(count), int(size)


def add(
    store: "SqlBase",
    cur: "Cursor",
    name: str,
    rows: Sequence[LabelledRow] | ReservoirBatch,
    state: tuple[int | None, int, int] | None = None,
) -> None:
    """Offer `rows` to the monitor's reservoir: store those that may enter it as one block (or a few).

    `state`: what `lock_state` returns, when the caller read it already, with the same lock, in
    this transaction (``SELECT_MONITOR_RESERVOIR``).
    """
    threshold, count, size = lock_state(store, cur, name) if state is None else state
    if size <= 0:
        return
    if isinstance(rows, ReservoirBatch):
        blocks = batch_blocks(rows, threshold)
    else:
        blocks = row_blocks(rows, threshold, store._rng.getrandbits)
    if not blocks:
        return
    if len(blocks) == 1:
        cur.execute(store._q(sql.INSERT_RESERVOIR_BLOCK), (name, *blocks[0]))
    else:
        cur.executemany(store._q(sql.INSERT_RESERVOIR_BLOCK), [(name, *block) for block in blocks])
    before, count = count, count + sum(block[0] for block in blocks)
    if count > REWRITE_FACTOR * size:
        rewrite(store, cur, name, size)
    elif count > size and (threshold is None or count // size > before // size):
        tighten(store, cur, name, size, count, threshold)  # full, or one more reservoir_size of rows stored
    else:
        cur.execute(store._q(sql.SET_RESERVOIR_COUNT), (count, name))


def tighten(
    store: "SqlBase", cur: "Cursor", name: str, size: int, count: int, below: int | None = None
) -> None:
    """Store `count` and the exact threshold, from the stored keys alone (no row is rewritten).

    `below`: the threshold before the rows just added (None: there was none). The reservoir then
    held `size` distinct keys at or below it and still does, so the new threshold is at or below
    it too: only those keys are ranked (not the keys of older blocks that can no longer enter).
    """
    cur.execute(store._q(sql.SELECT_RESERVOIR_KEYS), (name,))
    keys = np.concatenate([np.frombuffer(row[0], _KEY) for row in cur.fetchall()])
    if below is not None:
        keys = keys[keys <= below]
    picked = bottom(keys, size)
    threshold = int(keys[picked].max()) if picked.size >= size else None
    cur.execute(store._q(sql.SET_RESERVOIR_STATE), (count, threshold, name))


def rewrite(
    store: "SqlBase",
    cur: "Cursor",
    name: str,
    size: int,
    *,
    keep: int | None = None,
    before: float | None = None,
) -> None:
    """Replace the monitor's blocks by its reservoir alone, and set its row count and exact threshold.

    The reservoir is the bottom `keep` (default `size`) of the stored rows, less those with a time
    before `before`; the threshold is its largest key when it holds `size` rows, else NULL.
    The caller holds the monitor's row (`lock_state`).
    """
    stored = Stored.read(cur, store._q, name)
    picked = stored.select(size if keep is None else keep)
    if before is not None:
        picked = picked[stored.times[picked] >= before]
    for statement, chunk in store._ids(stored.ids, sql.DELETE_RESERVOIR_BLOCKS):
        cur.execute(statement, tuple(chunk))
    blocks = stored.blocks_of(picked)
    if blocks:
        cur.executemany(store._q(sql.INSERT_RESERVOIR_BLOCK), [(name, *block) for block in blocks])
    threshold = int(stored.keys[picked].max()) if size > 0 and picked.size >= size else None
    cur.execute(store._q(sql.SET_RESERVOIR_STATE), (int(picked.size), threshold, name))


def expire(store: "SqlBase", cur: "Cursor", name: str, before: float) -> None:
    """Compaction and retention: rewrite the blocks when a row is older than `before` or is not in R."""
    _, count, size = lock_state(store, cur, name)
    cur.execute(store._q(sql.RESERVOIR_MIN_TIME), (name,))
    oldest = cur.fetchone()[0]
    if count > size or (oldest is not None and float(oldest) < before):
        rewrite(store, cur, name, size, before=before)


def resize(store: "SqlBase", cur: "Cursor", name: str, old: int, new: int) -> None:
    """`reservoir_size` changes from `old` to `new`: keep the bottom min(old, new), threshold for `new`."""
    lock_state(store, cur, name)
    rewrite(store, cur, name, new, keep=min(old, new))


def move_rows(store: "SqlBase", cur: "Cursor") -> None:
    """Migration to version 7: every row of the per-row ``reservoir`` table into blocks, monitor by monitor.

    Keeps every row (a reservoir over its size, shrunk but not yet compacted, keeps its extra rows:
    reads and the next compaction select from them).
    """
    q = store._q
    cur.execute(q(sql.SELECT_RESERVOIR_MONITORS))
    for name, size in cur.fetchall():
        cur.execute(q(sql.SELECT_RESERVOIR_ROWS), (name,))
        rows = [
            LabelledRow(float(t), s, k, d, bytes(p), int(y), int(key))
            for key, t, s, k, d, p, y in cur.fetchall()
        ]
        if not rows:
            continue
        blocks = row_blocks(rows, None, store._rng.getrandbits)
        cur.executemany(q(sql.INSERT_RESERVOIR_BLOCK), [(name, *block) for block in blocks])
        threshold = rows[int(size) - 1].key if 0 < int(size) <= len(rows) else None  # rows are by key
        cur.execute(q(sql.SET_RESERVOIR_STATE), (len(rows), threshold, name))
