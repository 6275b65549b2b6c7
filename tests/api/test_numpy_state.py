"""NumPy's error state is set in each request's context (service.api.middleware.numpy_state).

The variable is NumPy's private ``_extobj_contextvar``: the first test fails when an upgrade
renames it or stops keeping ``np.errstate`` there, so the module is re-checked rather than
silently doing nothing.
"""

import asyncio
import contextvars

import httpx
import numpy as np
import pytest

from service import core
from service.api.middleware.numpy_state import NUMPY_ERRSTATE
from service.app import create_app
from service.settings import Settings


def _holds_it() -> bool:
    return NUMPY_ERRSTATE in contextvars.copy_context()


def test_numpy_keeps_its_error_state_in_the_variable_held():
    def fresh() -> None:
        assert not _holds_it()
        with np.errstate(divide="raise"):
            assert _holds_it()
            with pytest.raises(FloatingPointError):
                np.divide(np.ones(1), np.zeros(1))
        assert not _holds_it()
        NUMPY_ERRSTATE.set(NUMPY_ERRSTATE.get())
        assert _holds_it()

    contextvars.Context().run(fresh)


def test_holding_the_state_changes_nothing_numpy_does():
    def held() -> tuple[dict[str, str], dict[str, str]]:
        before = np.geterr()
        NUMPY_ERRSTATE.set(NUMPY_ERRSTATE.get())  # as ScoringApp.__call__ does
        assert _holds_it()
        with np.errstate(invalid="raise"), pytest.raises(FloatingPointError):
            np.sqrt(-np.ones(1))
        with np.errstate(all="ignore"):
            assert np.isinf(np.divide(np.ones(1), np.zeros(1))).all()
        return before, np.geterr()

    before, after = contextvars.Context().run(held)
    assert before == after == np.geterr()


async def _call(app, method: str, path: str, **kwargs) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path, **kwargs)


def test_a_scoring_request_runs_in_a_context_that_holds_numpy_s_state(monkeypatch):
    seen: list[bool] = []
    nll = core.nll

    def observed_nll(*args, **kwargs):
        seen.append(_holds_it())
        return nll(*args, **kwargs)

    monkeypatch.setattr(core, "nll", observed_nll)
    body = {"logits": [[0.0, 1.0]], "labels": [0]}
    call = _call(create_app(Settings()), "POST", "/v1/cross-entropy", json=body)
    response = contextvars.Context().run(asyncio.run, call)  # from a context that holds nothing
    assert response.status_code == 200, response.text
    assert response.json()["loss"] == pytest.approx(np.log1p(np.e), rel=1e-12)  # log(1 + e^1) - 0
    assert seen == [True]


def test_any_other_request_and_the_threads_it_starts_hold_it_too():
    app = create_app(Settings())

    @app.get("/probe-numpy-state")
    def probe() -> bool:  # a plain function: FastAPI runs it in a worker thread, in a copy of the context
        return _holds_it()

    response = contextvars.Context().run(asyncio.run, _call(app, "GET", "/probe-numpy-state"))
    assert response.status_code == 200, response.text
    assert response.json() is True
