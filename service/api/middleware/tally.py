"""The request series kept as plain numbers, handed to Prometheus when it asks.

prometheus_client's ``inc`` and ``observe`` take a lock and check their state on every call,
and in multiprocess mode each writes a memory-mapped file: the four calls a scored request
made cost ~28,600 instructions (callgrind over ``benchmarks.in_process``, 2026-12-06). Only
the event loop's thread adds to these series, so here a finished request adds to a few
numbers in a list per label set: a dict lookup and four additions.

- **One process**: :class:`TallyCollector` reads the numbers when ``/metrics`` is scraped.
  Nothing lags; the exposition is the one prometheus_client's own families give for the
  same requests (``tests/api/test_metrics_tally.py`` compares them).
- **Several workers** (multiprocess mode): the numbers are the requests not yet written.
  :meth:`Tally.flush` adds them to prometheus_client's families, which write the shared
  files every worker's ``/metrics`` sums, and zeroes them. The first request a turn of the
  event loop finishes schedules one flush (``loop.call_soon``) for all that turn finishes,
  and ``/metrics`` flushes (on the loop, before it reads the files in a thread): another
  worker's requests show once the turn that answered them has ended. A flush runs only on the
  event loop's thread, the one that adds: it reads a count and zeroes it with nothing between.
"""

import asyncio
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from .exchange import Exchange

#: Where an exchange's numbers start in its list: count, then sum of durations, then the buckets.
_COUNT, _SUM, _BUCKETS = 0, 1, 2


class Tally:
    """Requests, their durations, scored rows and bytes, and errors, per label set.

    ``exchanges[(route, method, status)]`` is ``[count, Σ duration, n per latency bucket…]``
    (the buckets not cumulative, the last one +Inf); ``scored[route]`` is ``[rows, bytes]``;
    ``errors[(route, type)]`` is ``[count]``. ``created`` holds when each label set was first
    seen (Prometheus' ``_created`` samples).
    """

    def __init__(self, buckets: Iterable[float]) -> None:
        self.bounds = (*buckets, float("inf"))
        self.exchanges: dict[tuple[str, str, int], list[float]] = {}
        self.scored: dict[str, list[int]] = {}
        self.errors: dict[tuple[str, str], list[int]] = {}
        self.created: dict[object, float] = {}
        #: Multiprocess mode: the families :meth:`flush` writes to, and whether one is scheduled.
        self.families: tuple[Counter, Histogram, Counter, Counter, Counter] | None = None
        self._flush_due = False
        #: Multiprocess mode: each label set's children in :attr:`families`.
        self._children: dict[object, Any] = {}

    def observe(self, exchange: "Exchange", scope: object = None) -> None:
        """Add one finished request (`scope` unused: an observer's signature, called by the layer itself)."""
        route, status, duration = exchange.route, exchange.status, exchange.duration
        series = self.exchanges.get((route, exchange.method, status))
        if series is None:
            series = self._new((route, exchange.method, status), self.exchanges, _BUCKETS + len(self.bounds))
        series[_COUNT] += 1
        series[_SUM] += duration
        series[_BUCKETS + bisect_left(self.bounds, duration)] += 1  # bound ≥ duration: Prometheus' le
        if 200 <= status < 300:
            rows, bytes_in = exchange.rows, exchange.bytes_in
            if rows or bytes_in:
                scored = self.scored.get(route) or self._new(route, self.scored, 2)
                scored[0] += rows
                scored[1] += bytes_in
        elif exchange.error:
            error = self.errors.get((route, exchange.error)) or self._new(
                (route, exchange.error), self.errors, 1
            )
            error[0] += 1
        if self.families is not None and not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self.flush)

    def _new(self, key: Any, table: dict[Any, list[Any]], size: int) -> list[Any]:
        """A label set's first numbers in `table`, all zero, noted as created now."""
        numbers = table[key] = [0] * size
        self.created.setdefault(key, time.time())
        return numbers

    def flush(self) -> None:
        """Multiprocess mode: add what was observed since the last flush to the shared families."""
        self._flush_due = False
        if self.families is None:
            return
        requests, latency, rows, bytes_in, errors = self.families
        children = self._children
        for key, series in self.exchanges.items():
            if not series[_COUNT]:
                continue
            pair = children.get(key)
            if pair is None:  # `labels(...)` takes a lock and builds its key: once per label set
                labels = (key[0], key[1], str(key[2]))
                pair = children[key] = (requests.labels(*labels), latency.labels(*labels))
            count, child = pair
            count.inc(series[_COUNT])
            # prometheus_client 0.26 has no public call adding many observations at once: a
            # histogram child keeps its sum and its (not cumulative) buckets as values
            # (tests/api/test_metrics_tally.py pins this against the installed version).
            child._sum.inc(series[_SUM])
            for i, n in enumerate(series[_BUCKETS:]):
                if n:
                    child._buckets[i].inc(n)
            series[:] = [0] * len(series)
        for route, scored in self.scored.items():
            if scored[0] or scored[1]:
                pair = children.get(route)
                if pair is None:
                    pair = children[route] = (rows.labels(route), bytes_in.labels(route))
                pair[0].inc(scored[0])
                pair[1].inc(scored[1])
                scored[0] = scored[1] = 0
        for key2, error in self.errors.items():
            if error[0]:
                counter = children.get(key2)
                if counter is None:
                    counter = children[key2] = errors.labels(*key2)
                counter.inc(error[0])
                error[0] = 0


