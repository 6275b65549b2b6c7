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
  positive-class for a binary monitor), their Σ confidence and Σ outcome.

They are incremented by the worker that handled the request, after the store committed, in the
app's registry: with several workers ``PROMETHEUS_MULTIPROC_DIR`` is set and ``/metrics`` sums all
workers (see :mod:`service.api.middleware.metrics`). A counter restarts at 0 with the server;
Prometheus's ``increase`` handles that. Temperature-scaled rows are not counted.
"""

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from service.core import MonitorStats
from service.core.calibration.brier import brier_factor

N_BINS = 10
BIN_LABELS = tuple(f"{(b + 1) / N_BINS:.1f}" for b in range(N_BINS))


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
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}

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

    def touch(self, monitor: str, segment: str = "") -> None:
        """Create the series of (monitor, segment) at 0, so a scrape sees them before the first row."""
        self._series(monitor, segment)

    def add(self, monitor: str, rows: Iterable[tuple[str, MonitorStats]]) -> None:
        """Add each ``(segment, statistics)`` of a committed write."""
        for segment, stats in rows:
            samples, confidence, labelled, nll, correct, brier, count, conf, hits = self._series(
                monitor, segment
            )
            if stats.weight_predictions:
                samples.inc(stats.weight_predictions)
                confidence.inc(max(stats.confidence_sum, 0.0))
            if not stats.weight_labelled:
                continue
            labelled.inc(stats.weight_labelled)
            nll.inc(max(stats.nll_sum, 0.0))
            correct.inc(stats.correct_weight if stats.weighted else stats.correct)
            brier.inc(brier_factor("auto", stats.n_classes, binary=stats.binary) * stats.brier_sum)
            hist = stats.positive if stats.binary and stats.positive is not None else stats.top
            _, weight, sum_conf, sum_hits = hist.coarsen(N_BINS, "right")
            for b in range(N_BINS):  # ten bins, not a loop over rows
                if weight[b]:
                    count[b].inc(float(weight[b]))
                    conf[b].inc(float(sum_conf[b]))
                    hits[b].inc(float(sum_hits[b]))
