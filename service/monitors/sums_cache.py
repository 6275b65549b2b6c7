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
from collections import OrderedDict
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
    """Least-recently-used map ``blob bytes -> {binning: row of sums}``, bounded in bytes; thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"`max_bytes` must be ≥ 0; got {max_bytes}")
        self.max_bytes = max_bytes
        self.size = 0  # bytes held
        self._entries: OrderedDict[bytes, dict[Binning, bytes]] = OrderedDict()  # rows as float64 bytes
        self._kinds: dict[bytes, tuple[int, bool]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

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
        found: list[bytes | None] = []
        kinds: set[tuple[int, bool]] = set()
        with self._lock:
            entries = self._entries
            for blob in blobs:
                entry = entries.get(blob)
                row = None if entry is None else entry.get(binning)
                if row is not None:
                    entries.move_to_end(blob)
                    kinds.add(self._kinds[blob])
                found.append(row)
        missing: IntArray = np.fromiter((i for i, row in enumerate(found) if row is None), np.int64)
        if missing.size:
            fresh = group_sums(
                [blobs[i] for i in missing],
                np.arange(missing.size),
                int(missing.size),
                n_bins=n_bins,
                closed=closed,
                target=target,
            )
            assert fresh.n_classes is not None
            kinds.add((fresh.n_classes, fresh.binary))
            fresh_rows = self._add(
                [blobs[i] for i in missing], fresh.table, binning, (fresh.n_classes, fresh.binary)
            )
            for i, row in zip(missing.tolist(), fresh_rows, strict=True):
                found[i] = row
        width = len(SUM_COLUMNS) + len(HIST_BLOCKS) * n_bins
        joined = b"".join(cast(list[bytes], found))  # one copy: no array per row
        table = np.frombuffer(joined, np.float64).reshape(len(found), width)
        if len(kinds) > 1:  # as merge_stats: blobs of one sum must share K and binary
            raise InputError("stats", f"must all share K and binary to merge; got {sorted(kinds)}")
        kind = next(iter(kinds), None)
        return Sums(
            table, None if kind is None else kind[0], False if kind is None else kind[1], int(missing.size)
        )

    def _add(
        self, blobs: list[bytes], table: FloatArray, binning: Binning, kind: tuple[int, bool]
    ) -> list[bytes]:
        """Keep the rows of `table` (one per blob); return them as bytes."""
        rows = [row.tobytes() for row in np.ascontiguousarray(table, np.float64)]
        if self.max_bytes == 0:
            return rows
        row_bytes = table.shape[1] * 8 + _OVERHEAD
        with self._lock:
            entries = self._entries
            for blob, row in zip(blobs, rows, strict=True):
                entry = entries.get(blob)
                if entry is None:
                    entry = entries[blob] = {}
                    self._kinds[blob] = kind
                    self.size += len(blob) + _OVERHEAD
                else:
                    entries.move_to_end(blob)
                if binning not in entry:
                    entry[binning] = row
                    self.size += row_bytes
            while self.size > self.max_bytes and entries:
                blob, evicted = entries.popitem(last=False)
                del self._kinds[blob]
                self.size -= len(blob) + _OVERHEAD + sum(len(r) + _OVERHEAD for r in evicted.values())
        return rows


def shared_cache(holder: object, max_mb: float) -> SumsCache:
    """The cache kept on `holder` (the app's state), created on first use with `max_mb` MiB."""
    cache: SumsCache | None = getattr(holder, "monitor_sums_cache", None)
    if cache is None:
        cache = SumsCache(int(max_mb * 2**20))
        setattr(holder, "monitor_sums_cache", cache)  # noqa: B010 (any object with attributes)
    return cache