class TallyCollector(Collector):
    """One process's request series, read from its :class:`Tally` at each scrape.

    The families, samples and labels are those prometheus_client's ``Counter`` and
    ``Histogram`` (``Metrics`` in :mod:`.metrics` names them) expose for the same requests.
    """

    def __init__(self, tally: Tally, documentation: dict[str, str]) -> None:
        self.tally = tally
        self.documentation = documentation

    def collect(self) -> Iterator[Metric]:
        """The request series' families as they stand."""
        tally, doc = self.tally, self.documentation
        created = tally.created
        requests = Metric("xent_http_requests", doc["xent_http_requests"], "counter")
        latency = Metric(
            "xent_http_request_duration_seconds", doc["xent_http_request_duration_seconds"], "histogram"
        )
        le = [floatToGoString(b) for b in tally.bounds]  # type: ignore[no-untyped-call]
        for key, series in list(tally.exchanges.items()):
            route, method, status = key
            labels = {"route": route, "method": method, "status": str(status)}
            requests.add_sample("xent_http_requests_total", labels, series[_COUNT])
            requests.add_sample("xent_http_requests_created", labels, created[key])
            cumulative = 0.0
            for bound, n in zip(le, series[_BUCKETS:], strict=True):
                cumulative += n
                latency.add_sample(
                    "xent_http_request_duration_seconds_bucket", {**labels, "le": bound}, cumulative
                )
            latency.add_sample("xent_http_request_duration_seconds_count", labels, series[_COUNT])
            latency.add_sample("xent_http_request_duration_seconds_sum", labels, series[_SUM])
            latency.add_sample("xent_http_request_duration_seconds_created", labels, created[key])
        yield requests
        yield latency
        yield _counter(
            "xent_scored_rows", doc, "route", ((r, s[0]) for r, s in list(tally.scored.items())), created
        )
        yield _counter(
            "xent_scored_bytes", doc, "route", ((r, s[1]) for r, s in list(tally.scored.items())), created
        )
        errors = Metric("xent_errors", doc["xent_errors"], "counter")
        for key2, error in list(tally.errors.items()):
            labels = {"route": key2[0], "type": key2[1]}
            errors.add_sample("xent_errors_total", labels, error[0])
            errors.add_sample("xent_errors_created", labels, created[key2])
        yield errors


def _counter(
    name: str,
    doc: dict[str, str],
    label: str,
    values: Iterable[tuple[str, Any]],
    created: dict[object, float],
) -> Metric:
    """A counter family with a sample per label value (and its ``_created``)."""
    family = Metric(name, doc[name], "counter")
    for value, n in values:
        family.add_sample(f"{name}_total", {label: value}, n)
        family.add_sample(f"{name}_created", {label: value}, created[value])
    return family
