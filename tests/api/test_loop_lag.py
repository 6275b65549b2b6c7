import asyncio
import time

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.api.middleware.loop_lag import watch_loop_lag
from service.app import create_app
from service.settings import Settings


def test_a_blocked_loop_is_measured_late_by_its_blocking_time():
    lags: list[float] = []

    async def main() -> None:
        monitor = asyncio.ensure_future(watch_loop_lag(lags.append, interval=0.01))
        await asyncio.sleep(0.05)
        time.sleep(0.15)  # CPU-bound work on the loop: nothing else runs meanwhile
        await asyncio.sleep(0.05)
        monitor.cancel()

    asyncio.run(main())
    assert len(lags) >= 5 and min(lags) >= 0.0
    assert max(lags) >= 0.14 - 0.01  # woken at the end of the block, at most one interval after it was due


def test_the_app_exports_the_lag_of_its_loop():
    app = create_app(Settings())

    @app.get("/block-the-loop")
    async def block() -> dict[str, bool]:
        time.sleep(0.2)
        return {"blocked": True}

    with TestClient(app) as client:
        time.sleep(0.1)  # a few checks at rest
        assert client.get("/block-the-loop").status_code == 200
        time.sleep(0.1)
        text = client.get("/metrics").text
    samples = {
        (sample.name, sample.labels.get("le")): sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "xent_event_loop_lag_seconds"
        for sample in family.samples
    }
    count = samples[("xent_event_loop_lag_seconds_count", None)]
    assert count >= 5
    assert samples[("xent_event_loop_lag_seconds_bucket", "0.1")] < count  # the 0.2 s block was seen
