"""The typed chat reader of /v1/logprobs answers exactly as the generic path, or hands the body to it."""

import math

import numpy as np
import orjson
import pytest

import service.api.routes.logprobs as route
from service.api.formats.chat_logprobs import FAST_BYTES, read_chat
from tests.conftest import assert_problem
from tests.core.test_logprobs import _chat_response, _model, _truth

URL = "/v1/logprobs"
JSON = {"content-type": "application/json"}


def _big(rng, n_seq=60, length=40, k=5):
    logp, tokens = _model(rng, n_seq, length)
    return logp, tokens, _chat_response(logp, tokens, k=k)


def _post_both(client, monkeypatch, raw: bytes):
    """The answer through the typed reader, then through the generic path."""
    assert len(raw) >= FAST_BYTES
    fast = client.post(URL, content=raw, headers=JSON)
    monkeypatch.setattr(route, "FAST_BYTES", 1 << 62)
    generic = client.post(URL, content=raw, headers=JSON)
    monkeypatch.setattr(route, "FAST_BYTES", FAST_BYTES)
    return fast, generic


def test_fast_answer_equals_the_generic_one_and_the_truth(client, rng, monkeypatch):
    logp, tokens, response = _big(rng)
    response["choices"].reverse()  # sorted back by `index`, as the generic path does
    content = response["choices"][5]["logprobs"]["content"]
    content[3]["token"] = content[3]["top_logprobs"][0]["token"] = "a:b"  # a colon inside a token
    content[4]["logprob"] = -9999.0  # OpenAI's outside-the-top stand-in
    content[5]["bytes"] = None
    content[6]["top_logprobs"] = []
    response["usage"] = {"prompt_tokens": 3, "completion_tokens": 40}
    body = {"responses": [response, response], "vocab_size": 64, "context_length": 2, "per_sequence": True}
    raw = orjson.dumps(body)
    assert read_chat(raw, route.FIELDS) is not None  # the typed reader takes it
    fast, generic = _post_both(client, monkeypatch, raw)
    assert fast.status_code == 200, fast.text
    assert fast.json() == generic.json()
    # independent of both paths: NLL of the realised tokens from position 2 on, the sentinel left out
    lp = _truth(logp, tokens, first=2)[0]
    answer = fast.json()
    assert answer["n_outside_top"] == 2 and answer["n_tokens"] == 2 * (lp.size - 1)
    j = len(response["choices"]) - 1 - 5  # choice 5 of the reversed list has index j
    expected = -2 * (lp.sum() - lp[j, 4 - 2])
    assert answer["nll"] == pytest.approx(expected, rel=1e-12)
    assert answer["metrics"]["token_perplexity"] == pytest.approx(
        math.exp(expected / answer["n_tokens"]), rel=1e-12
    )


def test_bad_input_in_a_fast_body_has_the_generic_wording(client, rng, monkeypatch):
    _, _, response = _big(rng)
    entry = response["choices"][2]["logprobs"]["content"][7]
    entry["top_logprobs"] = [a for a in entry["top_logprobs"] if a["token"] != entry["token"]]
    entry["logprob"] = 0.0  # above every alternative, yet missing from them
    raw = orjson.dumps({"response": response})
    fast, generic = _post_both(client, monkeypatch, raw)
    pointer = "#/response/choices/2/logprobs/content/7/top_logprobs"
    assert assert_problem(fast, 422, pointer) == assert_problem(generic, 422, pointer)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda raw: raw.replace(b'"logprob":', b'"logprob":-1.0,"logprob":', 1), id="repeated key"
        ),
        pytest.param(lambda raw: raw.replace(b'"role":', b'"role":"x","role":', 1), id="repeat in message"),
        pytest.param(
            lambda raw: raw.replace(b'"token":', b'"extra":1,"token":', 1), id="unknown entry field"
        ),
        pytest.param(lambda raw: raw.replace(b'"logprob":', b'"logprob":null,"x":', 1), id="null logprob"),
        pytest.param(lambda raw: raw.replace(b'"t', b'"\\u003a', 1), id="escaped colon"),
        pytest.param(lambda raw: raw[:-1], id="invalid JSON"),
    ],
)
def test_doubtful_bodies_go_to_the_generic_path(client, rng, change):
    raw = change(orjson.dumps({"response": _big(rng)[2]}))
    assert read_chat(raw, route.FIELDS) is None


