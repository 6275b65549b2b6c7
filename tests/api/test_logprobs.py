import math
import re

import numpy as np
import pytest

from tests.conftest import assert_problem
from tests.core.test_logprobs import VOCAB, _chat_response, _legacy_echo, _model, _truth, _vllm_prompt

URL = "/v1/logprobs"


def test_chat_completion_as_pasted(client, rng):
    logp, tokens = _model(rng, 4, 15)
    body = client.post(
        URL, json={"response": _chat_response(logp, tokens, k=5), "vocab_size": len(VOCAB)}
    ).json()
    lp, top1, h = _truth(logp, tokens)
    assert body["n_sequences"] == 4 and body["n_tokens"] == 60 and body["n_sampled"] == 60
    assert body["nll"] == pytest.approx(-lp.sum(), rel=1e-12)
    m = body["metrics"]
    assert m["token_perplexity"] == pytest.approx(math.exp(-lp.mean()), rel=1e-12)
    assert m["lm_eval_perplexity"] == pytest.approx(math.exp(-lp.sum(1).mean()), rel=1e-12)
    assert m["hf_mean_perplexity"] == pytest.approx(np.exp(-lp.mean(1)).mean(), rel=1e-12)
    assert m["bits_per_token"] == pytest.approx(-lp.mean() / math.log(2), rel=1e-12)
    assert m["accuracy"] == pytest.approx(top1.mean())
    n_bytes = sum(len(VOCAB[t]) for t in tokens.ravel())
    assert m["bits_per_byte"] == pytest.approx(-lp.sum() / n_bytes / math.log(2), rel=1e-12)
    assert body["entropy"]["mean_lower_bound"] <= h.mean() <= body["entropy"]["mean_upper_bound"]
    assert body["calibration"]["teacher_forced"] is False
    assert any("conditioned on the sample" in w for w in body["warnings"])
    assert "conditioned on the sample" in body["note"]
    np.testing.assert_allclose(body["per_sequence"]["nll"], -lp.sum(1), rtol=1e-12)
    assert body["per_sequence"]["path"][1] == "response.choices[1].logprobs"


def test_lm_eval_scoring_call_with_ranges(client, rng):
    logp, tokens = _model(rng, 3, 9)
    response = _legacy_echo(logp, tokens, k=1)
    ctxlen = 3
    expected = [sum(c["logprobs"]["token_logprobs"][ctxlen:-1]) for c in response["choices"]]
    body = client.post(URL, json={"responses": [response], "ranges": [[ctxlen, -1]] * 3}).json()
    np.testing.assert_allclose(body["per_sequence"]["nll"], -np.array(expected), rtol=1e-12)
    assert body["metrics"]["lm_eval_perplexity"] == pytest.approx(math.exp(-np.mean(expected)), rel=1e-12)
    assert body["n_teacher_forced"] == 15 and body["calibration"]["teacher_forced"] is True
    assert not any("conditioned on the sample" in w for w in body["warnings"])


def test_lm_eval_byte_and_word_perplexity_from_texts(client, rng):
    logp, tokens = _model(rng, 2, 6)
    response = _chat_response(logp, tokens, k=0)
    texts = ["Hello, wörld!", "a b\tc"]
    body = client.post(URL, json={"response": response, "texts": texts}).json()
    ll = _truth(logp, tokens)[0].sum(1)
    n_bytes = len(texts[0].encode()) + len(texts[1].encode())
    n_words = len(re.split(r"\s+", texts[0])) + len(re.split(r"\s+", texts[1]))
    # lm_eval.api.metrics: weighted_perplexity = exp(-weighted_mean), bits_per_byte = -weighted_mean / ln 2
    assert body["metrics"]["byte_perplexity"] == pytest.approx(math.exp(-ll.sum() / n_bytes), rel=1e-12)
    assert body["metrics"]["bits_per_byte"] == pytest.approx(-ll.sum() / n_bytes / math.log(2), rel=1e-12)
    assert body["metrics"]["word_perplexity"] == pytest.approx(math.exp(-ll.sum() / n_words), rel=1e-12)
    assert body["calibration"] is None and body["metrics"]["accuracy"] is None


def test_vllm_prompt_logprobs_chat_top_level_with_context_length(client, rng):
    logp, tokens = _model(rng, 1, 12)
    response = {
        "object": "chat.completion",
        "prompt_logprobs": _vllm_prompt(logp[0], tokens[0], k=2),
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}, "logprobs": None}],
    }
    body = client.post(
        URL, json={"response": response, "prompt_token_ids": [tokens[0].tolist()], "context_length": 5}
    ).json()
    lp, top1, _ = _truth(logp, tokens, first=5)
    assert body["nll"] == pytest.approx(-lp.sum(), rel=1e-12)
    assert body["totals"]["top1_hits"] == top1.sum()
    assert body["per_sequence"]["path"] == ["response.prompt_logprobs"]
    assert body["calibration"]["teacher_forced"] is True


def test_totals_merge_across_requests(client, rng):
    logp, tokens = _model(rng, 4, 7)
    whole = client.post(URL, json={"response": _chat_response(logp, tokens, k=3)}).json()
    parts = [
        client.post(URL, json={"response": _chat_response(logp[s], tokens[s], k=3)}).json()["totals"]
        for s in (slice(0, 1), slice(1, 4))
    ]
    for key in ("sequences", "tokens", "bytes", "top1_hits"):
        assert parts[0][key] + parts[1][key] == whole["totals"][key]
    for key in ("nll", "perplexity_sum"):
        assert parts[0][key] + parts[1][key] == pytest.approx(whole["totals"][key], rel=1e-14)


