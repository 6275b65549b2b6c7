"""``GET /dashboard``: the page in a real headless Chromium against a live server, and its CSP."""

import re
import shutil
import subprocess
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy.special import log_softmax

from service.app import create_app
from service.settings import Settings
from tests.live import running

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STATIC = Path(__file__).parents[2] / "service" / "api" / "static"
DASHBOARD_FILES = ("dashboard.html", "dashboard.js", "dashboard.css")


class Elements(HTMLParser):
    """Every element's attributes and text, by `data-metric`, and the monitor links."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics: dict[str, tuple[str, str]] = {}
        self.attrs_by_id: dict[str, dict[str, str]] = {}
        self.links: list[str] = []
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.attrs_by_id[a["id"]] = a
        if "data-metric" in a:
            self._open = a["data-metric"]
            self.metrics[self._open] = (a.get("data-value", ""), "")
        if tag == "a" and "data-monitor" in a:
            self.links.append(a["data-monitor"])

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            value, text = self.metrics[self._open]
            self.metrics[self._open] = (value, text + data)

    def handle_endtag(self, tag: str) -> None:
        self._open = None


def _browser() -> str:
    browser = next((path for name in BROWSERS if (path := shutil.which(name))), None)
    if browser is None:
        pytest.skip(
            f"no headless browser on PATH ({', '.join(BROWSERS)}); .ci/run installs Debian's chromium"
        )
    return browser


def _dump_dom(url: str, tmp_path: Path) -> Elements:
    result = subprocess.run(
        [
            _browser(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000",
            "--dump-dom",
            url,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    parser = Elements()
    parser.feed(result.stdout)
    return parser


def _monitor_with_data(http: Any, rng: np.random.Generator, n: int = 400, k: int = 4):
    name = f"dash-{uuid.uuid4().hex[:10]}"
    assert http.put(f"/v1/monitors/{name}", json={"n_classes": k}).status_code == 201
    logits = 2 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    stamp = time.time() - 600  # well inside the last hour, whatever the bucket alignment
    for rows in np.array_split(np.arange(n), 4):
        body = {
            "logits": logits[rows].tolist(),
            "labels": labels[rows].tolist(),
            "timestamps": [stamp] * len(rows),
        }
        response = http.post(f"/v1/monitors/{name}/observations", json=body)
        assert response.status_code == 200, response.text
    return name, logits, labels


def test_dashboard_shows_the_monitor_and_the_apis_numbers(rng, tmp_path):
    with running(create_app(Settings())) as url, httpx.Client(base_url=url) as http:
        name, logits, labels = _monitor_with_data(http, rng)
        page = _dump_dom(f"{url}/dashboard?monitor={name}&window=1h", tmp_path)
        api = http.get(f"/v1/monitors/{name}/metrics", params={"window": "1h"}).json()["points"][0]

    assert name in page.links
    assert page.attrs_by_id["monitor-name"]["data-monitor"] == name
    assert page.attrs_by_id["status"].get("class", "") != "error"
    for metric in ("cross_entropy", "ece", "accuracy", "n", "n_labelled"):
        value, text = page.metrics[metric]
        assert value == repr(api[metric]), metric  # JS String() and Python repr: shortest round-trip
        if metric.startswith("n"):
            assert int(text) == api[metric]
        else:  # the digits shown: six significant
            assert float(text) == float(f"{api[metric]:.6g}"), (metric, text, api[metric])
    # The API's numbers themselves, against an independent computation over the rows sent.
    ce = -log_softmax(logits, axis=1)[np.arange(len(labels)), labels].mean()
    assert float(page.metrics["cross_entropy"][0]) == pytest.approx(ce, rel=1e-12)
    accuracy = (logits.argmax(axis=1) == labels).mean()
    assert float(page.metrics["accuracy"][0]) == pytest.approx(accuracy, rel=1e-12)
    assert int(page.metrics["n"][0]) == len(labels)
    # The charts were drawn (a polyline each) and the reliability diagram is shown from a blob: URL.
    assert page.attrs_by_id["reliability-diagram"]["src"].startswith("blob:")
    assert "hidden" not in page.attrs_by_id["reliability-diagram"]
    assert "hidden" in page.attrs_by_id["language-model"]  # no sequences scored: no perplexity shown


def test_dashboard_shows_a_language_models_perplexity_as_the_api(rng, tmp_path):
    b, t, k = 6, 9, 13
    logits = 2 * rng.standard_normal((b, t, k))
    labels = rng.integers(0, k, size=(b, t))
    n_bytes = rng.integers(t, 4 * t, size=b)
    with running(create_app(Settings())) as url, httpx.Client(base_url=url) as http:
        name = f"dash-lm-{uuid.uuid4().hex[:10]}"
        assert http.put(f"/v1/monitors/{name}", json={"n_classes": 2}).status_code == 201
        for rows, ago in ((slice(0, 2), 1500), (slice(2, b), 300)):  # two minutes of the last hour
            body = {
                "logits": logits[rows].tolist(),
                "labels": labels[rows].tolist(),
                "bytes": n_bytes[rows].tolist(),
                "timestamps": [time.time() - ago] * len(n_bytes[rows]),
            }
            answer = http.post(f"/v1/monitors/{name}/sequences", json=body)
            assert answer.status_code == 200, answer.text
        html = subprocess.run(
            [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
             "--virtual-time-budget=5000", "--dump-dom", f"{url}/dashboard?monitor={name}&window=1h"],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
        api = http.get(f"/v1/monitors/{name}/perplexity", params={"window": "1h"}).json()["total"]
    page = Elements()
    page.feed(html)
    assert "hidden" not in page.attrs_by_id["language-model"]
    for metric in ("token_perplexity", "nll_per_token", "bits_per_byte", "n_sequences", "n_tokens"):
        value, text = page.metrics[metric]
        assert value == repr(api[metric]), metric
        assert float(text) == float(f"{api[metric]:.6g}"), (metric, text, api[metric])
    # The API's numbers against scipy: -log_softmax at the labels, every position scored.
    nll = -log_softmax(logits, axis=-1)[np.arange(b)[:, None], np.arange(t), labels]
    assert float(page.metrics["token_perplexity"][0]) == pytest.approx(np.exp(nll.mean()), rel=1e-12)
    bits = nll.sum() / n_bytes.sum() / np.log(2)
    assert float(page.metrics["bits_per_byte"][0]) == pytest.approx(bits, rel=1e-12)
    assert int(page.metrics["n_tokens"][0]) == b * t
    # The series: one dot per minute that has sequences (24 minutes apart: two runs of one point).
    svg = re.search(r'<svg id="chart-token_perplexity".*?</svg>', html, re.S)
    assert svg is not None and svg.group(0).count("<circle") == 2


def test_dashboard_draws_one_polyline_per_chart(rng, tmp_path):
    with running(create_app(Settings())) as url, httpx.Client(base_url=url) as http:
        name, _, _ = _monitor_with_data(http, rng, n=40)
        html = subprocess.run(
            [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
             "--virtual-time-budget=5000", "--dump-dom", f"{url}/dashboard?monitor={name}"],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    for chart in ("cross_entropy", "ece", "accuracy", "n"):
        svg = re.search(rf'<svg id="chart-{chart}".*?</svg>', html, re.S)
        assert svg is not None and svg.group(0).count("<polyline") == 1, chart
        # All rows in one bucket: one point with labelled rows; the count is 0 or more at every point.
        assert svg.group(0).count("<circle") == (1 if chart != "n" else svg.group(0).count(",")), chart


def test_dashboard_with_api_keys_serves_the_page_and_asks_for_a_key(tmp_path):
    app = create_app(Settings(api_keys="sekrit-key"))
    with running(app) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v1/monitors").status_code == 401
        assert http.get("/v1/monitors", headers={"X-API-Key": "sekrit-key"}).status_code == 200
        for path in ("/dashboard", "/dashboard/dashboard.js", "/dashboard/dashboard.css"):
            assert http.get(path).status_code == 200, path
        page = _dump_dom(f"{url}/dashboard", tmp_path)
    assert "hidden" not in page.attrs_by_id["key-form"]
    assert page.attrs_by_id["status"]["class"] == "error"


def test_dashboard_loads_nothing_from_elsewhere(client):
    page = client.get("/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for response in (page, client.get("/dashboard/dashboard.js"), client.get("/dashboard/dashboard.css")):
        csp = response.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["default-src"] == "'self'" and directives["script-src"] == "'self'"
        assert "unsafe" not in csp and "http" not in csp
    assert client.get("/dashboard/dashboard.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/dashboard/other.js").status_code == 404
    assert client.get("/dashboard/dashboard.html").status_code == 404
    # No script inline in the page, and no URL to another host anywhere in the files.
    assert re.search(r"<script(?![^>]*\bsrc=)", page.text) is None
    assert " on" not in re.sub(r"\s+", " ", "".join(re.findall(r"<[^>]+>", page.text))).replace(" one", "")
    for name in DASHBOARD_FILES:
        text = (STATIC / name).read_text()
        urls = re.findall(r"(?:https?:)?//[\w.-]+", text)
        assert urls == ["http://www.w3.org"] * len(urls), (name, urls)  # the SVG namespace, never fetched


def test_metrics_without_step_are_one_point_over_the_window(client, rng):
    # The dashboard's current numbers: one point over exactly the aligned window (it was cut in two
    # on the grid of its own width, reaching back up to an hour further).
    name, _, labels = _monitor_with_data(client, rng, n=20)
    answer = client.get(f"/v1/monitors/{name}/metrics", params={"window": "1h"}).json()
    (point,) = answer["points"]
    assert (point["start"], point["end"]) == (answer["start"], answer["end"])
    assert answer["end"] % 60 == 0 and 3600 <= answer["end"] - answer["start"] <= 3660
    assert answer["end"] - 60 < time.time() <= answer["end"] and point["n"] == len(labels)
