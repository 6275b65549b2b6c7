"""XentClient and AsyncXentClient against the real app over a loopback socket."""

import asyncio

import numpy as np
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.special import log_softmax, rel_entr
from sklearn.metrics import log_loss

from service.client import AsyncXentClient, Retry, XentAPIError, XentClient, XentConnectionError


@pytest.fixture
def xent(live_url):
    with XentClient(live_url, retry=Retry(retries=0)) as client:
        yield client


def test_cross_entropy_of_logits_matches_scipy(xent, rng):
    logits = 5 * rng.standard_normal((200, 7))
    labels = rng.integers(0, 7, size=200)
    result = xent.cross_entropy(logits=logits, labels=labels, per_sample=True)
    expected = -log_softmax(logits, axis=1)[np.arange(200), labels]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    assert result.loss == pytest.approx(expected.mean(), rel=1e-12)
    assert result.accuracy == pytest.approx(np.mean(logits.argmax(axis=1) == labels))
    assert result.n == 200
    assert result.convention.input == "logits"
    assert result.convention.dtype == "float64"


def test_cross_entropy_keeps_float32_on_the_wire(xent, rng):
    logits = rng.standard_normal((50, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=50).astype(np.int32)
    result = xent.cross_entropy(logits=logits, labels=labels, per_sample=True)
    assert result.convention.dtype == "float32"
    expected = -log_softmax(logits.astype(np.float64), axis=1)[np.arange(50), labels]
    np.testing.assert_allclose(result.losses, expected, rtol=1e-5)


def test_cross_entropy_of_probabilities_matches_sklearn_in_bits(xent, rng):
    probs = rng.dirichlet(np.ones(4), size=100)
    labels = rng.integers(0, 4, size=100)
    result = xent.cross_entropy(probs=probs, labels=labels, base=2)
    assert result.loss == pytest.approx(log_loss(labels, probs, labels=range(4)) / np.log(2), rel=1e-10)
    assert result.convention.unit == "bits"


def test_cross_entropy_with_class_weights_matches_torch(xent, rng):
    logits = rng.standard_normal((64, 3))
    labels = rng.integers(0, 3, size=64)
    weights = np.array([0.5, 2.0, 1.0])
    result = xent.cross_entropy(logits=logits, labels=labels, class_weights=weights, label_smoothing=0.1)
    expected = torch.nn.functional.cross_entropy(
        torch.from_numpy(logits),
        torch.from_numpy(labels),
        weight=torch.from_numpy(weights),
        label_smoothing=0.1,
    )
    assert result.loss == pytest.approx(float(expected), rel=1e-10)


def test_cross_entropy_accepts_plain_lists_and_binary_vectors(xent):
    result = xent.cross_entropy(probs=[0.9, 0.2, 0.5], labels=[1, 0, 1])
    assert result.convention.form == "binary"
    assert result.loss == pytest.approx(-np.mean(np.log([0.9, 0.8, 0.5])), rel=1e-12)


def test_cross_entropy_infinite_loss_comes_back_as_float_inf(xent):
    result = xent.cross_entropy(probs=np.array([[1.0, 0.0]]), labels=np.array([1]), eps=0)
    assert result.loss == np.inf


def test_divergence_matches_scipy(xent, rng):
    p = rng.dirichlet(np.ones(5), size=30)
    q_logits = rng.standard_normal((30, 5))
    q = np.exp(log_softmax(q_logits, axis=1))
    result = xent.divergence(p_probs=p, q_logits=q_logits, per_sample=True)
    np.testing.assert_allclose(result.per_sample.kl_pq, rel_entr(p, q).sum(axis=1), rtol=1e-9)
    np.testing.assert_allclose(result.per_sample.js_distance, jensenshannon(p, q, axis=1), rtol=1e-9)
    assert result.mean.kl_qp == pytest.approx(rel_entr(q, p).sum(axis=1).mean(), rel=1e-9)


def test_generic_request_sends_arrays_as_tensors(xent, rng):
    logits = rng.standard_normal((10, 3)).astype(np.float32)
    body = xent.request("/v1/cross-entropy", {"logits": logits, "labels": np.zeros(10, int), "base": 2})
    assert body["convention"]["dtype"] == "float32"
    assert body["convention"]["unit"] == "bits"
    assert xent.request("/healthz") == {"status": "ok"}


def test_label_out_of_range_raises_problem_with_pointer(xent):
    with pytest.raises(XentAPIError) as caught:
        xent.cross_entropy(logits=np.zeros((3, 2)), labels=np.array([0, 1, 2]))
    error = caught.value
    assert error.status == 422
    assert error.pointer == "#/labels/data/2"
    assert error.detail == "`labels[2]` must lie in [0, 2); got 2"
    assert error.response.headers["content-type"] == "application/problem+json"


def test_unknown_option_raises_problem_naming_it(xent):
    with pytest.raises(XentAPIError, match="422 Unprocessable Content") as caught:
        xent.cross_entropy(logits=np.zeros((1, 2)), labels=[0], bogus=1)
    assert caught.value.pointer == "#/bogus"


def test_nan_in_an_array_is_rejected_at_its_index(xent):
    with pytest.raises(XentAPIError) as caught:
        xent.cross_entropy(logits=np.array([[0.0, 1.0], [np.nan, 0.0]]), labels=[0, 1])
    assert caught.value.status == 422
    assert caught.value.pointer == "#/logits/data/2"


def test_unknown_route_raises_404(xent):
    with pytest.raises(XentAPIError) as caught:
        xent.request("/v1/nope", {})
    assert caught.value.status == 404


def test_non_numeric_array_is_refused_before_sending(xent):
    with pytest.raises(TypeError, match="`labels` must hold numbers; got dtype <U1"):
        xent.cross_entropy(logits=np.zeros((1, 2)), labels=np.array(["a"]))


def test_ready_reports_the_server_state(xent):
    assert xent.ready()
    with XentClient("http://127.0.0.1:9", timeout=0.5) as absent:
        assert not absent.ready()


def test_async_client_matches_sync_client(live_url, rng):
    logits = rng.standard_normal((40, 4))
    labels = rng.integers(0, 4, size=40)

    async def score():
        async with AsyncXentClient(live_url) as client:
            assert await client.ready()
            return await asyncio.gather(
                client.cross_entropy(logits=logits, labels=labels),
                client.divergence(p_logits=logits, q_logits=logits[::-1]),
            )

    ce, div = asyncio.run(score())
    with XentClient(live_url) as client:
        assert ce == client.cross_entropy(logits=logits, labels=labels)
    assert div.mean.kl_pq > 0


def test_async_client_raises_problem(live_url):
    async def score():
        async with AsyncXentClient(live_url) as client:
            await client.cross_entropy(logits=[[0.0, 1.0]], labels=[5])

    with pytest.raises(XentAPIError) as caught:
        asyncio.run(score())
    assert caught.value.pointer == "#/labels/data/0"


def test_connection_refused_raises_after_retries():
    with (
        XentClient("http://127.0.0.1:9", retry=Retry(retries=2, backoff=0.01)) as client,
        pytest.raises(XentConnectionError, match="could not reach"),
    ):
        client.request("/healthz")


def test_client_import_stays_free_of_the_server_stack():
    import subprocess
    import sys

    code = "import sys, service.client; print(sorted({'fastapi', 'starlette', 'uvicorn'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
