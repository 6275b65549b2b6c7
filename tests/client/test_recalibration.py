"""Client methods of /v1/temperature, /v1/recalibrate and /v1/apply against the live app."""

import asyncio

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from service.client import AsyncXentClient, XentAPIError, XentClient


@pytest.fixture(params=["json", "binary"])
def xent(request, live_url):
    with XentClient(live_url, payload=request.param) as client:
        yield client


@pytest.fixture
def batch(rng):
    true_logits = 2 * rng.standard_normal((2000, 5))
    labels = np.array([rng.choice(5, p=p) for p in softmax(true_logits, axis=1)])
    return 2.5 * true_logits, labels  # overconfident: the fitted T should be near 2.5


def nll(logits, labels, temperature):
    return -log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean()


def test_temperature_matches_scipy_minimize_scalar(xent, batch):
    logits, labels = batch
    result = xent.temperature(logits=logits, labels=labels)
    expected = minimize_scalar(
        lambda t: nll(logits, labels, t), bounds=(0.1, 20), method="bounded", options={"xatol": 1e-10}
    ).x
    assert result.converged
    assert result.temperature == pytest.approx(expected, rel=1e-5)
    assert result.after.nll == pytest.approx(nll(logits, labels, result.temperature), rel=1e-9)
    assert result.after.nll <= result.before.nll


def test_apply_reproduces_softmax_at_the_fitted_temperature(xent, batch, rng):
    logits, labels = batch
    fit = xent.temperature(logits=logits, labels=labels)
    new = rng.standard_normal((7, 5))
    applied = xent.apply(fit.parameters, logits=new)
    np.testing.assert_allclose(applied.probs, softmax(new / fit.temperature, axis=1), rtol=1e-12)
    as_json = xent.apply(fit.parameters.model_dump(mode="json"), logits=new)
    assert as_json.probs == applied.probs


def test_apply_bare_temperature_scores_the_output(xent, batch):
    logits, labels = batch
    applied = xent.apply(temperature=2.0, logits=logits, labels=labels)
    assert applied.metrics.nll == pytest.approx(nll(logits, labels, 2.0), rel=1e-9)


def test_recalibrate_returns_parameters_that_apply_reproduces(xent, batch):
    logits, labels = batch
    fit = xent.recalibrate("vector", logits=logits, labels=labels)
    assert fit.method == "vector"
    applied = xent.apply(fit.parameters, logits=logits, labels=labels)
    assert applied.metrics == fit.after
    temperature = xent.recalibrate("temperature", logits=logits, labels=labels)
    assert temperature.parameters.temperature == pytest.approx(
        xent.temperature(logits=logits, labels=labels).temperature, rel=1e-12
    )


def test_recalibrate_unknown_method_is_a_problem(xent, batch):
    logits, labels = batch
    with pytest.raises(XentAPIError) as caught:
        xent.recalibrate("magic", logits=logits[:10], labels=labels[:10])
    assert caught.value.status == 422
    assert "method" in caught.value.pointer


def test_async_temperature_and_apply(live_url, batch):
    logits, labels = batch

    async def run():
        async with AsyncXentClient(live_url) as client:
            fit = await client.temperature(logits=logits, labels=labels)
            return fit, await client.apply(fit.parameters, logits=logits[:3])

    fit, applied = asyncio.run(run())
    np.testing.assert_allclose(applied.probs, softmax(logits[:3] / fit.temperature, axis=1), rtol=1e-12)
