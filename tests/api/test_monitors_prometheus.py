"""The PromQL of docs/monitors.md, run by a real Prometheus scraping a live server, gives the API's CE, ECE
and a language model's perplexity.

A 2-worker ``python -m service serve`` (multiprocess metrics) is scraped every second by Debian's
``prometheus`` (``.ci/run`` installs it); labelled rows arrive at ingestion, by late labels and
as KServe logger events, and scored sequences by ``…/sequences``, spread over both workers.
Skipped only without a prometheus binary.
"""

import json
import math
import re
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.serving.server import ROOT, free_port

from .test_monitors_server import Served

PROMETHEUS = shutil.which("prometheus") or next(
    (p for p in ("/usr/bin/prometheus", "/usr/local/bin/prometheus") if Path(p).exists()), None
)
pytestmark = pytest.mark.skipif(
    PROMETHEUS is None, reason="no prometheus binary (Debian: apt-get install prometheus; .ci/run does)"
)
MONITOR = "promql-m"
K = 4
#: The language-model PromQL of the docs, by the perplexity total's key it equals.
LM = {
    "lm_nll_per_token": "nll_per_token",
    "lm_token_perplexity": "token_perplexity",
    "lm_bits_per_byte": "bits_per_byte",
}


def documented_promql() -> dict[str, str]:
    """The ```promql blocks of docs/monitors.md, by the name in their first comment line."""
    text = (ROOT / "docs" / "monitors.md").read_text()
    blocks = re.findall(r"```promql\n# (\w+)[^\n]*\n(.*?)```", text, flags=re.S)
    assert {name for name, _ in blocks} >= {
        "ce",
        "ece",
        "accuracy",
        "brier",
        "count",
        "mean_confidence",
    } | set(LM)
    return dict(blocks)


