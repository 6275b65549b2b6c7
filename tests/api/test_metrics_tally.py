"""Issue 22: the request series counted as plain numbers (service.api.middleware.tally) expose exactly
what prometheus_client's own Counter and Histogram give for the same requests, in one process and,
flushed once per turn of the event loop, across workers in multiprocess mode."""

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from service.api.middleware.exchange import Exchange
from service.api.middleware.metrics import DOCS, LATENCY_BUCKETS, Metrics

ROOT = Path(__file__).resolve().parents[2]
SERIES = ("xent_http_request", "xent_scored", "xent_errors")


def exchanges(n: int = 400, seed: int = 7) -> list[Exchange]:
    """Requests of several routes, statuses and errors; durations on the buckets' edges included."""
    rng = random.Random(seed)
    durations = [*LATENCY_BUCKETS, 0.0, 99.0, 1e-7]
    out = []
    for _ in range(n):
        exchange = Exchange(rng.choice(["POST", "GET"]), "/")
        exchange.route = rng.choice(["/v1/cross-entropy", "/v1/divergence", "unmatched"])
        exchange.status = rng.choice([200, 200, 200, 404, 422, 503])
        exchange.duration = rng.choice(durations) if rng.random() < 0.5 else rng.expovariate(40.0)
        if exchange.status == 200:
            exchange.rows = rng.choice([0, 1, 32, 10_000])
            exchange.bytes_in = rng.choice([0, 6_800, 123])
        else:
            exchange.error = {404: "not_found", 422: "invalid_input", 503: "unavailable"}[exchange.status]
        out.append(exchange)
    return out


def reference(requests: list[Exchange]) -> bytes:
    """The same requests counted by prometheus_client's families, one call per observation."""
    registry = CollectorRegistry()
    labels = ["route", "method", "status"]
    count = Counter("xent_http_requests", DOCS["xent_http_requests"], labels, registry=registry)
    latency = Histogram(
        "xent_http_request_duration_seconds",
        DOCS["xent_http_request_duration_seconds"],
        labels,
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    rows = Counter("xent_scored_rows", DOCS["xent_scored_rows"], ["route"], registry=registry)
    size = Counter("xent_scored_bytes", DOCS["xent_scored_bytes"], ["route"], registry=registry)
    errors = Counter("xent_errors", DOCS["xent_errors"], ["route", "type"], registry=registry)
    for e in requests:
        count.labels(e.route, e.method, str(e.status)).inc()
        latency.labels(e.route, e.method, str(e.status)).observe(e.duration)
        if 200 <= e.status < 300 and (e.rows or e.bytes_in):
            rows.labels(e.route).inc(e.rows)
            size.labels(e.route).inc(e.bytes_in)
        elif e.error:
            errors.labels(e.route, e.error).inc()
    return generate_latest(registry)


def samples(text: bytes, created: bool = False) -> dict[tuple[str, frozenset], float]:
    """The request series' samples (not their ``_created`` times unless asked)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
        if s.name.startswith(SERIES) and (created or not s.name.endswith("_created"))
    }


def test_one_process_exposes_what_prometheus_client_would():
    requests = exchanges()
    metrics = Metrics()
    assert not metrics.multiprocess
    for exchange in requests:
        metrics.observe(exchange, {})
    ours, theirs = metrics.exposition(), reference(requests)
    assert samples(ours) == samples(theirs)  # counts, sums, every bucket
    # the same families, help texts and types, in the same order
    families = [(f.name, f.documentation, f.type) for f in text_string_to_metric_families(ours.decode())]
    expected = [(f.name, f.documentation, f.type) for f in text_string_to_metric_families(theirs.decode())]
    assert [f for f in families if f[0].startswith(SERIES)] == expected
    # a _created time for each label set
    ours_created = {k for k in samples(ours, created=True) if k[0].endswith("_created")}
    assert ours_created == {k for k in samples(theirs, created=True) if k[0].endswith("_created")}


def test_the_tally_grows_with_each_scrape_reading_it():
    requests = exchanges(200)
    metrics = Metrics()
    for exchange in requests[:120]:
        metrics.observe(exchange, {})
    assert samples(metrics.exposition()) == samples(reference(requests[:120]))
    for exchange in requests[120:]:
        metrics.observe(exchange, {})
    assert samples(metrics.exposition()) == samples(reference(requests))


_WORKER = """
import asyncio, sys
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from service.api.middleware.metrics import Metrics
from tests.api.test_metrics_tally import exchanges

async def main():
    metrics = Metrics()
    assert metrics.multiprocess
    requests = exchanges(int(sys.argv[1]), seed=int(sys.argv[2]))
    half = len(requests) // 2
    for turn in (requests[:half], requests[half:]):  # two turns of the loop finish them
        for exchange in turn:
            metrics.observe(exchange, {})
        await asyncio.sleep(0)  # the turn ends: its one flush runs
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # what another worker's /metrics reads, with no flush of its own
    sys.stdout.write(generate_latest(registry).decode())

asyncio.run(main())
"""


def test_workers_flush_once_a_turn_into_the_shared_files(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    run = [sys.executable, "-c", _WORKER]
    subprocess.run([*run, "150", "1"], env=env, capture_output=True, text=True, check=True)
    second = subprocess.run([*run, "250", "2"], env=env, capture_output=True, text=True, check=True)
    both = exchanges(150, seed=1) + exchanges(250, seed=2)
    seen = samples(second.stdout.encode())
    expected = samples(reference(both))
    # the multiprocess collector sums every worker's files (it writes no _created samples); a turn's
    # durations are summed before they are added, so a sum may differ in its last bits
    assert seen.keys() == expected.keys()
    for key, value in expected.items():
        if key[0].endswith("_sum"):
            assert seen[key] == pytest.approx(value, rel=1e-13)
        else:
            assert seen[key] == value, key
