"""Issue 21, /metrics rough edges: process and Python collectors, FastAPI pages labelled, probes unlogged."""

import gc
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads /proc")
def test_process_and_python_metrics_describe_this_process(client):
    collections = [generation["collections"] for generation in gc.get_stats()]
    rss = _rss_bytes()
    table = _samples(client.get("/metrics").text)
    assert 0.5 * rss < table[("process_resident_memory_bytes", frozenset())] < 2 * rss
    assert table[("process_open_fds", frozenset())] == pytest.approx(len(os.listdir("/proc/self/fd")), abs=8)
    for generation, before in enumerate(collections):
        assert table[("python_gc_collections_total", frozenset({("generation", str(generation))}))] >= before
    info = [key for key in table if key[0] == "python_info"]
    assert dict(info[0][1])["version"] == ".".join(map(str, sys.version_info[:3]))


def test_fastapi_pages_are_labelled_as_their_routes(client):
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
        assert client.get(path).status_code == 200
    assert client.get("/nowhere").status_code == 404
    table = _samples(client.get("/metrics").text)
    for path in ("/docs", "/openapi.json", "/redoc", "/docs/oauth2-redirect"):
        labels = frozenset({("route", path), ("method", "GET"), ("status", "200")})
        assert table[("xent_http_requests_total", labels)] == 1, path
    unmatched = frozenset({("route", "unmatched"), ("method", "GET"), ("status", "404")})
    assert table[("xent_http_requests_total", unmatched)] == 1  # the one unknown path only


def _logged_paths(settings: Settings, caplog) -> list[str]:
    caplog.set_level(logging.INFO, logger="xent.access")
    with TestClient(create_app(settings)) as client:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert client.get(path).status_code == 200
        client.post("/v1/cross-entropy", json={"logits": [[1.0, 0.0]], "labels": [0]})
        client.get("/metrics/nope")
    return [json.loads(r.getMessage())["path"] for r in caplog.records if r.name == "xent.access"]


def test_probes_are_left_out_of_the_access_log_by_default(caplog):
    assert _logged_paths(Settings(), caplog) == ["/v1/cross-entropy", "/metrics/nope"]


def test_log_probes_brings_them_back(caplog, monkeypatch):
    monkeypatch.setenv("XENT_LOG_PROBES", "true")
    paths = _logged_paths(Settings(), caplog)
    assert paths == ["/healthz", "/readyz", "/metrics", "/v1/cross-entropy", "/metrics/nope"]


def test_a_failing_probe_is_logged(caplog):
    caplog.set_level(logging.INFO, logger="xent.access")
    with TestClient(create_app(Settings())) as client:
        client.app.state.gate.draining = True
        assert client.get("/readyz").status_code == 503
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "xent.access"]
    assert [(line["path"], line["status"]) for line in lines] == [("/readyz", 503)]


_WORKER = """
import os, sys, time
from service.api.middleware.metrics import Metrics
metrics = Metrics()
metrics.worker_stats.refresh()
print(os.getpid(), flush=True)
if sys.argv[1] == "stay":
    time.sleep(60)
"""


def test_in_multiprocess_mode_each_live_worker_reports_its_own_process_metrics(tmp_path):
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    gone = subprocess.run(
        [sys.executable, "-c", _WORKER, "exit"], env=env, capture_output=True, text=True, check=True
    )
    gone_pid = gone.stdout.strip()
    staying = subprocess.Popen(
        [sys.executable, "-c", _WORKER, "stay"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert staying.stdout is not None
        live_pid = staying.stdout.readline().strip()
        scrape = "from service.api.middleware.metrics import Metrics; import sys, os; " + (
            "sys.stdout.write(str(os.getpid()) + '\\n' + Metrics().exposition().decode())"
        )
        out = subprocess.run(
            [sys.executable, "-c", scrape], env=env, capture_output=True, text=True, check=True
        )
    finally:
        staying.kill()
        staying.wait()
        if staying.stdout is not None:
            staying.stdout.close()
    own_pid, text = out.stdout.split("\n", 1)
    table = _samples(text)
    rss = {
        dict(labels)["pid"]: v
        for (name, labels), v in table.items()
        if name == "process_resident_memory_bytes"
    }
    assert set(rss) == {live_pid, own_pid}  # the worker that exited was dropped when this one started
    assert gone_pid not in rss and all(v > 10e6 for v in rss.values())
    gc_by_pid = {
        dict(labels)["pid"]
        for (name, labels), _ in table.items()
        if name == "python_gc_collections_total" and dict(labels)["generation"] == "0"
    }
    assert gc_by_pid == {live_pid, own_pid}
    assert any(name == "python_info" for name, _ in table)