class Prometheus:
    """``prometheus`` scraping `target` every second, with its TSDB in `directory`."""

    def __init__(self, directory: Path, target: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = directory / "prometheus.yml"
        config.write_text(
            json.dumps(  # YAML is a superset of JSON
                {
                    "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                    "scrape_configs": [{"job_name": "xent", "static_configs": [{"targets": [target]}]}],
                }
            )
        )
        self.process = subprocess.Popen(
            [
                str(PROMETHEUS),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def scalar(self, promql: str) -> float:
        result = self.query(promql)
        assert len(result) == 1, (promql, result)
        return float(result[0]["value"][1])

    def wait_for(self, promql: str, value: float) -> None:
        """Until the newest scrape gives `value`, then two more scrapes."""
        deadline = time.monotonic() + 60
        while not ((result := self.query(promql)) and float(result[0]["value"][1]) == value):
            assert time.monotonic() < deadline, f"{promql} never reached {value}: {result}"
            time.sleep(0.5)
        time.sleep(2.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _post(url: str, path: str, **kwargs) -> dict:
    answer = httpx.post(f"{url}{path}", timeout=30, **kwargs)  # a new connection: any worker
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_documented_promql_gives_the_apis_ce_and_ece(tmp_path, rng):
    queries = {
        name: re.sub(r'monitor="(fraud|chat)"', f'monitor="{MONITOR}"', q)
        for name, q in documented_promql().items()
    }
    port = free_port()
    server = Served(tmp_path / "data", port)
    prometheus = Prometheus(tmp_path, f"127.0.0.1:{port}")
    try:
        assert (
            httpx.put(
                f"{server.url}/v1/monitors/{MONITOR}", json={"n_classes": K, "output_kind": "logits"}
            ).status_code
            == 201
        )
        labelled = f'sum(xent_monitor_labelled_total{{monitor="{MONITOR}"}})'
        prometheus.wait_for(labelled, 0)  # every series seen at 0 before the first row
        lm_tokens = f'sum(xent_monitor_lm_tokens_total{{monitor="{MONITOR}"}})'
        prometheus.wait_for(lm_tokens, 0)
        logprobs, n_bytes = [], 0
        for _ in range(6):  # chat completions, each token with its bytes
            docs = []
            for _ in range(int(rng.integers(1, 5))):
                lp = rng.uniform(-6.0, -0.05, size=int(rng.integers(1, 30)))
                sizes = rng.integers(1, 8, size=lp.size)
                logprobs += lp.tolist()
                n_bytes += int(sizes.sum())
                content = [
                    {"token": "w", "logprob": float(v), "bytes": [119] * int(b), "top_logprobs": []}
                    for v, b in zip(lp, sizes, strict=True)
                ]
                docs.append({"choices": [{"index": 0, "logprobs": {"content": content}}]})
            _post(server.url, f"/v1/monitors/{MONITOR}/sequences", json={"responses": docs})
        n, late = 0, {}
        for j in range(24):
            rows = int(rng.integers(1, 40))
            logits = 2.5 * rng.standard_normal((rows, K))
            labels = rng.integers(0, K, size=rows)
            if j % 3 == 0:  # labelled at ingestion
                body = {"logits": logits.tolist(), "labels": labels.tolist()}
            else:  # labels follow by id
                ids = [f"b{j}-{i}" for i in range(rows)]
                late.update(zip(ids, labels.tolist(), strict=True))
                body = {"logits": logits.tolist(), "ids": ids}
            _post(server.url, f"/v1/monitors/{MONITOR}/observations", json=body)
            n += rows
        probs = rng.dirichlet(np.ones(K), size=6)
        headers = {
            "content-type": "application/json",
            "ce-specversion": "1.0",
            "ce-id": "kserve-1",
            "ce-source": "http://localhost:9081/",
            "ce-type": "org.kubeflow.serving.inference.response",
        }
        event = _post(
            server.url,
            f"/v1/monitors/{MONITOR}/events",
            content=json.dumps({"predictions": np.log(probs).tolist()}).encode(),
            headers=headers,
        )
        assert event["n"] == 6
        late.update(zip(event["ids"], rng.integers(0, K, size=6).tolist(), strict=True))
        n += 6
        items = list(late.items())
        for start in range(0, len(items), 50):
            chunk = items[start : start + 50]
            joined = _post(
                server.url,
                f"/v1/monitors/{MONITOR}/labels",
                json={"ids": [i for i, _ in chunk], "labels": [y for _, y in chunk]},
            )
            assert joined["joined"] == len(chunk)
        prometheus.wait_for(labelled, n)
        prometheus.wait_for(lm_tokens, len(logprobs))
        perplexity = httpx.get(f"{server.url}/v1/monitors/{MONITOR}/perplexity", params={"window": "1h"})
        lm_total = perplexity.json()["total"]
        # the API's perplexity itself, against the logprobs sent
        nll = -math.fsum(logprobs)
        assert lm_total["token_perplexity"] == pytest.approx(math.exp(nll / len(logprobs)), rel=1e-12)
        assert lm_total["bits_per_byte"] == pytest.approx(nll / n_bytes / math.log(2), rel=1e-12)
        api = httpx.get(
            f"{server.url}/v1/monitors/{MONITOR}/metrics", params={"window": "1h", "step": "1w", "n_bins": 10}
        ).json()
        points = [p for p in api["points"] if p["n"]]
        assert len(points) == 1 and points[0]["n_labelled"] == n, points
        point = points[0]
        assert api["convention"]["n_bins"] == 10 and api["convention"]["closed"] == "right"
        ranged = {name: prometheus.scalar(q.replace("[1h]", "[10m]")) for name, q in queries.items()}
        # increase() extrapolates a count to the range's ends (Prometheus's semantics); ratios cancel it
        assert ranged["count"] >= n
        for name, key in (
            ("ce", "cross_entropy"),
            ("ece", "ece"),
            ("accuracy", "accuracy"),
            ("brier", "brier"),
            ("mean_confidence", "mean_confidence"),
        ):
            assert ranged[name] == pytest.approx(point[key], rel=1e-10), name
        for name, key in LM.items():
            assert ranged[name] == pytest.approx(lm_total[key], rel=1e-10), name
        # the compose stack's Grafana panels run the same expressions with $monitor and $window
        dashboard = json.loads((ROOT / "deploy/grafana/dashboards/xent.json").read_text())
        panels = {p["title"]: p for p in dashboard["panels"]}
        for title, key in (
            ("Monitor cross-entropy", "cross_entropy"),
            ("Monitor ECE (10 bins)", "ece"),
            ("Monitor accuracy", "accuracy"),
        ):
            expr = panels[title]["targets"][0]["expr"]
            expr = expr.replace("$monitor", MONITOR).replace("$window", "10m")
            assert prometheus.scalar(expr) == pytest.approx(point[key], rel=1e-10), title
        for title, key in (
            ("Monitor token perplexity", "token_perplexity"),
            ("Monitor bits per byte", "bits_per_byte"),
        ):
            expr = panels[title]["targets"][0]["expr"]
            expr = expr.replace("$monitor", MONITOR).replace("$window", "10m")
            assert prometheus.scalar(expr) == pytest.approx(lm_total[key], rel=1e-10), title
        # the same expressions on the counters themselves (totals since the server started)
        totals = {
            name: prometheus.scalar(re.sub(r"increase\((.*?)\[1h\]\)", r"\1", q))
            for name, q in queries.items()
        }
        assert totals["ce"] == pytest.approx(point["cross_entropy"], rel=1e-10)
        assert totals["ece"] == pytest.approx(point["ece"], rel=1e-10)
        assert totals["count"] == n
        for name, key in LM.items():
            assert totals[name] == pytest.approx(lm_total[key], rel=1e-10), name
    finally:
        prometheus.stop()
        server.stop()