def test_sentinel_is_reported_and_bounded(client):
    content = [
        {
            "token": "a",
            "logprob": math.log(0.6),
            "bytes": [97],
            "top_logprobs": [{"token": "a", "logprob": math.log(0.6), "bytes": [97]}],
        },
        {
            "token": "z",
            "logprob": -9999.0,
            "bytes": [122],
            "top_logprobs": [{"token": "b", "logprob": math.log(0.9), "bytes": [98]}],
        },
    ]
    body = client.post(URL, json={"response": {"choices": [{"logprobs": {"content": content}}]}}).json()
    assert body["n_outside_top"] == 1 and body["n_tokens"] == 1
    assert body["nll"] == pytest.approx(-math.log(0.6))
    assert body["nll_lower_bound"] == pytest.approx(-math.log(0.6) - math.log(0.1))
    assert any("-9999.0" in w for w in body["warnings"])


@pytest.mark.parametrize(
    ("payload", "pointer", "match"),
    [
        (
            {
                "response": {
                    "choices": [
                        {
                            "logprobs": {
                                "content": [
                                    {"token": "a", "logprob": -0.1, "top_logprobs": []},
                                    {"token": "b", "logprob": None, "top_logprobs": []},
                                ]
                            }
                        }
                    ]
                }
            },
            "#/response/choices/0/logprobs/content/1/logprob",
            "null",
        ),
        (
            {
                "responses": [
                    {
                        "choices": [
                            {
                                "logprobs": {
                                    "content": [
                                        {"token": "a", "logprob": -0.1, "top_logprobs": []},
                                        {"token": "a", "logprob": -0.1, "top_logprobs": []},
                                        {"token": "a", "logprob": -0.1, "top_logprobs": []},
                                        {
                                            "token": "c",
                                            "logprob": -0.2,
                                            "top_logprobs": [{"token": "a", "logprob": -1.0}],
                                        },
                                    ]
                                }
                            }
                        ]
                    }
                ]
            },
            "#/responses/0/choices/0/logprobs/content/3/top_logprobs",
            "must contain the realised token",
        ),
        (
            {
                "response": {
                    "choices": [
                        {
                            "logprobs": {
                                "tokens": ["a", "b"],
                                "token_logprobs": [None, -1.0],
                                "top_logprobs": [None],
                                "text_offset": [0, 1],
                            }
                        }
                    ]
                }
            },
            "#/response/choices/0/logprobs/top_logprobs",
            "one entry per token_logprobs entry",
        ),
        (
            {"response": [None, {"7": {"logprob": -0.5, "rank": 1}}], "prompt_token_ids": [[1, 8]]},
            "#/response/1",
            "must contain the prompt token 8",
        ),
        (
            {"response": [{"token": "a", "logprob": -1.0}], "ranges": [[0, 1], [0, 1]]},
            "#/ranges",
            "per sequence",
        ),
        ({"response": [{"token": "a", "logprob": -1.0}], "texts": ["a", "b"]}, "#/texts", "one text per"),
        (
            {"response": [{"token": "a", "logprob": -1.0}], "context_length": 1, "ranges": [[0, 1]]},
            "#/ranges",
            "both",
        ),
        ({"ranges": [[0, 1]]}, "#/responses", "neither"),
        ({"response": [{"token": "a", "logprob": -1.0}], "surprise": 1}, "#/surprise", None),
    ],
)
def test_bad_logprobs_are_problem_json_naming_the_path(client, payload, pointer, match):
    problem = assert_problem(client.post(URL, json=payload), 422)
    assert problem["errors"][0]["pointer"] == pointer
    if match:
        assert match in problem["detail"]


def test_calibration_asked_without_alternatives_warns(client):
    body = client.post(URL, json={"response": [{"token": "a", "logprob": -1.0}], "calibration": True}).json()
    assert body["calibration"] is None
    assert any("no top_logprobs" in w for w in body["warnings"])


def test_large_body_with_a_repeated_key_deep_inside_is_400(client, rng):
    """Past WALK_COLONS the duplicate-key count comes from orjson.dumps: a repeat still shows."""
    import gc

    import orjson

    logp, tokens = _model(rng, 40, 30)
    raw = orjson.dumps({"response": _chat_response(logp, tokens, k=5)})
    assert raw.count(b":") > 4096 and len(raw) < 1 << 20
    assert client.post(URL, content=raw, headers={"content-type": "application/json"}).status_code == 200
    doubled = raw.replace(b'"logprob":', b'"logprob":-1.0,"logprob":', 1)
    problem = assert_problem(
        client.post(URL, content=doubled, headers={"content-type": "application/json"}), 400
    )
    assert "repeats the key 'logprob'" in problem["detail"]
    big = orjson.dumps({"response": _chat_response(*_model(rng, 200, 60), k=5)})
    assert len(big) > 1 << 20  # decoded with the collector paused, and it is running again after
    assert client.post(URL, content=big, headers={"content-type": "application/json"}).status_code == 200
    assert gc.isenabled()
