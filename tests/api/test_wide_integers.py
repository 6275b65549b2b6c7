"""Integers past 2**53 in an integer tensor's JSON data are read exactly, floats beside them or not.

A float64 array rounds 9223372036854775806 up to 2**63, which no longer fits INT64: the value, valid
for the document, was refused (met by the contract test's draws, 2026-12-06)."""

import numpy as np
import pytest
import scipy.special as sp

from tests.conftest import assert_problem

TOP = 2**63 - 1


@pytest.mark.parametrize("big", [TOP - 1, TOP, -(2**63)])
@pytest.mark.parametrize("small", [-133898.0, -133898])  # a float beside it makes the array float64
def test_int64_logits_past_2_53_are_read_exactly(client, big, small):
    data = [[small, big], [1, 2]]
    body = {
        "inputs": [
            {
                "name": "logits",
                "datatype": "INT64",
                "shape": [2, 2],
                "data": data,
                "parameters": {"role": "logits"},
            }
        ],
        "parameters": {"temperature": 2.0},
    }
    answer = client.post("/v2/models/apply/infer", json=body)
    assert answer.status_code == 200, answer.text
    probs = next(o for o in answer.json()["outputs"] if o["name"] == "probs")["data"]
    # the logits as INT64 holds them, then as float64 (the map's dtype for integer input)
    logits = np.array([[int(small), big], [1, 2]], dtype=np.int64).astype(np.float64)
    assert probs == pytest.approx(sp.softmax(logits / 2.0, axis=1).ravel().tolist(), rel=1e-15, abs=0)


# (orjson reads an integer below -2**63 as a float: -2**63 - 1 arrives as -2**63, which fits)
@pytest.mark.parametrize(("value", "index"), [(2**63, 1), (2**64 - 1, 1)])
def test_int64_logits_beyond_its_range_are_refused_naming_the_value(client, value, index):
    body = {
        "inputs": [
            {
                "name": "logits",
                "datatype": "INT64",
                "shape": [2, 2],
                "data": [[0.0, value], [1, 2]],
                "parameters": {"role": "logits"},
            }
        ],
        "parameters": {"temperature": 2.0},
    }
    problem = assert_problem(client.post("/v2/models/apply/infer", json=body), 422)
    assert f"must fit INT64; got {value}" in problem["detail"]
    assert problem["errors"][0]["pointer"] == f"#/inputs/0/data/{index}"
