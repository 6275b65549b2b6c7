"""Per-blob sums of stored statistics, kept between queries and keyed by the blob's bytes.

A dashboard polls the same 30-day series every few seconds; nearly every stats row it reads is one
it read before. Decoding a blob into its row of :func:`service.core.monitoring.series.group_sums`
costs far more than looking the bytes up, so :class:`SumsCache` keeps each blob's row per binning
(``n_bins``, ``closed``, ``target``) and decodes only the blobs it has not seen.

The key is the blob's content, not a row id: a row's sums are a pure function of its bytes, so a
hit is exact by construction whatever happened in the database meanwhile (late labels add rows
with new bytes, compaction replaces rows by a merged blob, ids may be reused, another replica may
have written). Nothing needs invalidating; the least recently used blobs are dropped past
``max_bytes`` (the blob, its rows and a fixed overhead are counted).
"""

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, cast

import numpy as np

from service.core import InputError
from service.core._typing import FloatArray, IntArray
from service.core.monitoring.series import HIST_BLOCKS, SUM_COLUMNS, group_sums

Binning = tuple[int, Literal["right", "left"], Literal["top_label", "positive_class"] | None]
_OVERHEAD = 200  # bytes per entry beyond the blob and its rows (dict slots, the entry, the array headers)


@dataclass(frozen=True)
class Sums:
    """One row of sums per blob (in the order asked) and K / binary of the blobs (None: no blob)."""

    rows: FloatArray
    n_classes: int | None
    binary: bool
    decoded: int  # blobs that were not in the cache


