"""Prometheus metrics: what they count, the middleware that feeds them, and their exposition.

Series (labels in brackets):

- ``xent_http_requests_total`` [route, method, status]
- ``xent_http_request_duration_seconds`` histogram [route, method, status]: from the first
  byte of the request to the last byte of the response, as the app sees it
- ``xent_scored_rows_total`` and ``xent_scored_bytes_total`` [route]: rows (samples) and
  request-body bytes of the requests that were scored (2xx)
- ``xent_event_loop_lag_seconds`` histogram: how late the event loop woke a 20 ms timer
  (:mod:`service.api.middleware.loop_lag`), i.e. how long it was kept from answering anything
- ``xent_errors_total`` [route, type]: every 4xx/5xx by kind (``malformed_body``,
  ``unauthorized``, ``forbidden``, ``not_found``, ``method_not_allowed``, ``too_large``,
  ``unsupported_media_type``, ``invalid_input``, ``overloaded``, ``timeout``, ``draining``,
  ``internal``)

- the process and Python runtime: ``process_*`` (CPU seconds, resident and virtual memory,
  open and max file descriptors, start time), ``python_gc_*`` (collections, objects collected
  and uncollectable, by generation) and ``python_info``

The requests are observed by :class:`service.api.middleware.exchange.ExchangeMiddleware`.
``route`` is the route template (``/docs``, ``/openapi.json`` and the other pages FastAPI
serves included), or ``unmatched`` for paths the app does not serve, so random URLs cannot
blow up the label space. With several uvicorn workers,
``python -m service serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the workers start; each worker then writes its samples there (the request series
once per turn of its event loop, :mod:`.tally`) and ``/metrics`` (answered by any one
worker) sums them over all workers, dead ones included, so counters never go backwards
when a worker is replaced. The process and Python metrics are
per worker then: each worker writes its own (every :data:`WORKER_STATS_S` seconds, and just
before it answers ``/metrics``) as gauges labelled with its ``pid``, and a worker that has
gone is dropped from them when the next one starts.
"""

import asyncio
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector
from starlette.types import Scope

from .tally import Tally, TallyCollector

if TYPE_CHECKING:
    from .exchange import Exchange

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 1.0)
ERROR_TYPES = {
    400: "malformed_body",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    500: "internal",
    503: "unavailable",
}
UNMATCHED = "unmatched"
ERROR_LOGGER = logging.getLogger("xent.error")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between two writes of a worker's process and Python metrics in multiprocess mode.
WORKER_STATS_S = 5.0
#: The request series' help texts.
DOCS = {
    "xent_http_requests": "HTTP requests answered.",
    "xent_http_request_duration_seconds": "Time from request to the end of the response.",
    "xent_scored_rows": "Rows (samples) in requests that were scored.",
    "xent_scored_bytes": "Request-body bytes of requests that were scored.",
    "xent_errors": "Error responses by kind.",
}


class Metrics:
    """The service's metric families, in a registry of their own (one per app).

    The request series are counted in a :class:`.tally.Tally` (plain numbers, no lock per
    request): in one process a collector reads it at each scrape; with several workers it is
    flushed into the prometheus_client families below once per turn of the event loop.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tally = Tally(LATENCY_BUCKETS)
        #: Record one finished request (an observer of the layer: the tally's own method, no call between).
        self.observe: Callable[[Exchange, Scope], None] = self.tally.observe
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        if self.multiprocess:
            labels = ["route", "method", "status"]
            self.tally.families = (
                Counter("xent_http_requests", DOCS["xent_http_requests"], labels, registry=self.registry),
                Histogram(
                    "xent_http_request_duration_seconds",
                    DOCS["xent_http_request_duration_seconds"],
                    labels,
                    buckets=LATENCY_BUCKETS,
                    registry=self.registry,
                ),
                Counter("xent_scored_rows", DOCS["xent_scored_rows"], ["route"], registry=self.registry),
                Counter("xent_scored_bytes", DOCS["xent_scored_bytes"], ["route"], registry=self.registry),
                Counter("xent_errors", DOCS["xent_errors"], ["route", "type"], registry=self.registry),
            )
        else:
            self.registry.register(TallyCollector(self.tally, DOCS))
        self.loop_lag = Histogram(
            "xent_event_loop_lag_seconds",
            "How late the event loop woke a 20 ms timer: time it spent unable to answer anything.",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.worker_stats: WorkerStats | None = None
        if self.multiprocess:
            self.worker_stats = WorkerStats(self.registry)
        else:
            for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
                self.registry.register(collector)

    def exposition(self) -> bytes:
        """The Prometheus text format: of this process, or of all workers in multiprocess mode."""
        if self.worker_stats is not None:  # (the request series are flushed on the loop first)
            self.worker_stats.refresh()
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            registry.register(PLATFORM_COLLECTOR)  # the same in every worker
            return generate_latest(registry)
        return generate_latest(self.registry)


class WorkerStats:
    """A worker's own process and Python metrics, written as gauges that every worker's /metrics reads.

    prometheus_client's process and GC collectors read the process they run in, so in
    multiprocess mode ``/metrics`` would show only the worker that answered. Here each worker
    copies their samples into ``liveall`` gauges (one series per live worker, labelled with
    its ``pid``) from :meth:`refresh`, which the app calls every :data:`WORKER_STATS_S`
    seconds and before every exposition. Files of workers that have gone are removed when a
    worker starts.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.sources: list[Collector] = [PROCESS_COLLECTOR, GC_COLLECTOR]
        self.gauges: dict[str, Gauge] = {}
        _forget_dead_workers(os.environ[MULTIPROC_ENV])

    def refresh(self) -> None:
        """Copy this worker's current process and GC samples into its gauges."""
        for source in self.sources:
            for family in source.collect():
                for sample in family.samples:
                    if sample.name.endswith("_created"):
                        continue
                    gauge = self.gauges.get(sample.name)
                    if gauge is None:
                        gauge = self.gauges[sample.name] = Gauge(
                            sample.name,
                            family.documentation + " (per worker)",
                            list(sample.labels),
                            registry=self.registry,
                            multiprocess_mode="liveall",
                        )
                    (gauge.labels(**sample.labels) if sample.labels else gauge).set(sample.value)


def _forget_dead_workers(path: str) -> None:
    """Drop the ``live*`` gauge files of processes that no longer run."""
    pids = {
        int(match[1])
        for f in Path(path).glob("gauge_live*_*.db")
        if (match := re.search(r"_(\d+)\.db$", f.name))
    }
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            pass


async def refresh_worker_stats(metrics: Metrics, interval: float = WORKER_STATS_S) -> None:
    """Forever, in multiprocess mode: write this worker's process and Python metrics every `interval` s."""
    if metrics.worker_stats is None:
        return
    while True:
        metrics.worker_stats.refresh()
        await asyncio.sleep(interval)