def test_repeated_key_in_a_large_body_is_still_400(client, rng):
    raw = orjson.dumps({"response": _big(rng)[2]}).replace(b'"token":', b'"token":"x","token":', 1)
    problem = assert_problem(client.post(URL, content=raw, headers=JSON), 400)
    assert "repeats the key 'token'" in problem["detail"]


def test_other_shapes_are_parsed_generically(rng):
    logp, tokens = _model(rng, 2, 3)
    legacy = {"choices": [{"logprobs": {"tokens": ["a"], "token_logprobs": [-1.0]}}]}
    assert read_chat(orjson.dumps({"response": legacy}), route.FIELDS) is None
    chat = _chat_response(logp, tokens, k=2)
    chat["prompt_logprobs"] = [None, {"1": {"logprob": -1.0, "rank": 1}}]
    assert read_chat(orjson.dumps({"response": chat}), route.FIELDS) is None
    del chat["prompt_logprobs"]
    assert read_chat(orjson.dumps({"response": chat, "use": "prompt"}), route.FIELDS) is None
    parsed = read_chat(orjson.dumps({"response": chat}), route.FIELDS)
    assert parsed is not None
    np.testing.assert_array_equal(parsed["response"].parsed.logprob, _truth(logp, tokens)[0].ravel())


@pytest.mark.parametrize(
    "options",
    [
        {"texts": ["a b:c"] * 60, "ranges": [[1, -1]] * 60},
        {"bytes": [10] * 60, "words": [3] * 60, "calibration": False},
    ],
)
def test_options_beside_a_fast_body_answer_as_the_generic_path(client, rng, monkeypatch, options):
    raw = orjson.dumps({"response": _big(rng)[2], **options})
    assert read_chat(raw, route.FIELDS) is not None
    fast, generic = _post_both(client, monkeypatch, raw)
    assert fast.status_code == 200, fast.text
    assert fast.json() == generic.json()


def test_the_reader_colon_checks_equal_plain_python_counts(rng):
    """The one-pass checks of the duplicate-key guard against ``bytes.count``, ``re`` and a walk."""
    import re

    from service.api.formats.chat_logprobs import _count_colons, _escaped_colon, _generic_colons

    bodies = [
        b'{"a": 1}',
        b'{"a": "x\\\\u003b", "b": "\\n"}',  # backslashes, no escaped colon
        b'{"a": "\\u003A"}',
        b'{"a": "\\\\u003a"}',  # an escaped backslash before u003a: still flagged
        b'{"a": "\\u003"}',  # cut short at the end of the body
        bytearray(b'{"k:": "v:w", "u": "\\u0030\\u003a"}'),
    ]
    for body in bodies:
        assert _escaped_colon(body) == (re.search(rb"\\u003[aA]", bytes(body)) is not None)
        assert _count_colons(body) == bytes(body).count(b":")

    def walk(value: object) -> int:
        if isinstance(value, dict):
            return sum(1 + key.count(":") + walk(v) for key, v in value.items())
        if isinstance(value, list):
            return sum(map(walk, value))
        return value.count(":") if isinstance(value, str) else 0

    values = [
        {"role": "assistant", "content": "a: b", "tool_calls": [{"id": "x:1", "args": {"k:k": None}}]},
        "10:30",
        [1.5, -2, True, None, {"": ""}],
        {"usage": {"prompt_tokens": int(rng.integers(1, 100)), "details": {}}},
    ]
    assert _generic_colons(values) == walk(values) == 14  # counted by hand: 9 + 1 + 1 + 3
