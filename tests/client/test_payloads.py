"""JSON tensor objects and the OIP binary tensor extension: the same answers either way."""

import httpx
import numpy as np
import orjson
import pytest
import scipy.special as sp
from scipy.special import log_softmax

from service.client import XentAPIError, XentClient
from service.client.clients import BINARY_THRESHOLD
from service.client.encoding import encode_binary


@pytest.fixture(params=["json", "binary"])
def xent(request, live_url):
    with XentClient(live_url, payload=request.param) as client:
        yield client


def reference_losses(logits, labels):
    return -log_softmax(np.asarray(logits, np.float64), axis=1)[np.arange(len(labels)), labels]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_cross_entropy_keeps_the_dtype(xent, rng, dtype):
    logits = rng.standard_normal((40, 5)).astype(dtype)
    labels = rng.integers(0, 5, size=40).astype(np.int32)
    result = xent.cross_entropy(logits=logits, labels=labels, per_sample=True)
    assert result.convention.dtype == ("float64" if dtype == np.float64 else "float32")
    rtol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(result.losses, reference_losses(logits, labels), rtol=rtol)


def test_big_endian_and_strided_arrays_arrive_intact(xent, rng):
    logits = rng.standard_normal((30, 8))
    strided = logits[:, ::2]  # not contiguous
    swapped = strided.astype(">f8")  # big-endian
    labels = rng.integers(0, 4, size=30).astype(">i8")
    result = xent.cross_entropy(logits=swapped, labels=labels, per_sample=True)
    np.testing.assert_allclose(result.losses, reference_losses(strided, labels.astype(int)), rtol=1e-12)


def test_options_and_class_weights_travel_with_binary_tensors(xent, rng):
    logits = rng.standard_normal((20, 3))
    labels = rng.integers(0, 3, size=20)
    result = xent.cross_entropy(logits=logits, labels=labels, class_weights=[1.0, 2.0, 0.5], base=2)
    weights = np.array([1.0, 2.0, 0.5])[labels]
    expected = (weights * reference_losses(logits, labels)).sum() / weights.sum() / np.log(2)
    assert result.loss == pytest.approx(expected, rel=1e-12)
    assert result.convention.class_weights is True


def test_boolean_labels_are_sent_as_integers(xent):
    result = xent.cross_entropy(probs=np.array([0.9, 0.2]), labels=np.array([True, False]))
    assert result.loss == pytest.approx(-np.log([0.9, 0.8]).mean(), rel=1e-12)


def test_binary_payload_errors_point_into_the_inputs(live_url):
    with XentClient(live_url, payload="binary") as client, pytest.raises(XentAPIError) as caught:
        client.cross_entropy(logits=np.zeros((3, 2)), labels=np.array([0, 1, 2]))
    assert caught.value.pointer == "#/inputs/1/2"
    assert caught.value.detail == "`labels[2]` must lie in [0, 2); got 2"


def test_encode_binary_round_trips(rng):
    logits = rng.standard_normal((7, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=7)
    encoded = encode_binary({"logits": logits, "labels": labels, "base": 2, "targets": None})
    length = int(encoded.headers["Inference-Header-Content-Length"])
    header = orjson.loads(encoded.content[:length])
    assert header["parameters"] == {"base": 2}
    assert [(i["name"], i["datatype"], i["shape"]) for i in header["inputs"]] == [
        ("logits", "FP32", [7, 3]),
        ("labels", "INT64", [7]),
    ]
    body = encoded.content[length:]
    np.testing.assert_array_equal(np.frombuffer(body[: logits.nbytes], "<f4").reshape(7, 3), logits)
    np.testing.assert_array_equal(np.frombuffer(body[logits.nbytes :], "<i8"), labels)


@pytest.mark.parametrize(
    ("rows", "expected"), [(10, "application/json"), (BINARY_THRESHOLD, "application/octet-stream")]
)
def test_auto_payload_switches_to_binary_for_large_batches(rows, expected):
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    with XentClient("http://xent", transport=httpx.MockTransport(handle)) as client:
        client.request("/v1/cross-entropy", {"probs": np.full(rows, 0.5), "labels": np.zeros(rows, int)})
        client.request("/v1/cross-entropy", {"probs": [0.5], "labels": [0]})  # no arrays: JSON
    assert seen[0].headers["content-type"] == expected
    assert seen[1].headers["content-type"] == "application/json"


def test_binary_payload_without_arrays_goes_as_json(live_url):
    with XentClient(live_url, payload="binary") as client:
        body = client.request("/v1/cross-entropy", {"probs": [0.25], "labels": [1]})
    assert body["loss"] == pytest.approx(np.log(4))


def test_unknown_payload_is_refused():
    with pytest.raises(ValueError, match='payload must be "auto", "json" or "binary"'):
        XentClient("http://xent", payload="xml")  # type: ignore[arg-type]


def test_binary_data_output_is_decoded(live_url, rng):
    logits = rng.standard_normal((25, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=25)
    with XentClient(live_url, payload="binary") as client:
        result = client.cross_entropy(logits=logits, labels=labels, reduction="none", binary_data_output=True)
        raw = client.request(
            "/v1/cross-entropy",
            {"logits": logits, "labels": labels, "per_sample": True, "binary_data_output": True},
        )
    np.testing.assert_allclose(result.losses, reference_losses(logits, labels), rtol=1e-5)
    assert result.loss is None
    assert isinstance(raw["losses"], np.ndarray)
    assert raw["losses"].dtype == np.float32
    np.testing.assert_array_equal(raw["losses"], np.asarray(result.losses, np.float32))
    assert raw["loss"] == pytest.approx(reference_losses(logits, labels).mean(), rel=1e-5)


def test_recalibrated_probs_as_binary_output_are_decoded(live_url, rng):
    logits = (3 * rng.standard_normal((30, 5))).astype(np.float32)
    with XentClient(live_url, payload="binary") as client:
        typed = client.apply(temperature=1.5, logits=logits, binary_data_output=True)
        raw = client.request("/v1/apply", {"logits": logits, "temperature": 1.5, "binary_data_output": True})
    expected = np.exp(logits / 1.5) / np.exp(logits / 1.5).sum(axis=1, keepdims=True)
    assert isinstance(raw["probs"], np.ndarray) and raw["probs"].dtype == np.float32
    np.testing.assert_allclose(raw["probs"], expected, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(typed.probs, np.float32), raw["probs"])


def test_divergence_rows_as_binary_outputs_are_decoded_where_json_has_them(live_url, rng):
    p = sp.softmax(rng.standard_normal((20, 3)), axis=1).astype(np.float32)
    q = sp.softmax(rng.standard_normal((20, 3)), axis=1).astype(np.float32)
    with XentClient(live_url, payload="binary") as client:
        typed = client.divergence(p_probs=p, q_probs=q, per_sample=True, binary_data_output=True)
        raw = client.request(
            "/v1/divergence", {"p_probs": p, "q_probs": q, "per_sample": True, "binary_data_output": True}
        )
    rows = raw["per_sample"]
    assert isinstance(rows["kl_pq"], np.ndarray) and rows["kl_pq"].dtype == np.float32
    np.testing.assert_allclose(rows["kl_pq"], sp.rel_entr(p, q).sum(axis=1), rtol=1e-5)
    assert typed.per_sample is not None
    np.testing.assert_array_equal(np.asarray(typed.per_sample.js_distance, np.float32), rows["js_distance"])
