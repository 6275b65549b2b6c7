"""KServe's inference logger as a monitor source: CloudEvents built as its logger builds them.

The events mirror ``pkg/logger/worker.go`` of github.com/kserve/kserve: CloudEvents 1.0 sent in
binary mode, type ``org.kubeflow.serving.inference.request`` / ``.response``, the request's
``Ce-Id`` as id, ``time``, the extensions ``inferenceservicename``, ``namespace``, ``component``,
``endpoint``, ``metadata``, ``recordedtime``, and the inference request's content type.
"""

import base64
import json
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import scipy.special

from ..conftest import assert_problem
from .monitoring import body, monitor_client

try:  # cloudevents 1.x
    from cloudevents.conversion import to_binary, to_structured
    from cloudevents.http import CloudEvent
except ImportError:  # 2.x keeps the 1.x API under cloudevents.v1
    from cloudevents.v1.conversion import to_binary, to_structured
    from cloudevents.v1.http import CloudEvent

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"


def kserve_event(ce_type, event_id, payload, *, at=None):
    """A CloudEvent with the attributes KServe's logger sets (worker.go, sendHttpCloudEvent)."""
    when = datetime.fromtimestamp(time.time() if at is None else at, UTC)
    attributes = {
        "specversion": "1.0",
        "id": event_id,
        "type": ce_type,
        "source": "http://localhost:9081/",
        "time": when.isoformat().replace("+00:00", "Z"),
        "recordedtime": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "inferenceservicename": "sklearn-iris",
        "namespace": "default",
        "component": "predictor",
        "endpoint": "default",
        "metadata": "{}",
        "datacontenttype": "application/json",
    }
    return CloudEvent(attributes, payload)


def post(client, name, event, *, mode="binary", **params):
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return client.post(f"/v1/monitors/{name}/events", content=body, headers=dict(headers), params=params)


def v2_response(outputs):
    return {"model_name": "m", "id": "x", "outputs": outputs}


def tensor(name, values, datatype="FP32"):
    values = np.asarray(values)
    return {"name": name, "shape": list(values.shape), "datatype": datatype, "data": values.ravel().tolist()}


@pytest.fixture
def client(tmp_path):
    with monitor_client(tmp_path) as test_client:
        yield test_client


def _reference(client, key, values, labels):
    """/v1/calibration (10 bins) and /v1/cross-entropy on the rows, sent in their dtype (OIP tensors)."""
    fields = {key: np.asarray(values), "labels": labels}
    content, headers = body({**fields, "n_bins": 10}, "tensor")
    calibration = client.post("/v1/calibration", content=content, headers=headers).json()["metrics"]
    content, headers = body(fields, "tensor")
    ce = client.post("/v1/cross-entropy", content=content, headers=headers).json()["loss"]
    return calibration, ce


