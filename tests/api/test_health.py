def test_healthz_is_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_is_ready(client):
    assert client.get("/readyz").json() == {"status": "ready"}


def test_docs_are_served(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()


def test_startup_objects_are_frozen_out_of_the_collector_while_the_app_runs():
    import gc

    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    gc.unfreeze()
    with TestClient(create_app(Settings())) as client:
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the modules and the app, not a handful of objects
        assert client.get("/healthz").status_code == 200
    # Once per process: a second app finds the modules frozen and neither collects nor freezes
    # (its own objects stay with the collector; the first app's, freed, leave the frozen count).
    with TestClient(create_app(Settings())) as client:
        assert 10_000 < gc.get_freeze_count() <= frozen


def test_probes_answer_while_the_thread_pool_is_exhausted():
    """The probes run on the event loop: no worker thread is needed to answer them."""
    import anyio
    import httpx

    from service.app import create_app
    from service.settings import Settings

    app = create_app(Settings())

    async def probe_with_every_thread_taken() -> list[int]:
        limiter = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(limiter.total_tokens))]
        for holder in holders:
            await limiter.acquire_on_behalf_of(holder)
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                with anyio.fail_after(5):  # a probe needing a thread would wait here forever
                    return [(await client.get(path)).status_code for path in ("/healthz", "/readyz")]
        finally:
            for holder in holders:
                limiter.release_on_behalf_of(holder)

    assert anyio.run(probe_with_every_thread_taken) == [200, 200]
