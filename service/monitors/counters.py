"""Prometheus counters of the monitors' statistics, so PromQL computes CE, accuracy and ECE.

Every series is labelled ``monitor`` and ``segment``; the binned ones also ``bin``, the upper edge
of one of 10 equal-width bins closed on the right (``"0.1"`` … ``"1.0"``, the monitor's
``n_bins=10, closed="right"`` convention, so the ECE below equals the API's with ``n_bins=10``):

- ``xent_monitor_samples_total``: predictions recorded; ``xent_monitor_confidence_total``: their
  Σ top-label confidence (mean confidence = expected accuracy before labels);
- ``xent_monitor_labelled_total``, ``xent_monitor_nll_nats_total``, ``xent_monitor_correct_total``,
  ``xent_monitor_brier_total`` (halved for two classes, as ``/v1/calibration``): labelled rows, at
  ingestion or when a late label joins;
- ``xent_monitor_bin_count_total``, ``xent_monitor_bin_confidence_total``,
  ``xent_monitor_bin_correct_total`` [bin]: labelled rows per bin of the ECE's target (top-label;
  positive-class for a binary monitor), their Σ confidence and Σ outcome;
- ``xent_monitor_lm_sequences_total``, ``xent_monitor_lm_tokens_total``,
  ``xent_monitor_lm_nll_nats_total``: a language model's scored sequences (``…/sequences``), their
  tokens and Σ NLL, so ``exp(nll / tokens)`` is the token perplexity;
  ``xent_monitor_lm_bytes_total`` / ``xent_monitor_lm_byte_nll_nats_total`` and
  ``xent_monitor_lm_words_total`` / ``xent_monitor_lm_word_nll_nats_total``: the bytes (words) of
  the sequences that brought them and those sequences' Σ NLL, so ``byte_nll / bytes / ln 2`` is
  the bits per byte (the API's when every sequence brought its bytes).

They are incremented by the worker that handled the request, after the store committed, in the
app's registry (a small batch stored raw, by the worker that settles it: :mod:`.settle`, and a
scrape settles first): the writes an event loop makes within ``FLUSH_S`` (50 ms) are summed first and
added together then (one update per series for all of them, where each write's ~36 updates
cost more than its statistics' sums: ~40 µs), and every held sum is added before this worker
answers a scrape (:meth:`MonitorCounters.flush`) and when it stops. A write committed in a worker
thread holds its statistics with those of the worker's event loop (:meth:`MonitorCounters.bind`)
before it answers, without waking the loop (but to start a window's timer): a scrape that follows
the answer finds them.
With several workers ``PROMETHEUS_MULTIPROC_DIR`` is set and ``/metrics`` sums all workers (see
:mod:`service.api.middleware.metrics`): another worker's writes reach a scrape within
``FLUSH_S`` of their answer. A counter only grows, and restarts at 0 with the server;
Prometheus's ``increase`` handles that. Temperature-scaled rows are not counted.
"""

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from service.core import MonitorStats, PerplexitySeries
from service.core.calibration.brier import brier_factor
from service.core.monitoring.fine_histogram import FineHistogram, coarse_table, weighted_bincount

N_BINS = 10
BIN_LABELS = tuple(f"{(b + 1) / N_BINS:.1f}" for b in range(N_BINS))
#: Seconds an event loop's writes' increments are held and summed before they are added.
FLUSH_S = 0.05