@pytest.mark.parametrize("mode", ["binary", "structured"])
@pytest.mark.parametrize("protocol", ["v1", "v2"])
def test_responses_then_late_labels_equal_scoring_the_rows(client, rng, mode, protocol):
    k, sizes = 4, [1, 5, 3, 7, 1, 9]
    logits = (2 * rng.standard_normal((sum(sizes), k))).astype(np.float32)
    labels = rng.integers(0, k, size=logits.shape[0])
    spec = {"n_classes": k, "output_kind": "logits"}
    if protocol == "v2":
        spec["output"] = "logits"
    config = client.put("/v1/monitors/iris", json=spec).json()
    assert (config["output"], config["output_kind"]) == (spec.get("output"), "logits")
    sent = logits if protocol == "v2" else logits.astype(np.float64)  # V1: JSON numbers, read as float64
    ids, start = [], 0
    for j, n in enumerate(sizes):
        rows = logits[start : start + n]
        start += n
        request = {"instances": rng.standard_normal((n, 3)).tolist()}
        if protocol == "v1":
            response = {"predictions": rows.tolist()}
        else:  # a second output the monitor must not read
            response = v2_response([tensor("classes", rows.argmax(1), "INT64"), tensor("logits", rows)])
        event_id = f"req-{j}"
        # the request and the response share the id; either may arrive first
        order = [(REQUEST, request), (RESPONSE, response)]
        for ce_type, payload in order if j % 2 else order[::-1]:
            answer = post(client, "iris", kserve_event(ce_type, event_id, payload), mode=mode)
            assert answer.status_code == 200, answer.text
            result = answer.json()
            assert (result["id"], result["type"], result["recorded"]) == (
                event_id,
                ce_type,
                ce_type == RESPONSE,
            )
            if ce_type == RESPONSE:
                expected = [event_id] if n == 1 else [f"{event_id}:{i}" for i in range(n)]
                assert result["ids"] == expected and result["n"] == result["n_pending"] == n
                ids += expected
    totals = client.get("/v1/monitors/iris").json()["totals"]
    assert (totals["n"], totals["n_labelled"]) == (logits.shape[0], 0)
    joined = client.post("/v1/monitors/iris/labels", json={"ids": ids, "labels": labels.tolist()}).json()
    assert (joined["joined"], joined["unknown"]) == (len(ids), 0)
    calibration, ce = _reference(client, "logits", sent, labels)
    point = client.get("/v1/monitors/iris/metrics", params={"window": "1h", "n_bins": 10}).json()["points"][
        -1
    ]
    assert point["n_labelled"] == logits.shape[0]
    assert point["cross_entropy"] == pytest.approx(ce, rel=1e-12)
    assert point["ece"] == pytest.approx(calibration["ece"], rel=1e-12)
    assert point["accuracy"] == pytest.approx(calibration["accuracy"], rel=1e-12)
    # independently: the mean NLL of softmax rows of float32 logits
    z = logits.astype(np.float64)
    nll = scipy.special.logsumexp(z, axis=1) - z[np.arange(len(labels)), labels]
    assert point["cross_entropy"] == pytest.approx(nll.mean(), rel=1e-6)


def test_v1_probabilities_of_a_binary_monitor_at_the_event_time(client, rng):
    client.put("/v1/monitors/b", json={"binary": True})
    p = rng.uniform(0.01, 0.99, size=6)
    at = time.time() - 1800
    answer = post(client, "b", kserve_event(RESPONSE, "r1", {"predictions": [[v] for v in p]}, at=at))
    assert answer.status_code == 200, answer.text
    labels = (rng.random(6) < p).astype(int)
    client.post("/v1/monitors/b/labels", json={"ids": answer.json()["ids"], "labels": labels.tolist()})
    result = client.get(
        "/v1/monitors/b/metrics", params={"from": int(at) - 120, "to": int(at) + 120, "n_bins": 10}
    ).json()
    point = next(p for p in result["points"] if p["n"])
    calibration, ce = _reference(client, "probs", p, labels)
    assert point["cross_entropy"] == pytest.approx(ce, rel=1e-12)
    assert point["ece"] == pytest.approx(calibration["ece"], rel=1e-12)
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log1p(-p))
    assert point["cross_entropy"] == pytest.approx(expected, rel=1e-12)


def test_a_repeated_response_is_not_pending_twice(client, rng):
    client.put("/v1/monitors/m", json={"n_classes": 3})
    probs = rng.dirichlet(np.ones(3), size=2).tolist()
    first = post(client, "m", kserve_event(RESPONSE, "same", {"predictions": probs})).json()
    again = post(client, "m", kserve_event(RESPONSE, "same", {"predictions": probs})).json()
    assert (first["n_pending"], again["n_pending"], again["n_duplicate_ids"]) == (2, 0, 2)


def _raw(client, name, headers, body):
    return client.post(f"/v1/monitors/{name}/events", content=body, headers=headers)


BASE_HEADERS = {
    "content-type": "application/json",
    "ce-specversion": "1.0",
    "ce-id": "e1",
    "ce-source": "http://localhost:9081/",
    "ce-type": RESPONSE,
}


