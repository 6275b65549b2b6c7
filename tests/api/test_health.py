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
        assert gc.get_freeze_count() > 10_000  # the modules and the app, not a handful of objects
        assert client.get("/healthz").status_code == 200
    assert gc.get_freeze_count() == 0
