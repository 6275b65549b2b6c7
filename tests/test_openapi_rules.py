"""Issue 21: the rules the document states (values by role, options across fields, logprobs documents,
a sequences body's two forms) agree with the service: for each request, the committed document's
verdict (jsonschema, Draft 2020-12) equals the server's (2xx accepted, 422 refused)."""

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = json.loads((ROOT / "openapi" / "openapi.json").read_text())

L = [[1.0, 0.0], [0.0, 2.0]]
P = [[0.9, 0.1], [0.2, 0.8]]


def tensor(data, shape, datatype="FP32"):
    return {"shape": shape, "datatype": datatype, "data": data}


def inp(name, data, shape, datatype="FP32"):
    return {"name": name, **tensor(data, shape, datatype)}


CHAT = {
    "choices": [
        {"logprobs": {"content": [{"token": "Hi", "logprob": -0.5, "bytes": [72], "top_logprobs": []}]}}
    ]
}
PROMPT = {"prompt_logprobs": [None, {"12": {"logprob": -1.0, "rank": 1}}]}
LABELS = tensor([0, 1], [2], "INT64")
SEQ = tensor([1.0, 0.0, 0.0, 2.0], [1, 2, 2])  # B×T×K: one sequence of two tokens, K = 2
SEQ_LABELS = tensor([0, 1], [1, 2], "INT64")
KNOTS = {"x": [0.0, 1.0], "y": [0.1, 0.9]}
CASES = [
    # soft targets lie in [0, 1] in every form (JSON rows, a tensor, an inference input, multilabel)
    ("/v1/cross-entropy", {"logits": L, "targets": [[0.25, 0.75], [1.0, 0.0]]}),
    ("/v1/cross-entropy", {"logits": L, "targets": [[1.5, -0.5], [1.0, 0.0]]}),
    ("/v1/cross-entropy", {"logits": L, "targets": tensor([1.5, -0.5, 1.0, 0.0], [2, 2])}),
    (
        "/v1/cross-entropy",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("targets", [2, -1, 1, 0], [2, 2])]},
    ),
    ("/v1/temperature", {"logits": L, "targets": [[1.5, -0.5], [1.0, 0.0]]}),
    ("/v1/calibration", {"logits": L, "targets": [[1.0, 0.0], [0.0, 1.0]], "multilabel": True}),
    ("/v1/calibration", {"logits": L, "targets": [[2.0, 0.0], [0.0, 1.0]], "multilabel": True}),
    ("/v1/calibration", {"logits": L, "targets": tensor([1, 0, 0, -1], [2, 2], "INT64"), "multilabel": True}),
    # B×T labels as floats holding integers, as N-row labels
    ("/v1/cross-entropy", {"logits": SEQ, "labels": tensor([0.0, 1.0], [1, 2], "FP32")}),
    ("/v1/calibration", {"logits": SEQ, "labels": tensor([0.0, 1.0], [1, 2], "BF16")}),
    ("/v1/temperature", {"logits": SEQ, "labels": tensor([0.0, 1.0], [1, 2], "FP16")}),
    ("/v1/cross-entropy", {"logits": SEQ, "labels": tensor([0.5, 1.0], [1, 2], "FP32")}),
    # tensor values by role
    ("/v1/cross-entropy", {"probs": P, "labels": [0, 1]}),
    ("/v1/cross-entropy", {"probs": [[1.5, -0.5], [0.2, 0.8]], "labels": [0, 1]}),
    ("/v1/cross-entropy", {"probs": tensor([0.9, 0.1, 0.2, 0.8], [2, 2]), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"probs": tensor([0.9, 1.1, 0.2, 0.8], [2, 2]), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": [[1.0], [2.0]], "labels": [0, 0]}),
    ("/v1/cross-entropy", {"logits": tensor([1, 0, 0, 2], [2, 2], "INT8"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([1.5, 0, 0, 2], [2, 2], "INT8"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([1000, 0, 0, 2], [2, 2], "INT8"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([1e5, 0, 0, 2], [2, 2], "FP16"), "labels": [0, 1]}),
    # a narrow float's bound is where the server's rounding reaches inf (numpy's float16 cast)
    ("/v1/cross-entropy", {"logits": tensor([65519.0, 0, 0, 2], [2, 2], "FP16"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([-65520.0, 0, 0, 2], [2, 2], "FP16"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([3.4028235e38, 0, 0, 2], [2, 2], "FP32"), "labels": [0, 1]}),
    ("/v1/cross-entropy", {"logits": tensor([3.3961775e38, 0, 0, 2], [2, 2], "BF16"), "labels": [0, 1]}),
    ("/v1/monitors/m/observations", {"logits": tensor([1.0, 0, 0, 2], [1, 2, 2])}),
    ("/v1/monitors/m/observations", {"logits": L}),
    (
        "/v2/models/divergence/infer",
        {"inputs": [inp("p_probs", [1.0, 1.0], [2, 1]), inp("q_probs", [1.0, 1.0], [2, 1])]},
    ),
    (
        "/v2/models/divergence/infer",
        {"inputs": [inp("p_probs", [1.0, 0, 0, 1], [2, 2]), inp("q_probs", [1.0, 0, 0, 1], [2, 2])]},
    ),
    # an inference input's datatype: finite in a narrow float, integers in an integer type
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2], "FP16"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1e5, 0, 0, 2], [2, 2], "FP16"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1e39, 0, 0, 2], [2, 2], "FP32"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [3.39e38, 0, 0, 2], [2, 2], "BF16"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1e300, 0, 0, 2], [2, 2], "FP64"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v1/cross-entropy",
        {"inputs": [inp("logits", [1, 0, 0, 2], [2, 2], "UINT64"), inp("labels", [0, 1], [2], "INT32")]},
    ),
    # ... stated per datatype: an integer type's values fit it, a narrow float's bound is where it rounds
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [127, 0, -128, 2], [2, 2], "INT8"), inp("labels", [0, 1], [2], "UINT8")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [128, 0, 0, 2], [2, 2], "INT8"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1.5, 0, 0, 2], [2, 2], "INT16"), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2], "FP64"), inp("labels", [0, -1], [2], "UINT8")]},
    ),
    (
        "/v2/models/calibration/infer",
        {"inputs": [inp("logits", [65519.99, 0, 0, 2], [2, 2], "FP16"), inp("labels", [0, 1], [2], "INT8")]},
    ),
    (
        "/v2/models/calibration/infer",
        {"inputs": [inp("logits", [-65520.0, 0, 0, 2], [2, 2], "FP16"), inp("labels", [0, 1], [2], "INT8")]},
    ),
    (
        "/v1/monitors/m/observations",
        {"inputs": [inp("logits", [2**32, 0, 0, 2], [2, 2], "UINT32")]},
    ),
    (
        "/v1/monitors/m/observations",
        {"inputs": [inp("logits", [2**32 - 1, 0, 0, 2], [2, 2], "UINT32")]},
    ),
    # a divergence's log base: "e" or a number > 0 other than 1
    ("/v1/divergence", {"p_probs": P, "q_probs": P, "base": 1.0}),
    ("/v1/divergence", {"p_probs": P, "q_probs": P, "base": 1.5}),
    # options across fields
    ("/v1/cross-entropy", {"logits": L, "labels": [0, 1], "multilabel": True}),
    ("/v1/cross-entropy", {"logits": L, "targets": P, "multilabel": True}),
    ("/v1/cross-entropy", {"logits": L, "targets": P, "multilabel": True, "words": [1, 1]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "mask": [True, True]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "preset": "sklearn", "n_bins": 5}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": "edges", "edges": [0, 0.5, 1]}),
    ("/v1/calibration", {"logits": L, "targets": P}),
    ("/v1/calibration", {"logits": L, "targets": P, "multilabel": True, "classes": ["a", "b"]}),
    ("/v1/calibration", {"logits": L, "targets": P, "multilabel": True, "bootstrap": {"n": 10}}),
    ("/v1/calibration", {"logits": L, "targets": P, "multilabel": True, "pos_label": 1}),
    ("/v1/calibration", {"logits": L, "targets": P, "multilabel": True, "metrics": ["accuracy"]}),
    ("/v1/calibration", {"logits": L, "targets": P, "multilabel": True, "metrics": ["ece", "ace_nixon"]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "metrics": ["accuracy"]}),
    (
        "/v2/models/calibration/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("targets", [1.0, 0, 0, 1], [2, 2])],
            "parameters": {"multilabel": True, "metrics": ["ks"]},
        },
    ),
    # `binning: "edges"` needs `edges`; `edges` take no other binning and no preset
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": "edges"}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": "edges", "edges": None}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": "uniform", "edges": [0, 0.5, 1]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": None, "edges": [0, 0.5, 1]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "binning": "uniform", "edges": None}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "preset": "netcal", "edges": [0, 0.5, 1]}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "binning": "edges"}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "edges": [0, 0.5, 1]}),
    (
        "/v2/models/calibration/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")],
            "parameters": {"binning": "edges"},
        },
    ),
    (
        "/v2/models/calibration/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")],
            "parameters": {"edges": [0, 0.5, 1]},
        },
    ),
    # string classes take no ignore_index; integer ones do
    ("/v1/calibration", {"logits": L, "labels": ["a", "b"], "classes": ["a", "b"], "ignore_index": -100}),
    ("/v1/calibration", {"logits": L, "labels": [3, 4], "classes": [3, 4], "ignore_index": -100}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "pos_label": None}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "multilabel": False}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "multilabel": None, "target": None}),
    # multilabel predictions are N×K; B×T×K sequences refuse the options they have no form for
    ("/v1/calibration", {"logits": [0.5, -1.0], "targets": [[1, 0], [0, 1]], "multilabel": True}),
    ("/v1/calibration", {"logits": tensor([0.5, -1.0], [2]), "targets": P, "multilabel": True}),
    ("/v1/calibration", {"logits": tensor([0.5, -1, 1, 0], [2, 2]), "targets": P, "multilabel": True}),
    ("/v1/cross-entropy", {"probs": [0.5, 0.2], "targets": [[1, 0], [0, 1]], "multilabel": True}),
    ("/v1/cross-entropy", {"logits": SEQ, "labels": SEQ_LABELS, "classes": [0, 1]}),
    ("/v1/cross-entropy", {"logits": SEQ, "labels": SEQ_LABELS, "normalize": True}),
    ("/v1/cross-entropy", {"logits": SEQ, "labels": SEQ_LABELS, "normalize": False, "bytes": [3]}),
    ("/v1/cross-entropy", {"logits": SEQ, "targets": tensor([0.5] * 4, [1, 2, 2]), "bytes": [3]}),
    ("/v1/calibration", {"logits": SEQ, "labels": SEQ_LABELS, "sample_weight": [1.0, 1.0]}),
    ("/v1/calibration", {"logits": SEQ, "labels": SEQ_LABELS, "bootstrap": {"n": 10}}),
    ("/v1/calibration", {"logits": SEQ, "labels": SEQ_LABELS, "target": "positive_class"}),
    ("/v1/calibration", {"logits": SEQ, "labels": SEQ_LABELS, "target": "classwise"}),
    ("/v1/divergence", {"p_logits": SEQ, "q_logits": SEQ, "elementwise": True}),
    ("/v1/divergence", {"p_logits": SEQ, "q_logits": SEQ, "normalize": False}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "target": "classwise"}),
    ("/v1/reliability-diagram", {"logits": L, "labels": [0, 1], "target": "top_label"}),
    ("/v1/recalibrate", {"scores": [0.1, 0.9], "labels": [0, 1], "method": "beta"}),
    ("/v1/recalibrate", {"scores": [0.1, 0.9], "labels": [0, 1], "method": "platt"}),
    # integer datatypes hold integers as JSON Schema counts them: 1.0 is one
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2], "INT64"), inp("labels", [0.0, 1], [2], "INT8")]},
    ),
    (
        "/v2/models/calibration/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/calibration/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")],
            "parameters": {"multilabel": True},
        },
    ),
    (
        "/v2/models/recalibrate/infer",
        {
            "inputs": [inp("scores", [0.1, 0.9], [2]), inp("labels", [0, 1], [2], "INT64")],
            "parameters": {"method": "beta"},
        },
    ),
    # a temperature takes no raw `scores`; `mask` marks B×T×K tokens: refused with N×K predictions
    (
        "/v2/models/temperature/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")]},
    ),
    (
        "/v2/models/temperature/infer",
        {"inputs": [inp("scores", [1.0, 0, 0, 2, 1, 1], [2, 3]), inp("labels", [0, 1], [2], "INT64")]},
    ),
    ("/v1/temperature", {"logits": L, "labels": [0, 1], "mask": [[1, 1]]}),
    (
        "/v1/temperature",
        {
            "inputs": [
                inp("logits", [1.0, 0, 0, 2], [2, 2]),
                inp("labels", [0, 1], [2]),
                inp("mask", [1], [1]),
            ]
        },
    ),
    ("/v1/recalibrate", {"logits": L, "labels": [0, 1], "method": "vector", "mask": [[1, 1]]}),
    (
        "/v2/models/recalibrate/infer",
        {
            "inputs": [inp("scores", [0.1, 0.9], [2]), inp("labels", [0, 1], [2]), inp("mask", [1, 1], [2])],
            "parameters": {"method": "platt"},
        },
    ),
    ("/v1/apply", {"scores": [0.1, 0.9], "temperature": 1.0, "mask": [[1, 1]]}),
    ("/v1/apply", {"scores": [0.1, 0.9], "temperature": 1.0, "parameters": None}),
    # raw scores take maps fitted on them; logits and probs the others
    ("/v1/apply", {"scores": [0.1, 0.9], "parameters": {"method": "isotonic", "knots": [KNOTS]}}),
    (
        "/v1/apply",
        {"scores": [0.1, 0.9], "parameters": {"method": "isotonic", "knots": [KNOTS], "input": "scores"}},
    ),
    (
        "/v1/apply",
        {"probs": [0.1, 0.9], "parameters": {"method": "isotonic", "knots": [KNOTS], "input": "scores"}},
    ),
    ("/v1/apply", {"logits": [0.1, 0.9], "parameters": {"method": "sigmoid", "a": [1.0], "b": [0.0]}}),
    ("/v1/apply", {"scores": [0.1, 0.9], "parameters": {"method": "sigmoid", "a": [1.0], "b": [0.0]}}),
    # Platt and beta are binary: raw scores are then a vector (scores matrices have K ≥ 3)
    ("/v1/apply", {"scores": [[0.0, 0.5, 1.0]], "parameters": {"method": "platt", "a": 1.0, "b": 0.0}}),
    ("/v1/recalibrate", {"scores": [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], "labels": [0, 1], "method": "platt"}),
    (
        "/v1/recalibrate",
        {"scores": [[0.0, 0.5, 1.0], [1.0, 0.0, 0.5]], "labels": [0, 1], "method": "sigmoid"},
    ),
    ("/v1/apply", {"logits": L, "labels": [0, 1], "temperature": 1.0, "ignore_index": -100}),
    ("/v1/apply", {"logits": L, "labels": [0, 1], "temperature": 1.0, "ignore_index": None}),
    (
        "/v2/models/apply/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2])],
            "parameters": {"temperature": 1, "ignore_index": 0},
        },
    ),
    (
        "/v2/models/apply/infer",
        {"inputs": [inp("scores", [0.1, 0.9], [2])], "parameters": {"temperature": 1.0, "parameters": None}},
    ),
    ("/v1/apply", {"scores": [0.1, 0.9], "parameters": {"method": "platt", "a": 1.0, "b": 0.0}}),
    (
        "/v2/models/apply/infer",
        {"inputs": [inp("logits", L[0], [2]), inp("mask", [1], [1])], "parameters": {"temperature": 2}},
    ),
    # labels are typed as `classes`: names (strings) with string classes, else integers (2.0 too)
    ("/v1/reliability-diagram", {"logits": [0.0, 1.0], "labels": [0.0, 2.0], "classes": [0, 2]}),
    ("/v1/cross-entropy", {"logits": [0.0, 1.0], "labels": tensor([0, 1], [2]), "classes": [0, 1]}),
    ("/v1/cross-entropy", {"logits": [0.0, 1.0], "labels": tensor([0, 0.5], [2]), "classes": [0, 1]}),
    ("/v1/calibration", {"logits": L, "labels": ["a", "b"], "classes": ["a", "b"]}),
    ("/v1/calibration", {"logits": L, "labels": [0, 1], "classes": ["a", "b"]}),
    ("/v1/calibration", {"logits": L, "labels": tensor([0, 1], [2]), "classes": ["a", "b"]}),
    ("/v1/calibration", {"logits": L, "labels": ["a", "b"]}),
    ("/v1/temperature", {"logits": L, "labels": ["a", "b"], "classes": [0, 1]}),
    ("/v1/apply", {"logits": L, "labels": ["b", "a"], "classes": ["a", "b"], "temperature": 2.0}),
    (
        "/v2/models/calibration/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1], [2], "INT64")],
            "parameters": {"classes": ["a", "b"]},
        },
    ),
    (
        "/v2/models/cross-entropy/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("targets", [1.0, 0, 0, 1], [2, 2])],
            "parameters": {"classes": ["a", "b"]},
        },
    ),
    (
        "/v2/models/cross-entropy/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [0, 1.5], [2], "FP64")]},
    ),
    (
        "/v2/models/recalibrate/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [2, 2]), inp("labels", [3, 4], [2], "FP64")],
            "parameters": {"classes": [3, 4], "method": "temperature"},
        },
    ),
    # an isotonic map's knots are closed objects with x and y only (no `method` of their own)
    ("/v1/apply", {"probs": [0.2, 0.7], "parameters": {"method": "isotonic", "knots": [KNOTS]}}),
    (
        "/v1/apply",
        {"probs": [0.2, 0.7], "parameters": {"method": "isotonic", "knots": [{**KNOTS, "method": None}]}},
    ),
    (
        "/v2/models/apply/infer",
        {
            "inputs": [inp("probs", [0.2, 0.7], [2])],
            "parameters": {"parameters": {"method": "isotonic", "knots": [{**KNOTS, "method": "isotonic"}]}},
        },
    ),
    (
        "/v2/models/apply/infer",
        {
            "inputs": [inp("probs", [0.2, 0.7], [2])],
            "parameters": {"parameters": {"method": "isotonic", "knots": [KNOTS]}},
        },
    ),
    # logprobs documents
    ("/v1/logprobs", {"responses": [CHAT]}),
    ("/v1/logprobs", {"responses": []}),
    ("/v1/logprobs", {"responses": [{"foo": 1}]}),
    ("/v1/logprobs", {"responses": [[{"logprob": -1.0}]]}),
    ("/v1/logprobs", {"responses": [PROMPT]}),
    ("/v1/logprobs", {"responses": [PROMPT], "prompt_token_ids": [[1, 12]]}),
    ("/v1/logprobs", {"responses": [{**PROMPT, "prompt_token_ids": [1, 12]}]}),
    ("/v1/logprobs", {"response": {"choices": [{"logprobs": {"token_logprobs": None}}]}}),
    # what `use` reads: "sampled" every choice's logprobs, "prompt" a prompt_logprobs somewhere
    ("/v1/logprobs", {"response": CHAT, "use": "sampled"}),
    ("/v1/logprobs", {"response": CHAT, "use": "prompt"}),
    ("/v1/logprobs", {"response": {"choices": [{**PROMPT, "prompt_token_ids": [1, 12]}]}, "use": "prompt"}),
    ("/v1/logprobs", {"response": {"choices": [{**PROMPT, "prompt_token_ids": [1, 12]}]}, "use": "sampled"}),
    ("/v1/logprobs", {"response": {**PROMPT, "prompt_token_ids": [1, 12], "choices": []}, "use": "prompt"}),
    ("/v1/logprobs", {"response": {**PROMPT, "prompt_token_ids": [1, 12], "choices": []}, "use": "sampled"}),
    (
        "/v1/logprobs",
        {"response": {**PROMPT, "prompt_token_ids": [1, 12], "choices": CHAT["choices"]}, "use": "sampled"},
    ),
    ("/v1/monitors/m/sequences", {"responses": [CHAT], "use": "sampled"}),
    (
        "/v1/logprobs",
        {
            "response": {"choices": [{**PROMPT, "prompt_token_ids": [1, 12], "logprobs": {}}]},
            "use": "sampled",
        },
    ),
    ("/v1/monitors/m/sequences", {"responses": [{"choices": [{"logprobs": None}]}], "use": "sampled"}),
    # a chat token's bytes: a list (a string or object is refused, not counted by its length)
    ("/v1/logprobs", {"responses": [[{"token": "a", "logprob": -1.0, "bytes": {}, "top_logprobs": []}]]}),
    ("/v1/logprobs", {"responses": [[{"token": "a", "logprob": -1.0, "bytes": "ab", "top_logprobs": []}]]}),
    # log-probabilities are at most 0 (within 1e-4 of slack for printing)
    ("/v1/logprobs", {"responses": [[{"token": "a", "logprob": 1.5, "bytes": [97], "top_logprobs": []}]]}),
    ("/v1/logprobs", {"responses": [[{"token": "a", "logprob": 5e-5, "bytes": [97], "top_logprobs": []}]]}),
    (
        "/v1/logprobs",
        {"responses": [{"prompt_logprobs": [None, {"12": {"logprob": 0.5}}]}], "prompt_token_ids": [[1, 12]]},
    ),
    # a legacy completion's token_logprobs: null only first (an echoed prompt)
    ("/v1/logprobs", {"response": {"choices": [{"logprobs": {"token_logprobs": [None, -1.0, -0.5]}}]}}),
    ("/v1/logprobs", {"response": {"choices": [{"logprobs": {"token_logprobs": [-1.0, None]}}]}}),
    # a monitor's sequences: a logprobs body or B×T×K sequences
    ("/v1/monitors/m/sequences", {"responses": [CHAT]}),
    ("/v1/monitors/m/sequences", {"segment": "a"}),
    ("/v1/monitors/m/sequences", {"logits": [[[1.0, 2.0], [0.5, 0.1]]], "labels": [[0, 1]]}),
    (
        "/v1/monitors/m/sequences",
        {"logits": [[[1.0, 2.0], [0.5, 0.1]]], "labels": [[0, 1]], "per_sequence": True},
    ),
    ("/v1/monitors/m/sequences", {"responses": [CHAT], "labels": [[0]]}),
    ("/v1/monitors/m/sequences", {"responses": [{**PROMPT, "prompt_token_ids": True}]}),  # was a 500
    ("/v1/temperature", {"logits": L, "labels": tensor([0, 1], [2], "INT64")}),
    # /v1/temperature takes B×T×K token logits with B×T labels, without the options they refuse
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS}),
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS, "mask": tensor([1, 1], [1, 2], "INT8")}),
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS, "normalize": True}),
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS, "return_probs": True}),
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS, "sample_weight": [1.0]}),
    ("/v1/temperature", {"logits": SEQ, "labels": SEQ_LABELS, "classes": [0, 1]}),
    (
        "/v2/models/temperature/infer",
        {"inputs": [inp("logits", [1.0, 0, 0, 2], [1, 2, 2]), inp("labels", [0, 1], [1, 2], "INT64")]},
    ),
    # ... and /v1/recalibrate, with a temperature only
    ("/v1/recalibrate", {"logits": SEQ, "labels": SEQ_LABELS, "method": "temperature"}),
    ("/v1/recalibrate", {"logits": SEQ, "labels": SEQ_LABELS, "method": "vector"}),
    ("/v1/recalibrate", {"logits": SEQ, "labels": SEQ_LABELS, "method": "temperature", "normalize": True}),
    (
        "/v1/recalibrate",
        {"logits": SEQ, "labels": SEQ_LABELS, "method": "temperature", "mask": tensor([1, 0], [1, 2])},
    ),
    (
        "/v2/models/recalibrate/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [1, 2, 2]), inp("labels", [0, 1], [1, 2], "INT64")],
            "parameters": {"method": "temperature"},
        },
    ),
    (
        "/v2/models/recalibrate/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [1, 2, 2]), inp("labels", [0, 1], [1, 2], "INT64")],
            "parameters": {"method": "isotonic"},
        },
    ),
    (
        "/v2/models/temperature/infer",
        {
            "inputs": [inp("logits", [1.0, 0, 0, 2], [1, 2, 2]), inp("labels", [0, 1], [1, 2], "INT64")],
            "parameters": {"return_probs": True},
        },
    ),
    # a validation's seed is numpy.random.default_rng's: non-negative (a negative one was a 500)
    *(
        ("/v1/recalibrate", {"logits": L, "labels": [0, 1], "method": "temperature", "validation": v})
        for v in ({"folds": 2, "seed": -1}, {"holdout": 0.5, "seed": -5}, {"folds": 2, "seed": 3})
    ),
    # an inference request's `pos_label` needs `classes` (the contract test's draw: `classes: null`)
    *(
        (path, {"inputs": [inp("probs", [0.5, 0.25], [2]), inp("labels", [0, 1], [2], "INT64")], **extra})
        for path in (
            "/v2/models/temperature/infer",
            "/v2/models/cross-entropy/infer",
            "/v2/models/calibration/infer",
            "/v1/cross-entropy",
        )
        for extra in (
            {"parameters": {"pos_label": 1, "classes": None}},
            {"parameters": {"pos_label": -330763.0}},
            {"parameters": {"pos_label": None, "classes": None}},
        )
    ),
]


def _schema(path: str) -> dict:
    template = path.replace("/monitors/m/", "/monitors/{name}/")
    body = DOCUMENT["paths"][template]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**body, "components": DOCUMENT["components"]}


@pytest.mark.parametrize(("path", "body"), CASES, ids=[f"{i}-{p}" for i, (p, _) in enumerate(CASES)])
def test_the_document_and_the_server_agree(client, path, body):
    client.put("/v1/monitors/m", json={"n_classes": 2})
    valid = jsonschema.Draft202012Validator(_schema(path)).is_valid(body)
    response = client.post(path, json=body)
    assert response.status_code in (200, 422), response.text
    assert valid == (response.status_code == 200), (valid, response.text)


def test_an_overflowing_nll_is_answered_as_its_schema_says(client):
    """Finite logprobs whose sum passes float64's range: the NLLs are "Infinity", which the schema allows."""
    body = {"response": {"choices": [{"logprobs": {"token_logprobs": [-1e308] * 3}}]}, "per_sequence": True}
    response = client.post("/v1/logprobs", json=body)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["nll"] == answer["totals"]["nll"] == answer["per_sequence"]["nll"][0] == "Infinity"
    schema = {"$ref": "#/components/schemas/LogprobsResult", "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(schema).validate(answer)