class SumsCache:
    """Least-recently-used maps ``blob bytes -> row of sums``, one per binning, bounded in bytes; thread-safe.

    Each row is kept as its float64 bytes with one more column, the blob's kind (``2 K + binary``),
    so that the rows of a query are joined into one table and their kinds checked in one call.
    Lookups, refreshes and inserts are single C-level calls over the query's blobs (``map``,
    ``dict.update``): no Python statement per blob.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"`max_bytes` must be ≥ 0; got {max_bytes}")
        self.max_bytes = max_bytes
        self.size = 0  # bytes held
        self._maps: dict[Binning, OrderedDict[bytes, bytes]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return sum(map(len, self._maps.values()))

    def sums(
        self,
        blobs: Sequence[bytes],
        *,
        n_bins: int,
        closed: Literal["right", "left"],
        target: Literal["top_label", "positive_class"] | None = None,
    ) -> Sums:
        """The row of sums of every blob under the binning; decodes the unseen ones together."""
        binning: Binning = (n_bins, closed, target)
        width = len(SUM_COLUMNS) + len(HIST_BLOCKS) * n_bins + 1  # and the kind column
        with self._lock:
            held = self._maps.get(binning)
            found: list[bytes | None] = [None] * len(blobs) if held is None else list(map(held.get, blobs))
        absent = np.fromiter(map(_absent, found), np.bool_, len(found))
        missing: IntArray = np.flatnonzero(absent)
        if not missing.size:  # every row held: joined in one copy, no array per row
            table = np.frombuffer(b"".join(cast(list[bytes], found)), np.float64).reshape(len(blobs), width)
        else:
            table = np.empty((len(blobs), width))
        if missing.size < len(blobs) and held is not None:
            if missing.size:
                hits = [row for row in found if row is not None]
                table[~absent] = np.frombuffer(b"".join(hits), np.float64).reshape(len(hits), width)
            seen = (
                [blob for blob, row in zip(blobs, found, strict=True) if row is not None]
                if missing.size
                else blobs
            )
            with self._lock:  # the hits become the most recently used (unless evicted meanwhile)
                deque(map(held.move_to_end, [blob for blob in seen if blob in held]), maxlen=0)
        if missing.size:  # every miss decoded together, straight into the table
            fresh_blobs = [blobs[i] for i in missing.tolist()]
            fresh = group_sums(
                fresh_blobs,
                np.arange(missing.size),
                int(missing.size),
                n_bins=n_bins,
                closed=closed,
                target=target,
            )
            assert fresh.n_classes is not None
            fresh_rows = table[missing] if missing.size < len(blobs) else table
            fresh_rows[:, :-1] = fresh.table
            fresh_rows[:, -1] = 2.0 * fresh.n_classes + fresh.binary
            if missing.size < len(blobs):
                table[missing] = fresh_rows
            self._add(binning, fresh_blobs, fresh_rows)
        kinds = np.unique(table[[0, -1], -1]) if len(table) else table[:0, -1]  # first and last...
        if kinds.size == 1 and (table[:, -1] != kinds[0]).any():  # ...then all: one pass, no sort
            kinds = np.unique(table[:, -1])
        if kinds.size > 1:  # as merge_stats: blobs of one sum must share K and binary
            shown = sorted((int(k) // 2, bool(k % 2)) for k in kinds)
            raise InputError("stats", f"must all share K and binary to merge; got {shown}")
        kind = int(kinds[0]) if kinds.size else None
        return Sums(
            table[:, :-1],
            None if kind is None else kind // 2,
            False if kind is None else bool(kind % 2),
            int(missing.size),
        )

    def _add(self, binning: Binning, blobs: list[bytes], table: FloatArray) -> None:
        """Keep the rows of `table` (one per blob), dropping the least recently used past `max_bytes`."""
        if self.max_bytes == 0 or not blobs:
            return
        rows = _row_bytes(table)
        each = len(rows[0]) + _OVERHEAD
        with self._lock:
            held = self._maps.setdefault(binning, OrderedDict())
            if any(map(held.__contains__, blobs)):  # (another query just added some)
                kept = dict(zip(blobs, rows, strict=True))
                for blob in [blob for blob in kept if blob in held]:
                    del kept[blob]
                blobs, rows = list(kept), list(kept.values())
            before = len(held)
            held.update(zip(blobs, rows, strict=True))
            new = len(held) - before  # fewer than len(blobs) when a blob is listed twice
            self.size += new * each + sum(map(len, blobs if new == len(blobs) else set(blobs)))
            while self.size > self.max_bytes and self._maps:  # oldest first, from the largest map
                largest = max(self._maps, key=lambda key: len(self._maps[key]))
                victims = self._maps[largest]
                blob, row = victims.popitem(last=False)
                self.size -= len(blob) + len(row) + _OVERHEAD
                if not victims:
                    del self._maps[largest]


def _absent(row: bytes | None) -> bool:
    return row is None


def _row_bytes(table: FloatArray) -> list[bytes]:
    """Each row of `table` as its float64 bytes (one NumPy call, no array per row)."""
    rows = np.ascontiguousarray(table, np.float64)
    return cast(list[bytes], rows.view(np.dtype((np.void, rows.shape[1] * 8))).ravel().tolist())


def shared_cache(holder: object, max_mb: float) -> SumsCache:
    """The cache kept on `holder` (the app's state), created on first use with `max_mb` MiB."""
    cache: SumsCache | None = getattr(holder, "monitor_sums_cache", None)
    if cache is None:
        cache = SumsCache(int(max_mb * 2**20))
        setattr(holder, "monitor_sums_cache", cache)  # noqa: B010 (any object with attributes)
    return cache


#: The binning of a rollup's stored digest: the metrics route's defaults (``n_bins=15``,
#: ``closed="right"``, the monitor's default target).
DIGEST_BINNING: Binning = (15, "right", None)


def rollup_digest(blob: bytes) -> bytes:
    """A rollup's sums under `DIGEST_BINNING`, as a cached row: float64 bytes, kind column last.

    The store keeps it beside the rollup's blob (:attr:`SqlStore.digest`), so a query with the
    default binning reads ~0.6 KB per hour instead of decoding its blob (~16 KB for 1,920 rows).
    """
    n_bins, closed, target = DIGEST_BINNING
    sums = group_sums([blob], np.zeros(1, np.int64), 1, n_bins=n_bins, closed=closed, target=target)
    assert sums.n_classes is not None
    return np.r_[sums.table[0], 2.0 * sums.n_classes + sums.binary].astype(np.float64).tobytes()


def digest_rows(digests: Sequence[bytes], n_bins: int) -> FloatArray:
    """The rows of `rollup_digest` bytes (kind column last), checked to have the binning's width."""
    width = len(SUM_COLUMNS) + len(HIST_BLOCKS) * n_bins + 1
    return np.frombuffer(b"".join(digests), np.float64).reshape(len(digests), width)
