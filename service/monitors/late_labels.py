"""Late labels: stored pending rows and their labels turned into statistics of their buckets.

A late label folds into the bucket of its prediction's time, not the label's arrival.
"""

from collections.abc import Sequence

import numpy as np

from service.core import Distribution, MonitorStats
from service.store import Fold, LabelledRow, MonitorConfig, PendingRow, StatsRow

from .batch_checks import bucket_starts


def rows_distribution(rows: Sequence[PendingRow | LabelledRow], config: MonitorConfig) -> Distribution:
    """The predictions of stored rows that share one kind and dtype, as a Distribution."""
    dtype = np.dtype(rows[0].dtype).newbyteorder("<")
    data = np.frombuffer(b"".join(row.row for row in rows), dtype).astype(dtype.newbyteorder("="))
    values = data if config.binary else data.reshape(len(rows), config.n_classes)
    if rows[0].kind == "logits":
        return Distribution.from_logits(values, validate=False)
    return Distribution.from_probs(values, validate=False)


def fold_labels(config: MonitorConfig, sink: list[tuple[str, MonitorStats]] | None = None) -> Fold:
    """The ``fold`` for ``store.join_labels``: labelled-side statistics in each prediction's bucket.

    `sink` receives the ``(segment, statistics)`` of the last call (for the counters).
    """

    def fold(rows: list[PendingRow], labels: list[int]) -> list[StatsRow]:
        if sink is not None:
            sink.clear()
        groups: dict[tuple[int, str, str, str], list[int]] = {}
        starts = bucket_starts(np.array([row.time for row in rows]), config.bucket_s).tolist()
        for i, row in enumerate(rows):
            groups.setdefault((starts[i], row.segment, row.kind, row.dtype), []).append(i)
        y = np.asarray(labels, np.int64)
        out: list[StatsRow] = []
        for (start, segment, _, _), members in groups.items():
            dist = rows_distribution([rows[i] for i in members], config)
            stats = MonitorStats.summarise(dist, y[members], part="labels")
            if sink is not None:
                sink.append((segment, stats))
            out.append((start, segment, stats.to_bytes()))
        return out

    return fold
