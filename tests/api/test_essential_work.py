"""The essential-work server (``benchmarks.essential_app``), the yardstick of Xent's own layers.

``benchmarks.http`` measures Xent's layers as Xent's CPU per request minus this server's on the
same body: that holds only while it answers every measured route exactly as Xent does, and its
monitor write stores what Xent's stores. Checked here in process (the benchmark checks the answers
again before loading the servers).
"""

import numpy as np
import pytest
from starlette.testclient import TestClient

from benchmarks import essential_app
from benchmarks.http import MONITOR_INGEST, route_bodies
from tests.api.monitoring import monitor_client


@pytest.fixture
def essential(tmp_path, monkeypatch):
    monkeypatch.setenv("XENT_DATA_DIR", str(tmp_path / "essential"))
    with TestClient(essential_app.app) as client:
        yield client


@pytest.mark.parametrize("path", list(route_bodies()))
def test_every_measured_route_answers_as_xent_does(tmp_path, essential, path):
    body = route_bodies()[path]
    with monitor_client(tmp_path / "xent") as xent:
        if path == MONITOR_INGEST:
            for client in (xent, essential):
                assert client.put("/v1/monitors/bench", json={"n_classes": 10}).status_code in (200, 201)
        ours = essential.post(path, content=body)
        theirs = xent.post(path, content=body)
    assert ours.status_code == theirs.status_code == 200, (ours.text, theirs.text)
    assert ours.json() == theirs.json()


def test_the_essential_monitor_write_stores_what_xent_stores(tmp_path, essential, rng):
    """Its writes, read back by Xent from its data directory, are Xent's own writes' statistics."""
    batches = [(rng.standard_normal((32, 10)), rng.integers(0, 10, 32)) for _ in range(5)]
    assert essential.put("/v1/monitors/bench").status_code == 200
    for logits, labels in batches:
        answer = essential.post(MONITOR_INGEST, json={"logits": logits.tolist(), "labels": labels.tolist()})
        assert answer.status_code == 200, answer.text
    essential_app.MONITOR.settle_all()
    with monitor_client(tmp_path / "xent") as xent:
        xent.put("/v1/monitors/bench", json={"n_classes": 10})
        for logits, labels in batches:
            xent.post(MONITOR_INGEST, json={"logits": logits.tolist(), "labels": labels.tolist()})
        theirs = xent.get("/v1/monitors/bench").json()["totals"]
    with monitor_client(tmp_path / "essential") as reader:  # the essential server's store, read by Xent
        ours = reader.get("/v1/monitors/bench").json()["totals"]
    assert ours["n_labelled"] == theirs["n_labelled"] == 5 * 32
    assert ours["n"] == theirs["n"] + 1  # the essential server's own first row (its default segment)
    nll = np.concatenate(
        [-(logits[np.arange(32), labels] - np.log(np.exp(logits).sum(axis=1))) for logits, labels in batches]
    )
    assert ours["cross_entropy"] == pytest.approx(nll.mean(), rel=1e-12)
    assert ours["cross_entropy"] == pytest.approx(theirs["cross_entropy"], rel=1e-12)
