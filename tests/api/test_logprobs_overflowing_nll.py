"""Sequences whose NLLs together pass float64's range: an infinite total, as one such sequence's is.

The contract test met it as a 500 on POST /v1/monitors/{name}/sequences (the total's sum warned,
an error under the tests' warnings-as-errors; production answered "Infinity" with a warning).
"""

import math

from service.core.language.perplexity import PerplexityTotals

BIG = 1.5e308  # one sequence's NLL is finite; two of them sum past float64's largest, ~1.80e308


def _chat(logprob: float) -> dict:
    token = {"token": "a", "logprob": logprob, "bytes": [97], "top_logprobs": []}
    return {"choices": [{"logprobs": {"content": [token]}}]}


def test_totals_past_the_range_are_infinite_without_a_warning():
    totals = PerplexityTotals.from_sequences([BIG, BIG], [1, 1])
    assert totals.nll == math.inf and totals.perplexity_sum == math.inf
    assert (totals.sequences, totals.tokens) == (2, 2)


def test_logprobs_answers_an_infinite_total_with_each_sequence_finite(client):
    response = client.post("/v1/logprobs", json={"responses": [_chat(-BIG), _chat(-BIG)]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["nll"] == "Infinity" and answer["metrics"]["nll_per_token"] == "Infinity"
    assert answer["per_sequence"]["nll"] == [BIG, BIG]


def test_a_monitor_records_such_sequences(client):
    client.put("/v1/monitors/lm", json={"n_classes": 2}).raise_for_status()
    response = client.post("/v1/monitors/lm/sequences", json={"responses": [_chat(-BIG), _chat(-BIG)]})
    assert response.status_code == 200, response.text
    assert response.json()["n_sequences"] == 2
    total = client.get("/v1/monitors/lm/perplexity").json()["total"]
    assert total["n_sequences"] == 2 and total["n_tokens"] == 2
    assert total["nll"] == total["nll_per_token"] == total["token_perplexity"] == "Infinity"