class MonitorCounters:
    """The counter families of :mod:`service.monitors.counters`, registered in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ["monitor", "segment"]

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, [*labels, *extra], registry=registry)

        self.samples = counter("xent_monitor_samples", "Predictions recorded by monitors.")
        self.confidence = counter("xent_monitor_confidence", "Σ top-label confidence of the predictions.")
        self.labelled = counter("xent_monitor_labelled", "Labelled rows (at ingestion or a late label).")
        self.nll = counter("xent_monitor_nll_nats", "Σ negative log-likelihood (nats) of labelled rows.")
        self.correct = counter("xent_monitor_correct", "Labelled rows whose top-label class is the label.")
        self.brier = counter("xent_monitor_brier", "Σ Brier score of labelled rows (halved for K = 2).")
        self.bin_count = counter("xent_monitor_bin_count", "Labelled rows per confidence bin.", ("bin",))
        self.bin_confidence = counter(
            "xent_monitor_bin_confidence", "Σ confidence of labelled rows per bin.", ("bin",)
        )
        self.bin_correct = counter(
            "xent_monitor_bin_correct", "Σ outcome of labelled rows per bin.", ("bin",)
        )
        self.lm = {
            "sequences": counter("xent_monitor_lm_sequences", "Sequences scored by monitors (…/sequences)."),
            "tokens": counter("xent_monitor_lm_tokens", "Scored tokens of those sequences."),
            "nll": counter("xent_monitor_lm_nll_nats", "Σ NLL (nats) of those sequences."),
            "bytes": counter("xent_monitor_lm_bytes", "Bytes of the sequences that brought a byte count."),
            "byte_nll": counter("xent_monitor_lm_byte_nll_nats", "Σ NLL (nats) of those with bytes."),
            "words": counter("xent_monitor_lm_words", "Words of the sequences that brought a word count."),
            "word_nll": counter("xent_monitor_lm_word_nll_nats", "Σ NLL (nats) of those with words."),
        }
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._lm_children: dict[tuple[str, str], dict[str, Any]] = {}
        #: Per event loop, the statistics of its writes not added yet, per (monitor, segment) (`add`).
        self._held: dict[asyncio.AbstractEventLoop, dict[tuple[str, str], list[MonitorStats]]] = {}
        self._lock = threading.Lock()  # `flush` runs in the scrape's thread
        #: The worker's event loop, while it serves: `add` from a thread hands its statistics to it.
        self._home: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Hold the statistics of writes committed in threads on `loop` (None: add them at once again).

        Bound at the worker's start-up and unbound before its last :meth:`flush`.
        """
        self._home = loop

    def _series(self, monitor: str, segment: str) -> tuple[Any, ...]:
        """Every series of (monitor, segment), created at 0 on first use."""
        key = (monitor, segment)
        series = self._children.get(key)
        if series is None:
            flat = tuple(
                family.labels(monitor, segment)
                for family in (
                    self.samples,
                    self.confidence,
                    self.labelled,
                    self.nll,
                    self.correct,
                    self.brier,
                )
            )
            binned = tuple(
                tuple(family.labels(monitor, segment, b) for b in BIN_LABELS)
                for family in (self.bin_count, self.bin_confidence, self.bin_correct)
            )
            series = self._children[key] = (*flat, *binned)
        return series

    def _lm_series(self, monitor: str, segment: str) -> dict[str, Any]:
        """The language-model series of (monitor, segment), created at 0 on first use."""
        key = (monitor, segment)
        series = self._lm_children.get(key)
        if series is None:
            series = self._lm_children[key] = {k: f.labels(monitor, segment) for k, f in self.lm.items()}
        return series

    def touch(self, monitor: str, segment: str = "") -> None:
        """Create the series of (monitor, segment) at 0, so a scrape sees them before the first row."""
        self._series(monitor, segment)
        self._lm_series(monitor, segment)

    def add_lm(self, monitor: str, rows: Iterable[tuple[int, str, tuple[Any, ...]]]) -> None:
        """Add the language-model sums of a committed write: ``(bucket, segment, sums)`` rows.

        Sums are in `PerplexitySeries.COLUMNS` order. Within one write every sequence brought its
        bytes (words) or none did, so a row's bytes go with its whole NLL or not at all.
        """
        for _, segment, values in rows:
            sums = dict(zip(PerplexitySeries.COLUMNS, values, strict=True))
            series = self._lm_series(monitor, segment)
            nll = max(float(sums["nll"]), 0.0)
            series["sequences"].inc(int(sums["sequences"]))
            series["tokens"].inc(int(sums["tokens"]))
            series["nll"].inc(nll)
            for count in ("bytes", "words"):
                if sums["sequences"] and sums[f"with_{count}"] == sums["sequences"]:
                    series[count].inc(int(sums[count]))
                    series[count[:-1] + "_nll"].inc(nll)

    def add(self, monitor: str, rows: Iterable[tuple[str, MonitorStats]]) -> None:
        """Add each ``(segment, statistics)`` of a committed write.

        The statistics are held with the other writes of their event loop (the running one, or
        from a thread the bound one: :meth:`bind`) and their sums added to the counters
        ``FLUSH_S`` later, or at the next :meth:`flush` (one update per series for all of them,
        their histograms coarsened together). A thread holds them itself, under the lock, before
        its write answers (so a scrape that follows the answer finds them), and wakes the loop
        only to start the timer of a window it opens. With no loop bound, or one closed, they
        are added at once.
        """
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        home = loop if loop is not None else self._home
        if home is None or home.is_closed():
            for segment, stats in rows:
                self._increment((monitor, segment), _values([stats]))
            return
        with self._lock:
            held = self._held.get(home)
            opened = held is None
            if held is None:
                held = self._held[home] = {}
            for segment, stats in rows:
                kept = held.get((monitor, segment))
                if kept is None:
                    held[(monitor, segment)] = [stats]
                else:
                    kept.append(stats)
        if not opened:
            return
        if loop is not None:
            loop.call_later(FLUSH_S, self._flush, loop)
            return
        try:
            home.call_soon_threadsafe(home.call_later, FLUSH_S, self._flush, home)
        except RuntimeError:  # the loop closed meanwhile: added here, at once
            self._flush(home)

    def flush(self) -> None:
        """Add every sum held (before a scrape, at shutdown): from any thread."""
        with self._lock:
            held, self._held = self._held, {}
        for kept in held.values():
            for key, stats in kept.items():
                self._increment(key, _values(stats))

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Add the sums of the statistics `loop` held (its timer)."""
        with self._lock:
            kept = self._held.pop(loop, {})
        for key, stats in kept.items():
            self._increment(key, _values(stats))

    def _increment(self, key: tuple[str, str], values: np.ndarray) -> None:
        """Add `values` (as `_values` orders them) to the series of `key`; zeros are not added."""
        series = self._series(*key)
        flat = values.tolist()
        for child, value in zip(series[:6], flat[:6], strict=True):
            if value:
                child.inc(value)
        for b, family in enumerate(series[6:]):  # counts, Σ confidence, Σ outcome: ten bins each
            for child, value in zip(family, flat[6 + b * N_BINS : 6 + (b + 1) * N_BINS], strict=True):
                if value:
                    child.inc(value)


def _values(rows: list[MonitorStats]) -> np.ndarray:
    """The 36 increments of the statistics `rows` together, in float64.

    Samples, Σ confidence, labelled, Σ NLL, correct, Σ Brier, then for each of the ten bins the
    labelled rows, then their Σ confidence, then their Σ outcome. Each statistics' Σ confidence
    and Σ NLL count from 0 up (a rounding below 0 is not added), as when added one by one; the
    bins of several are one coarsening of their fine cells together (:func:`_coarse_sums`).
    """
    values = np.zeros(6 + 3 * N_BINS)
    sums = [0.0] * 6
    hists = []
    for stats in rows:
        if stats.weight_predictions:
            sums[0] += stats.weight_predictions
            sums[1] += max(stats.confidence_sum, 0.0)
        if not stats.weight_labelled:
            continue
        sums[2] += stats.weight_labelled
        sums[3] += max(stats.nll_sum, 0.0)
        sums[4] += stats.correct_weight if stats.weighted else stats.correct
        sums[5] += brier_factor("auto", stats.n_classes, binary=stats.binary) * stats.brier_sum
        hists.append(stats.positive if stats.binary and stats.positive is not None else stats.top)
    values[:6] = sums
    if hists:
        values[6:] = _coarse_sums(hists)
    return values


def _coarse_sums(hists: list[FineHistogram]) -> np.ndarray:
    """Σ w, Σ w·c and Σ w·outcome per bin of several histograms together (30 values).

    The cells' values are added along each run of cells in one bin (``np.add.reduceat``,
    contiguous), then the runs' sums into their bins: a histogram's cells ascend and the bin of a
    cell never falls as the cell rises, so each histogram has a run per bin at most. A window of
    ~20 large writes (~30,000 cells) took 860 µs of the event loop with a weighted ``bincount``
    over every cell per column, 610 this way (medians over ~20 windows each, alternated in one
    process; 388 against 124 µs for 18 writes whose statistics are in cache, where the loop's
    come from the worker threads' memory).
    """
    cells = np.concatenate([h.cells for h in hists])
    if cells.size == 0:
        return np.zeros(3 * N_BINS)
    index = coarse_table(N_BINS, "right")[cells]
    first = np.empty(cells.size, bool)  # the first cell of each run of one bin
    first[0] = True
    np.not_equal(index[1:], index[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    bins = index[starts]
    columns = [np.concatenate([getattr(h, name) for h in hists]) for name in ("weights", "conf", "hits")]
    return np.concatenate([weighted_bincount(bins, np.add.reduceat(c, starts), N_BINS) for c in columns])
