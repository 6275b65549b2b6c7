"""Issue 21: /docs and /redoc render in headless Chromium from the service's own assets, under a strict CSP.

Chromium is driven over the DevTools protocol: every request the page makes is recorded, and the page
must list the document's operations with no request leaving the server and no CSP violation.
"""

import itertools
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import connect

from service.app import create_app
from service.settings import Settings
from tests.live import running

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
#: Elements each page draws per operation.
OPERATIONS = {
    "/docs": "document.querySelectorAll('.opblock').length",
    "/redoc": "new Set(Array.from(document.querySelectorAll('[data-section-id^=\"operation/\"]'), "
    "e => e.dataset.sectionId)).size",
}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with running(create_app(Settings())) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[str]:
    """The DevTools websocket of a fresh headless Chromium page."""
    path = next((p for name in BROWSERS if (p := shutil.which(name))), None)
    if path is None:
        pytest.skip(
            f"no headless browser on PATH ({', '.join(BROWSERS)}); .ci/run installs Debian's chromium"
        )
    profile = tmp_path_factory.mktemp("chromium")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--no-first-run", f"--user-data-dir={profile}"]
    process = subprocess.Popen(
        [path, *flags, "--remote-debugging-port=0", "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = _devtools_port(profile / "DevToolsActivePort")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            pages = [t for t in json.load(response) if t["type"] == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        process.terminate()
        process.wait(timeout=20)


def _devtools_port(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline, "Chromium did not open its DevTools port within 30 s"
        time.sleep(0.1)
    return int(path.read_text().splitlines()[0])


class Page:
    """A DevTools session: commands answered by id, events recorded as they come."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def send(self, method: str, **params) -> dict:
        call = next(self.ids)
        self.socket.send(json.dumps({"id": call, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=30))
            if message.get("id") == call:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def evaluate(self, expression: str):
        return self.send("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")


@pytest.mark.parametrize("page_path", list(OPERATIONS))
def test_docs_page_renders_every_operation_from_the_server_alone(server, browser, page_path):
    expected = sum(
        len(item)
        for item in json.loads(urllib.request.urlopen(f"{server}/openapi.json").read())["paths"].values()
    )
    with connect(browser, max_size=None) as socket:
        page = Page(socket)
        for domain in ("Network", "Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        page.send("Page.navigate", url=server + page_path)
        deadline, drawn = time.monotonic() + 60, 0
        while drawn < expected and time.monotonic() < deadline:
            time.sleep(0.25)
            drawn = page.evaluate(OPERATIONS[page_path]) or 0
        time.sleep(0.5)  # anything the page fetches after drawing
        page.evaluate("1")  # drain the events that came meanwhile
    assert drawn == expected, f"{page_path} drew {drawn} of {expected} operations"
    urls = [
        e["params"]["request"]["url"] for e in page.events if e.get("method") == "Network.requestWillBeSent"
    ]
    assert any(url.endswith("/openapi.json") for url in urls)
    outside = [url for url in urls if not url.startswith((server, "data:", "blob:"))]
    assert not outside, f"requests outside the server: {outside}"
    logs = [e["params"]["entry"]["text"] for e in page.events if e.get("method") == "Log.entryAdded"]
    violations = [text for text in logs if "Content Security Policy" in text]
    assert not violations, violations
    failed = [e["params"] for e in page.events if e.get("method") == "Network.loadingFailed"]
    assert not failed, failed


def test_docs_pages_send_a_strict_csp(client):
    for path in OPERATIONS:
        policy = client.get(path).headers["content-security-policy"]
        assert "default-src 'none'" in policy and "script-src 'self'" in policy
        assert "unsafe-eval" not in policy and "http" not in policy
