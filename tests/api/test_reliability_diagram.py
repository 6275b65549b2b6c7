import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.conftest import assert_problem

SVG_NS = "{http://www.w3.org/2000/svg}"
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def diagram_body(rng, n=2000, k=10, **options):
    logits = 3 * rng.standard_normal((n, k))
    labels = rng.integers(0, k, size=n)
    return {"logits": logits.tolist(), "labels": labels.tolist(), **options}


def test_diagram_is_valid_svg_with_one_bar_per_filled_bin(client, rng):
    body = diagram_body(rng, n_bins=10)
    response = client.post("/v1/reliability-diagram", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(response.text)
    assert root.tag == f"{SVG_NS}svg"
    assert root.attrib["viewBox"] == "0 0 600 600"
    calib = client.post("/v1/calibration", json={**body, "metrics": ["reliability", "ece"]}).json()
    filled = sum(1 for c in calib["reliability"][0]["count"] if c > 0)
    rects = root.findall(f"{SVG_NS}rect")
    assert sum(r.attrib["class"] == "bar" for r in rects) == filled
    assert sum(r.attrib["class"] in ("over", "under") for r in rects) == filled
    assert sum(r.attrib["class"] == "hist" for r in rects) == filled
    text = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    assert f"ece {calib['metrics']['ece']:.4f}" in text
    assert "closed right" in text and "B = 10" in text
    assert "prefers-color-scheme: dark" in root.find(f"{SVG_NS}style").text


def test_diagram_states_the_preset(client):
    body = {"probs": [0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.3], "labels": [0, 1, 0, 1, 0, 0, 1], "n_bins": 5}
    response = client.post("/v1/reliability-diagram", json={**body, "preset": "torchmetrics"})
    root = ET.fromstring(response.text)
    text = " ".join(t.text or "" for t in root.iter(f"{SVG_NS}text"))
    assert "preset torchmetrics" in text and "ece 0.4286" in text and "positive_class" in text


def test_diagram_bad_input_is_problem(client, rng):
    body = diagram_body(rng, n=20, k=3, target="classwise")
    assert_problem(client.post("/v1/reliability-diagram", json=body), 422, "#/target", "for a diagram")
    body = diagram_body(rng, n=20, k=3, n_bins=0)
    assert_problem(client.post("/v1/reliability-diagram", json=body), 422, "#/n_bins")
    assert_problem(client.post("/v1/reliability-diagram", json={"labels": [0]}), 422, "#/logits")


def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _render(browser: str, svg_path, png_path, *flags: str) -> np.ndarray:
    from PIL import Image

    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=600,600",
            *flags,
            f"--screenshot={png_path}",
            svg_path.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return np.asarray(Image.open(png_path).convert("RGB"))


def test_diagram_renders_in_a_headless_browser(client, rng, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip(
            f"no headless browser on PATH ({', '.join(BROWSERS)}); .ci/run installs Debian's chromium"
        )
    svg_path = tmp_path / "diagram.svg"
    svg_path.write_text(client.post("/v1/reliability-diagram", json=diagram_body(rng, n_bins=10)).text)
    light = _render(browser, svg_path, tmp_path / "light.png")
    assert light.shape == (600, 600, 3)
    assert light[5, 5].min() > 240  # white background
    blue = (light[..., 2] > 180) & (light[..., 0] < 120)  # accuracy bars
    red = (light[..., 0] > 200) & (light[..., 1] < 200) & (light[..., 2] < 200)  # over-confidence gaps
    assert blue.sum() > 2000 and red.sum() > 500
    # --force-dark-mode makes prefers-color-scheme: dark match; the SVG's own dark styles apply.
    dark = _render(browser, svg_path, tmp_path / "dark.png", "--force-dark-mode")
    assert dark[5, 5].max() < 60  # the dark theme's background
