"""Client methods of /v1/calibration and /v1/reliability-diagram against the live app."""

import asyncio
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from service.client import AsyncXentClient, XentAPIError, XentClient


def reference_ece(confidence, correct, n_bins):
    """Guo et al.'s _ECELoss: bins (lo, hi], |accuracy - confidence| weighted by bin mass."""
    ece = 0.0
    for lo, hi in zip(np.arange(n_bins) / n_bins, np.arange(1, n_bins + 1) / n_bins, strict=True):
        in_bin = (confidence > lo) & (confidence <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


@pytest.fixture(params=["json", "binary"])
def xent(request, live_url):
    with XentClient(live_url, payload=request.param) as client:
        yield client


def test_calibration_guo_preset_matches_the_reference(xent, rng):
    probs = rng.dirichlet(np.ones(4), size=3000)
    labels = rng.integers(0, 4, size=3000)
    result = xent.calibration(probs=probs, labels=labels, preset="guo", n_bins=15)
    expected = reference_ece(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float), 15)
    assert result.metrics.ece == pytest.approx(expected, rel=1e-12)
    assert result.convention.preset == "guo"
    assert result.n == 3000


def test_calibration_options_as_arrays_go_as_lists(xent, rng):
    probs = rng.dirichlet(np.ones(3), size=200)
    labels = rng.integers(0, 3, size=200)
    edges = np.array([0.0, 0.5, 0.75, 1.0])
    result = xent.calibration(probs=probs, labels=labels, edges=edges)
    assert result.convention.n_bins == 3


def test_calibration_bad_option_is_a_problem(xent):
    with pytest.raises(XentAPIError) as caught:
        xent.calibration(probs=[[0.5, 0.5]], labels=[0], n_bins=0)
    assert caught.value.status == 422
    assert caught.value.pointer.endswith("n_bins")


def test_reliability_diagram_is_an_svg_document(xent, rng):
    probs = rng.dirichlet(np.ones(3), size=500)
    labels = rng.integers(0, 3, size=500)
    svg = xent.reliability_diagram(probs=probs, labels=labels, n_bins=10)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")


def test_async_calibration(live_url, rng):
    probs = rng.dirichlet(np.ones(3), size=100)
    labels = rng.integers(0, 3, size=100)

    async def run():
        async with AsyncXentClient(live_url) as client:
            return await asyncio.gather(
                client.calibration(probs=probs, labels=labels, preset="guo"),
                client.reliability_diagram(probs=probs, labels=labels),
            )

    result, svg = asyncio.run(run())
    expected = reference_ece(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(float), 15)
    assert result.metrics.ece == pytest.approx(expected, rel=1e-12)
    assert svg.lstrip().startswith("<")
