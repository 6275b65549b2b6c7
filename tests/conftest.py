import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.settings import Settings

# Apps built by the tests keep their monitors in a scratch directory, never in ./data.
if "XENT_DATA_DIR" not in os.environ:
    os.environ["XENT_DATA_DIR"] = tempfile.mkdtemp(prefix="xent-test-data-")
    atexit.register(shutil.rmtree, os.environ["XENT_DATA_DIR"], ignore_errors=True)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261125)


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def assert_problem(response, status: int, pointer: str | None = None, match: str | None = None) -> dict:
    """Check a problem+json response and return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status
    assert body["title"]
    if pointer is not None:
        assert body["errors"][0]["pointer"] == pointer, body
    if match is not None:
        import re

        assert re.search(match, body["detail"]), body["detail"]
    return body


@pytest.fixture(scope="session")
def live_url() -> Iterator[str]:
    """URL of the real app served by uvicorn over a loopback socket for the whole session."""
    from tests.live import running

    with running(create_app(Settings())) as url:
        yield url


def pytest_terminal_summary(terminalreporter) -> None:
    """Report how many schemathesis cases ran per operation (issue 6 asks for the figure)."""
    module = __import__("sys").modules.get("tests.contract.test_schemathesis")
    if module is None or not module.CASES:
        return
    cases = module.CASES
    documented = {op: n for op, n in cases.items() if n > 1}
    probes = sum(n for op, n in cases.items() if op not in documented)
    detail = ", ".join(f"{op}: {n}" for op, n in sorted(documented.items()))
    terminalreporter.write_line(
        f"schemathesis: {sum(cases.values())} cases ({detail}; {probes} unsupported-method probes)"
    )
    if module.LOG is not None:
        surveyed = ", ".join(f"{op}: {n}" for op, n in sorted(module.SURVEYED.items()))
        terminalreporter.write_line(
            f"schemathesis survey: refusals and 5xx logged to {module.LOG}: {surveyed or 'none'}"
        )
    hooks = __import__("sys").modules.get("tests.contract.hooks")
    if hooks is not None:
        repaired = ", ".join(f"{kind}: {n}" for kind, n in sorted(hooks.REPAIRED.items()))
        terminalreporter.write_line(f"schemathesis: positive cases repaired per kind: {repaired}")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of a PostgreSQL superuser: ``XENT_TEST_DATABASE_URL``, else a throw-away local cluster.

    Skips (saying why) when neither the psycopg extra nor server binaries are there.
    """
    pytest.importorskip("psycopg", reason="the PostgreSQL tests need the postgres extra (psycopg)")
    if url := os.environ.get("XENT_TEST_DATABASE_URL"):
        yield url
        return
    from tests.postgres_server import binaries, cluster

    if binaries() is None:
        pytest.skip(
            "no PostgreSQL server: initdb/pg_ctl not on PATH nor in /usr/lib/postgresql/*/bin "
            "(apt-get install postgresql, or set XENT_TEST_DATABASE_URL to an existing server)"
        )
    with cluster() as url:
        yield url


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """An empty database of its own on the test PostgreSQL server, dropped after the test."""
    from tests.postgres_server import fresh_database

    with fresh_database(postgres_server) as url:
        yield url
