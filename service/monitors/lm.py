"""Language-model observations of a monitor: per-bucket perplexity sums, written and read back.

Each scored sequence adds its NLL, tokens, per-sequence perplexity and (when known) bytes, words
and top-1 hits to the sums of its time bucket and segment (`lm_sums`, one row per bucket that
every write adds to). A point of a series is the :class:`service.core.PerplexitySeries` of the
buckets starting in ``[point, point + step)``: the same sums, so the same metrics, as scoring
that point's sequences at once.
"""

from typing import Any

import numpy as np

from service.core import PerplexitySeries
from service.core._typing import FloatArray, IntArray
from service.store import LmSumsRow, MonitorConfig, MonitorStore

from .batch_checks import check_segment, check_times


def sequence_rows(
    config: MonitorConfig,
    nll: FloatArray,
    tokens: IntArray,
    *,
    times: object,
    now: float,
    segment: object = None,
    bytes: IntArray | None = None,
    words: IntArray | None = None,
    hits: IntArray | None = None,
) -> tuple[PerplexitySeries, str, list[LmSumsRow]]:
    """S scored sequences (at `times`, default `now`) as the series of their buckets and its store rows.

    Raises `InputError` naming ``timestamps`` or ``segment``; `MonitorStore.add_lm_sums` writes the rows.
    """
    tag = check_segment(segment)
    t = check_times(times, int(np.asarray(nll).shape[0]), config, now)
    series = PerplexitySeries.observe(
        t, nll, tokens, width=config.bucket_s, bytes=bytes, words=words, hits=hits
    )
    sums = zip(*(getattr(series, c).tolist() for c in PerplexitySeries.COLUMNS), strict=True)
    rows: list[LmSumsRow] = [(b, tag, tuple(s)) for b, s in zip(series.start.tolist(), sums, strict=True)]
    return series, tag, rows


def read_series(
    store: MonitorStore, config: MonitorConfig, start: int, end: int, step: int, segment: str | None
) -> PerplexitySeries:
    """The sums of `config`'s buckets in ``[start, end)`` per `step` (points on the grid of `start`).

    The database sums each point's buckets (``GROUP BY``); each point is one bucket of the result.
    """
    return _series(store.read_lm_points(config.name, start, end, step, segment), start, step)


def _series(rows: list[tuple[int, tuple[Any, ...]]], start: int, step: int) -> PerplexitySeries:
    """The series of ``(point, sums)`` rows: point ``i`` starts at ``start + i * step``."""
    if not rows:
        return PerplexitySeries.observe([], [], [], width=step)
    points = start + np.array([row[0] for row in rows], np.int64) * step
    typed: dict[str, Any] = {
        c: np.array([row[1][i] for row in rows], np.float64)
        if c in PerplexitySeries.FLOAT_COLUMNS
        else np.array([int(row[1][i]) for row in rows], np.int64)
        for i, c in enumerate(PerplexitySeries.COLUMNS)
    }
    return PerplexitySeries(width=step, start=points, **typed)


def held_series(store: MonitorStore, config: MonitorConfig) -> PerplexitySeries:
    """Every bucket of `config`'s monitor summed into one, starting at 0 (none without sequences)."""
    sums = store.read_lm_totals(config.name)
    return _series([] if sums is None else [(0, sums)], 0, config.bucket_s)