@pytest.mark.parametrize(
    ("change", "pointer", "match"),
    [
        ({"ce-type": "com.example.other"}, "#/ce-type", "must be one of"),
        ({"ce-id": None}, "#/ce-id", "required"),
        ({"ce-source": None}, "#/ce-source", "required"),
        ({"ce-specversion": "0.3"}, "#/ce-specversion", '"1.0"'),
        ({"ce-time": "yesterday"}, "#/ce-time", "RFC 3339"),
        ({"ce-time": "2001-01-01T00:00:00Z"}, "#/ce-time", "retention"),
    ],
)
def test_bad_headers_are_named(client, change, pointer, match):
    client.put("/v1/monitors/m", json={"n_classes": 2})
    headers = {k: v for k, v in {**BASE_HEADERS, **change}.items() if v is not None}
    body = json.dumps({"predictions": [[0.3, 0.7]]}).encode()
    assert_problem(_raw(client, "m", headers, body), 422, pointer, match)


@pytest.mark.parametrize(
    ("payload", "pointer", "match"),
    [
        (v2_response([tensor("scores", [[0.2, 0.8]])]), "#/outputs", "no tensor named 'probabilities'"),
        (
            v2_response([{"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.5, 0.5]}]),
            "#/outputs/0/data",
            "prod",
        ),
        (v2_response([tensor("probabilities", [[0.2, 0.3, 0.5]])]), "#/outputs/0/data", "N×2"),
        (v2_response([tensor("probabilities", [["a", "b"]], "BYTES")]), "#/outputs/0/datatype", "numeric"),
        (v2_response([tensor("probabilities", [[0.2, 0.9]])]), "#/outputs/0/data/0", "sum to 1"),
        ({"instances": [[1, 2]]}, "#/data", "predictions"),
    ],
)
def test_bad_bodies_are_named(client, payload, pointer, match):
    client.put("/v1/monitors/m", json={"n_classes": 2, "output": "probabilities", "output_kind": "probs"})
    assert_problem(post(client, "m", kserve_event(RESPONSE, "e1", payload)), 422, pointer, match)


def test_several_outputs_need_the_monitors_output(client):
    client.put("/v1/monitors/m", json={"n_classes": 2})
    payload = v2_response([tensor("a", [[0.2, 0.8]]), tensor("b", [[0.2, 0.8]])])
    assert_problem(
        post(client, "m", kserve_event(RESPONSE, "e1", payload)), 422, "#/outputs", "set the monitor"
    )


def test_unknown_monitor_and_non_json_body(client):
    event = kserve_event(RESPONSE, "e1", {"predictions": [[0.5, 0.5]]})
    assert post(client, "nope", event).status_code == 404
    client.put("/v1/monitors/m", json={"n_classes": 2})
    # malformed JSON is a 400, as on every route (service/api/formats/payload.py parses the body)
    assert_problem(_raw(client, "m", BASE_HEADERS, b"{not json"), 400, match="not valid JSON")


def test_gos_nanosecond_times_and_structured_base64_data(client, rng):
    """sdk-go writes ``time`` as RFC 3339 with nanoseconds; structured mode may carry ``data_base64``."""

    client.put("/v1/monitors/m", json={"n_classes": 3})
    at = datetime.fromtimestamp(time.time() - 600, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"
    headers = {**BASE_HEADERS, "ce-time": at}
    probs = rng.dirichlet(np.ones(3), size=2)
    answer = _raw(client, "m", headers, json.dumps({"predictions": probs.tolist()}).encode())
    assert answer.status_code == 200, answer.text
    envelope = {
        "specversion": "1.0",
        "id": "s1",
        "source": "http://localhost:9081/",
        "type": RESPONSE,
        "data_base64": base64.b64encode(json.dumps({"predictions": probs.tolist()}).encode()).decode(),
    }
    answer = _raw(
        client, "m", {"content-type": "application/cloudevents+json"}, json.dumps(envelope).encode()
    )
    assert answer.status_code == 200 and answer.json()["ids"] == ["s1:0", "s1:1"], answer.text
    joined = client.post(
        "/v1/monitors/m/labels", json={"ids": ["e1:0", "e1:1", "s1:0", "s1:1"], "labels": [0, 1, 2, 0]}
    ).json()
    assert joined["joined"] == 4
    at_s = datetime.fromisoformat(at[:26] + "+00:00").timestamp()
    got = client.get("/v1/monitors/m/metrics", params={"window": "20m", "step": "1m"}).json()["points"]
    # the event at `ce-time` (10 minutes ago) is in its minute; the one without a time, now
    assert [p["n"] for p in got if p["start"] <= at_s < p["end"]] == [2]
    assert sum(p["n"] for p in got) == 4
    y = np.array([0, 1, 2, 0])
    p_all = np.vstack([probs, probs])
    expected = -np.mean(np.log(p_all[np.arange(4), y]))
    merged = client.get("/v1/monitors/m/metrics", params={"window": "1h", "step": "1w"}).json()["points"]
    assert next(p for p in merged if p["n"])["cross_entropy"] == pytest.approx(expected, rel=1e-12)


ENVELOPE = {"specversion": "1.0", "id": "s1", "source": "http://localhost:9081/", "type": RESPONSE}


@pytest.mark.parametrize(
    "event",
    [
        # issue 21: a response without predictions, with an extra member, was schema-valid (seed 1)
        {**ENVELOPE, "data": {}, "x-extra": 1},
        {**ENVELOPE, "data": {"instances": [[1, 2]]}},
        {**ENVELOPE, "type": REQUEST, "data": {}, "x-extra": 1},
        {**ENVELOPE, "data": {"predictions": [[0.3, 0.7]]}},
        {**ENVELOPE, "data": {"predictions": [[True, False]]}},
        {**ENVELOPE, "data": {"outputs": []}},
        {**ENVELOPE, "data": {"outputs": [tensor("probabilities", [[0.3, 0.7]])]}},
        {**ENVELOPE, "data": {"outputs": [tensor("probabilities", [[1e5, 0.7]], "FP16")]}},
        {**ENVELOPE, "data": {"outputs": [tensor("probabilities", [[0.3, 0.7]], "BYTES")]}},
        # attribute names are lower-case: `ID` is an extension, not the id (it was read as one)
        {**ENVELOPE, "data": {"predictions": [[0.3, 0.7]]}, "ID": 5},
        # `data` and `data_base64` are one or the other (`data_base64` was read, `data` dropped)
        {**ENVELOPE, "data": {"predictions": [[0.3, 0.7]]}, "data_base64": "e30="},
        # a request event's `data` is an object too ([null, null] was acknowledged; st, issue 21)
        {**ENVELOPE, "type": REQUEST, "data": [None, None]},
        {**ENVELOPE, "type": REQUEST, "data": None},
        {**ENVELOPE, "type": REQUEST, "data": 3},
        {**ENVELOPE, "type": REQUEST},
        {**ENVELOPE, "type": REQUEST, "data": {"inputs": []}},
    ],
)
def test_a_structured_event_is_accepted_as_the_document_says(client, event):
    """The committed document's verdict on a structured-mode event equals the server's (2xx or 422)."""
    import jsonschema

    from tests.test_openapi_rules import DOCUMENT

    client.put("/v1/monitors/m", json={"n_classes": 2})
    operation = DOCUMENT["paths"]["/v1/monitors/{name}/events"]["post"]
    schema = operation["requestBody"]["content"]["application/cloudevents+json"]["schema"]
    valid = jsonschema.Draft202012Validator(schema).is_valid(event)
    answer = _raw(client, "m", {"content-type": "application/cloudevents+json"}, json.dumps(event).encode())
    assert answer.status_code in (200, 422), answer.text
    assert valid == (answer.status_code == 200), (valid, answer.text)


@pytest.mark.parametrize(
    ("event", "pointer", "match"),
    [
        (
            {**ENVELOPE, "type": REQUEST, "data": [None, None]},
            "#/data",
            "must be a JSON object.*got an array",
        ),
        ({**ENVELOPE, "type": REQUEST}, "#/data", "is required"),
        (
            {**ENVELOPE, "type": REQUEST, "data_base64": base64.b64encode(b"[1]").decode()},
            "#/data_base64",
            "must be a JSON object.*got an array",
        ),
        ({**ENVELOPE, "type": REQUEST, "data": "[1]"}, "#/data", "must be a JSON object.*got an array"),
    ],
)
def test_a_request_events_data_that_is_not_an_object_is_named(client, event, pointer, match):
    client.put("/v1/monitors/m", json={"n_classes": 2})
    answer = _raw(client, "m", {"content-type": "application/cloudevents+json"}, json.dumps(event).encode())
    assert_problem(answer, 422, pointer, match)
