"""One small, valid request per endpoint: published in the OpenAPI document and posted by the tests.

The /v2 (Open Inference Protocol) examples are the same requests as inference requests: each
array an input tensor named by its role, every other field a request parameter.
"""

from typing import Any

_LOGITS = [[2.0, 0.5, -1.0], [0.1, 1.2, 0.3], [1.5, -0.5, 0.2], [0.3, 0.2, 2.2], [0.0, 1.0, 1.1]]
_LABELS = [0, 1, 2, 2, 1]

#: A JSON request body per /v1 scoring endpoint (the path after ``/v1/``).
V1: dict[str, dict[str, Any]] = {
    "cross-entropy": {"logits": _LOGITS, "labels": _LABELS},
    "divergence": {
        "p_probs": [[0.7, 0.2, 0.1], [0.1, 0.6, 0.3]],
        "q_logits": [[1.0, 0.0, -1.0], [0.0, 1.0, 0.5]],
    },
    "calibration": {
        "probs": [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9], [0.45, 0.55]],
        "labels": [0, 1, 1, 1, 0],
        "n_bins": 5,
    },
    "reliability-diagram": {
        "probs": [[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9], [0.45, 0.55]],
        "labels": [0, 1, 1, 1, 0],
        "n_bins": 5,
    },
    "temperature": {"logits": _LOGITS, "labels": _LABELS},
    "recalibrate": {"method": "temperature", "logits": _LOGITS, "labels": _LABELS},
    "apply": {"logits": _LOGITS[:2], "temperature": 1.5},
    "logprobs": {
        "response": {
            "choices": [
                {
                    "logprobs": {
                        "content": [
                            {"token": "Hi", "logprob": -0.5, "bytes": [72, 105], "top_logprobs": []},
                            {"token": "!", "logprob": -1.5, "bytes": [33], "top_logprobs": []},
                        ]
                    }
                }
            ]
        }
    },
    "monitors/{name}": {"n_classes": 3},
    "monitors/{name}/observations": {"logits": _LOGITS, "labels": [0, 1, -1, 2, -1], "ids": list("abcde")},
    "monitors/{name}/labels": {"ids": ["c", "e"], "labels": [2, 1]},
}
V1["monitors/{name}/sequences"] = {**V1["logprobs"], "segment": "v1"}

_DATATYPES = {int: "INT64", float: "FP64"}


def inference_request(body: dict[str, Any], arrays: tuple[str, ...]) -> dict[str, Any]:
    """`body` as an OIP inference request: the `arrays` fields as tensors, the rest as parameters."""
    inputs = []
    for name in arrays:
        if name not in body:
            continue
        value = body[name]
        rows = value if isinstance(value[0], list) else [value]
        flat = [v for row in rows for v in row]
        shape = [len(value), len(value[0])] if isinstance(value[0], list) else [len(value)]
        inputs.append({"name": name, "shape": shape, "datatype": _DATATYPES[type(flat[0])], "data": flat})
    request: dict[str, Any] = {"id": "example-1", "inputs": inputs}
    parameters = {k: v for k, v in body.items() if k not in arrays}
    if parameters:
        request["parameters"] = parameters
    return request
