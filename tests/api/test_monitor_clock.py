"""The server's clock for monitors is :func:`service.clock.now`, read at every use: setting it moves
the default prediction time, the default query window and the retention bound together.

The contract test relies on it (tests/contract/conftest.py fixes it), so that a monitor's state
follows from the requests alone; a site reading ``time.time()`` directly would break that, and this.
"""

import numpy as np
import pytest

from service import clock

from .monitoring import monitor_client, observe

THEN = 1_700_000_000.0  # 2023-11-14T22:13:20Z: years before the real clock


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(clock, "now", lambda: THEN)
    with monitor_client(tmp_path, compaction_interval_s=86_400) as test_client:
        yield test_client


def test_observations_without_times_land_at_the_set_clock(client, rng):
    assert client.put("/v1/monitors/m", json={"n_classes": 3, "bucket_s": 60}).status_code in (200, 201)
    logits = rng.standard_normal((5, 3))
    labels = rng.integers(0, 3, 5)
    assert observe(client, "m", {"logits": logits, "labels": labels}).status_code == 200
    # the default window ends at the set clock: the rows are in its last hour, not in the real one's
    result = client.get("/v1/monitors/m/metrics", params={"window": "1h", "step": "1h"})
    assert result.status_code == 200, result.text
    points = result.json()["points"]
    assert sum(p["n"] for p in points) == 5
    bucket = THEN // 60 * 60
    assert points[-1]["start"] <= bucket < points[-1]["start"] + 3600
    # a time at the real clock is far in the set clock's future: refused, as any time past the limit
    future = observe(client, "m", {"logits": logits, "labels": labels, "timestamps": np.full(5, 1.9e9)})
    assert future.status_code == 422 and "timestamps" in future.json()["detail"], future.text
