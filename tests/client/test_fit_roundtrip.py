"""A fit's own output is always accepted by /v1/apply, through every client path (issue #20).

T = ∞ comes back as "Infinity" and must travel back as "Infinity", not as null; T = 0 and
every map's finite parameters must come back unchanged. Each path: sync and async clients,
JSON and binary payloads, the parameters as the model, as its JSON, and as plain numbers.
"""

import asyncio
import json

import numpy as np
import pytest
from scipy.special import expit, softmax

from service.client import AsyncXentClient, XentAPIError, XentClient
from service.client.endpoints import _option

ALL_WRONG = (np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]]), np.array([1, 0, 1]))  # T → ∞
ALL_RIGHT = (np.array([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0]]), np.array([0, 1, 0]))  # T → 0
NEW = np.array([[2.0, -1.0], [0.5, 0.5], [-3.0, 1.0]])


@pytest.fixture(params=["json", "binary"])
def payload(request):
    return request.param


@pytest.fixture
def xent(live_url, payload):
    with XentClient(live_url, payload=payload) as client:
        yield client


def _batches(rng):
    s = 2 * rng.standard_normal(400)
    binary = (s, (rng.random(400) < expit(0.6 * s - 0.4)).astype(int))
    z = 2 * rng.standard_normal((400, 4))
    categorical = (z, (softmax(1.5 * z, axis=1).cumsum(axis=1) > rng.random((400, 1))).argmax(axis=1))
    return binary, categorical


def test_option_sends_non_finite_numbers_as_the_strings_the_server_reads():
    assert _option(float("inf")) == "Infinity"
    assert _option(np.float32(-np.inf)) == "-Infinity"
    assert _option(float("nan")) == "NaN"
    assert _option({"method": "temperature", "temperature": np.inf}) == {
        "method": "temperature",
        "temperature": "Infinity",
    }
    assert _option(np.array([0.0, np.inf])) == [0.0, "Infinity"]
    assert _option([1, 2.5, True]) == [1, 2.5, True]


@pytest.mark.parametrize(
    ("case", "reason", "temperature"), [(ALL_WRONG, "uninformative", np.inf), (ALL_RIGHT, "separable", 0.0)]
)
def test_temperature_at_its_limits_round_trips_through_apply(xent, case, reason, temperature):
    logits, labels = case
    fit = xent.temperature(logits=logits, labels=labels, return_probs=True)
    assert (fit.reason, fit.temperature) == (reason, temperature)
    again = xent.recalibrate("temperature", logits=logits, labels=labels, return_probs=True)
    for parameters in (
        fit.parameters,
        fit.parameters.model_dump(mode="json"),  # inf as a float: the client must not send null
        json.loads(fit.parameters.model_dump_json()),  # "Infinity" as the server wrote it
        again.parameters,
    ):
        applied = xent.apply(parameters, logits=logits, labels=labels)
        assert applied.probs == fit.probs
        assert applied.metrics == fit.after
    bare = xent.apply(temperature=temperature, logits=NEW)
    # scipy's softmax(z / T) at T = 1e300 and 1e-300: uniform, and the arg-max (uniform over ties)
    expected = softmax(NEW / (1e300 if temperature == np.inf else 1e-300), axis=1)
    np.testing.assert_array_equal(bare.probs, expected)


@pytest.mark.parametrize(
    ("method", "form"),
    [
        ("platt", "binary"),
        ("beta", "binary"),
        ("isotonic", "binary"),
        ("histogram", "binary"),
        ("isotonic", "categorical"),
        ("histogram", "categorical"),
        ("vector", "categorical"),
        ("matrix", "categorical"),
        ("temperature", "categorical"),
    ],
)
def test_every_map_round_trips_through_apply(xent, rng, method, form):
    binary, categorical = _batches(rng)
    logits, labels = binary if form == "binary" else categorical
    fit = xent.recalibrate(method, logits=logits, labels=labels, return_probs=True)
    assert fit.method == method
    dumped = fit.parameters.model_dump(mode="json")
    assert "NaN" not in fit.parameters.model_dump_json()  # a NaN-free fit
    for parameters in (fit.parameters, dumped):
        applied = xent.apply(parameters, logits=logits, labels=labels)
        assert applied.probs == fit.probs
        assert applied.metrics == fit.after


def test_async_client_round_trips_an_infinite_temperature(live_url, payload):
    logits, labels = ALL_WRONG

    async def run():
        async with AsyncXentClient(live_url, payload=payload) as client:
            fit = await client.temperature(logits=logits, labels=labels)
            applied = await client.apply(fit.parameters, logits=NEW)
            bare = await client.apply(temperature=fit.temperature, logits=NEW)
            return fit, applied, bare

    fit, applied, bare = asyncio.run(run())
    assert fit.temperature == np.inf
    np.testing.assert_array_equal(applied.probs, np.full(NEW.shape, 0.5))
    assert bare.probs == applied.probs


def test_a_nan_temperature_is_a_problem_naming_it(xent):
    with pytest.raises(XentAPIError) as caught:
        xent.apply(temperature=float("nan"), logits=NEW)
    assert caught.value.status == 422
    assert "temperature" in caught.value.pointer
