"""Issue 21: the reliability diagram as a PNG (Accept: image/png), rasterised by resvg (the `png` extra)."""

import io
import sys
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.api.monitoring import monitor_client, observe
from tests.api.test_reliability_diagram import SVG_NS, diagram_body
from tests.conftest import assert_problem

pytest.importorskip("resvg_py", reason="PNG diagrams need the png extra (resvg-py)")
Image = pytest.importorskip("PIL.Image")


def assert_png_draws_the_svg(png, svg: str) -> None:
    """`png` is a 600×600 PNG (decoded by Pillow) painted inside every bar of `svg`, white elsewhere."""
    assert png.status_code == 200, png.text
    assert png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    image = Image.open(io.BytesIO(png.content)).convert("RGB")
    assert image.size == (600, 600)
    pixels = np.asarray(image, dtype=np.int32)
    assert pixels.std() > 10  # not blank
    white = np.array([255, 255, 255])
    assert (pixels[2, 2] == white).all()  # the white background in a corner
    # Inside every bar of the SVG, the PNG is painted (not the background).
    bars = [r for r in ET.fromstring(svg).findall(f"{SVG_NS}rect") if r.attrib["class"] == "bar"]
    assert bars
    for bar in bars:
        x, y, w, h = (float(bar.attrib[k]) for k in ("x", "y", "width", "height"))
        if w >= 4 and h >= 4:
            centre = pixels[int(y + h / 2), int(x + w / 2)]
            assert not (centre == white).all(), (x, y, w, h)


def test_png_is_the_svg_rasterised_600_square(client, rng):
    body = diagram_body(rng, n_bins=10)
    svg = client.post("/v1/reliability-diagram", json=body)
    png = client.post("/v1/reliability-diagram", json=body, headers={"Accept": "image/png"})
    assert_png_draws_the_svg(png, svg.text)


def test_a_monitor_window_diagram_as_png(tmp_path, rng):
    logits, labels = rng.standard_normal((200, 3)) * 2, rng.integers(0, 3, size=200)
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/p", json={"n_classes": 3})
        observe(client, "p", {"logits": logits, "labels": labels})
        url, params = "/v1/monitors/p/reliability-diagram", {"n_bins": 10}
        svg = client.get(url, params=params)
        assert svg.headers["content-type"].startswith("image/svg+xml")
        png = client.get(url, params=params, headers={"Accept": "image/svg+xml;q=0.5, image/png"})
        assert_png_draws_the_svg(png, svg.text)
        # The answer follows the preference: SVG unless PNG is preferred.
        for accept in ("image/svg+xml, image/png", "*/*"):
            other = client.get(url, params=params, headers={"Accept": accept})
            assert other.headers["content-type"].startswith("image/svg+xml"), accept


def test_a_monitor_png_without_the_extra_is_a_406_before_the_store_is_read(tmp_path, monkeypatch):
    with monitor_client(tmp_path) as client:
        monkeypatch.setitem(sys.modules, "resvg_py", None)
        # even for a monitor that does not exist: the 406 comes first
        response = client.get("/v1/monitors/absent/reliability-diagram", headers={"Accept": "image/png"})
        problem = assert_problem(response, 406)
        assert "xent-service[png]" in problem["detail"]


@pytest.mark.parametrize(
    "accept",
    ["image/svg+xml", "*/*", "image/png;q=0.5, image/svg+xml", "image/svg+xml, image/png", None],
)
def test_svg_stays_the_answer_unless_png_is_preferred(client, rng, accept):
    headers = {} if accept is None else {"Accept": accept}
    response = client.post("/v1/reliability-diagram", json=diagram_body(rng, n=50), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("image/svg+xml")


def test_png_without_the_extra_is_a_406_saying_how_to_get_it(client, rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "resvg_py", None)  # as if not installed: importing it fails
    response = client.post(
        "/v1/reliability-diagram", json=diagram_body(rng, n=50), headers={"Accept": "image/png"}
    )
    problem = assert_problem(response, 406)
    assert "xent-service[png]" in problem["detail"]
