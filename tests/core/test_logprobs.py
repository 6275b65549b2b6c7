import math

import numpy as np
import pytest
from scipy.special import log_softmax
from scipy.stats import entropy

from service.core import InputError
from service.core.language.logprob_metrics import score_logprobs, top1_calibration
from service.core.language.logprobs import parse_logprobs

V = 40  # vocabulary of the hand-built model
VOCAB = [f"t{i}" for i in range(V)]


def _model(rng, n_seq, length):
    """Full next-token distributions and realised tokens: the ground truth the payloads are cut from."""
    logp = log_softmax(2.5 * rng.standard_normal((n_seq, length, V)), axis=-1)
    tokens = rng.integers(0, V, (n_seq, length))
    return logp, tokens


def _chat_response(logp, tokens, k):
    choices = []
    for i in range(logp.shape[0]):
        content = []
        for j in range(logp.shape[1]):
            top = np.argsort(-logp[i, j])[:k]
            t = int(tokens[i, j])
            content.append(
                {
                    "token": VOCAB[t],
                    "logprob": float(logp[i, j, t]),
                    "bytes": list(VOCAB[t].encode()),
                    "top_logprobs": [
                        {"token": VOCAB[c], "logprob": float(logp[i, j, c]), "bytes": list(VOCAB[c].encode())}
                        for c in top
                    ],
                }
            )
        choices.append(
            {"index": i, "message": {"role": "assistant", "content": ""}, "logprobs": {"content": content}}
        )
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "m", "choices": choices}


def _legacy_echo(logp, tokens, k):
    """Completions with echo=True, max_tokens=1: the prompt's first position is null."""
    choices = []
    for i in range(logp.shape[0]):
        toks = [VOCAB[int(t)] for t in tokens[i]]
        lps = [None] + [float(logp[i, j, tokens[i, j]]) for j in range(1, logp.shape[1])]
        tops = [None] + [
            {VOCAB[c]: float(logp[i, j, c]) for c in np.argsort(-logp[i, j])[:k]}
            for j in range(1, logp.shape[1])
        ]
        offsets = list(np.cumsum([0] + [len(t) for t in toks[:-1]]).tolist())
        choices.append(
            {
                "index": i,
                "text": "".join(toks),
                "logprobs": {
                    "tokens": toks,
                    "token_logprobs": lps,
                    "top_logprobs": tops,
                    "text_offset": offsets,
                },
                "finish_reason": "length",
            }
        )
    return {"id": "cmpl-1", "object": "text_completion", "choices": choices}


def _vllm_prompt(logp, tokens, k):
    """vLLM prompt_logprobs: null, then {token_id: {logprob, rank, decoded_token}} with the prompt token."""
    out = [None]
    for j in range(1, logp.shape[0]):
        order = np.argsort(-logp[j])
        ranks = np.empty(V, int)
        ranks[order] = np.arange(1, V + 1)
        keep = set(order[:k].tolist()) | {int(tokens[j])}
        out.append(
            {
                str(c): {"logprob": float(logp[j, c]), "rank": int(ranks[c]), "decoded_token": VOCAB[c]}
                for c in sorted(keep)
            }
        )
    return out


def _truth(logp, tokens, first=0, stop=None):
    lp = np.take_along_axis(logp, tokens[..., None], -1)[..., 0][:, first:stop]
    top1 = (logp.argmax(-1) == tokens)[:, first:stop]
    h = -(np.exp(logp) * logp).sum(-1)[:, first:stop]
    return lp, top1, h


def test_chat_completions_nll_accuracy_and_entropy_bounds(rng):
    logp, tokens = _model(rng, 3, 12)
    scores = score_logprobs(parse_logprobs([_chat_response(logp, tokens, k=5)]), vocab_size=V)
    lp, top1, h = _truth(logp, tokens)
    np.testing.assert_allclose(scores.sequence_nll, -lp.sum(1), rtol=1e-12)
    assert list(scores.sequence_tokens) == [12, 12, 12]
    m = scores.totals.metrics()
    assert m["token_perplexity"] == pytest.approx(math.exp(-lp.mean()), rel=1e-12)
    assert m["accuracy"] == pytest.approx(top1.mean())
    n_bytes = sum(len(VOCAB[t]) for t in tokens.ravel())
    assert m["bits_per_byte"] == pytest.approx(-lp.sum() / math.log(2) / n_bytes)
    # truncated entropy with a "rest" bucket: a lower bound; the rest spread over unseen tokens: an upper one
    assert (scores.entropy_lower <= h.ravel() + 1e-12).all()
    assert (h.ravel() <= scores.entropy_upper + 1e-12).all()
    np.testing.assert_array_equal(scores.correct, top1.ravel())
    np.testing.assert_allclose(scores.confidence, np.exp(logp.max(-1)).ravel(), rtol=1e-12)


def test_truncated_entropy_matches_scipy_on_known_mass_plus_rest():
    content = [
        {
            "token": "a",
            "logprob": math.log(0.5),
            "top_logprobs": [
                {"token": "a", "logprob": math.log(0.5)},
                {"token": "b", "logprob": math.log(0.3)},
            ],
        }
    ]
    scores = score_logprobs(parse_logprobs([content]), vocab_size=7)
    assert scores.entropy_lower[0] == pytest.approx(entropy([0.5, 0.3, 0.2]), rel=1e-12)
    assert scores.entropy_upper[0] == pytest.approx(entropy([0.5, 0.3] + [0.04] * 5), rel=1e-12)


def test_legacy_echo_scoring_call_matches_lm_eval_harness(rng):
    logp, tokens = _model(rng, 2, 10)
    response = _legacy_echo(logp, tokens, k=1)
    ctxlen = 4
    # lm-evaluation-harness (openai_completions.parse_logprobs): sum(token_logprobs[ctxlen:-1]) and is_greedy
    expected = [sum(c["logprobs"]["token_logprobs"][ctxlen:-1]) for c in response["choices"]]
    greedy = [
        all(
            t == max(top.values())
            for t, top in zip(
                c["logprobs"]["token_logprobs"][ctxlen:-1],
                c["logprobs"]["top_logprobs"][ctxlen:-1],
                strict=True,
            )
        )
        for c in response["choices"]
    ]
    parsed = parse_logprobs([response])
    assert parsed.teacher_forced.all()  # echoed prompt
    scores = score_logprobs(parsed, ranges=[[ctxlen, -1]] * 2)
    np.testing.assert_allclose(-scores.sequence_nll, expected, rtol=1e-12)
    assert list(scores.sequence_tokens) == [5, 5]
    hits = scores.totals.hits[1]
    assert (hits == 10) == all(greedy)
    m = scores.totals.metrics()
    assert m["lm_eval_perplexity"] == pytest.approx(math.exp(-np.mean(expected)), rel=1e-12)


def test_legacy_first_null_is_not_scored_and_counted(rng):
    logp, tokens = _model(rng, 1, 6)
    scores = score_logprobs(parse_logprobs([_legacy_echo(logp, tokens, k=2)["choices"][0]["logprobs"]]))
    assert scores.n_unconditioned == 1 and scores.sequence_tokens[0] == 5
    lp, _, _ = _truth(logp, tokens, first=1)
    assert scores.sequence_nll[0] == pytest.approx(-lp.sum(), rel=1e-12)


@pytest.mark.parametrize("where", ["choice", "top"])
def test_vllm_prompt_logprobs_with_ranks(rng, where):
    logp, tokens = _model(rng, 1, 9)
    entries = _vllm_prompt(logp[0], tokens[0], k=3)
    ids = tokens[0].tolist()
    if where == "choice":
        response = {
            "object": "text_completion",
            "choices": [{"index": 0, "text": "", "prompt_logprobs": entries, "logprobs": None}],
        }
    else:
        response = {
            "object": "chat.completion",
            "prompt_logprobs": entries,
            "choices": [{"index": 0, "message": {"content": ""}, "logprobs": None}],
        }
    parsed = parse_logprobs([response], prompt_token_ids=[ids])
    assert parsed.teacher_forced.all() and parsed.unconditioned[0]
    scores = score_logprobs(parsed, ranges=[[2, None]], vocab_size=V)
    lp, top1, h = _truth(logp, tokens, first=2)
    assert scores.sequence_nll[0] == pytest.approx(-lp.sum(), rel=1e-12)
    assert scores.totals.hits[1] == top1.sum()
    assert (scores.entropy_lower <= h.ravel() + 1e-12).all() and (
        h.ravel() <= scores.entropy_upper + 1e-12
    ).all()


def test_vllm_prompt_token_ids_from_the_response(rng):
    logp, tokens = _model(rng, 1, 5)
    choice = {
        "index": 0,
        "prompt_logprobs": _vllm_prompt(logp[0], tokens[0], k=1),
        "prompt_token_ids": tokens[0].tolist(),
    }
    scores = score_logprobs(parse_logprobs([{"choices": [choice]}]))
    assert scores.sequence_nll[0] == pytest.approx(-_truth(logp, tokens, first=1)[0].sum(), rel=1e-12)


def test_sentinel_is_counted_never_used_and_bounded():
    content = [
        {
            "token": "a",
            "logprob": math.log(0.6),
            "top_logprobs": [
                {"token": "a", "logprob": math.log(0.6)},
                {"token": "b", "logprob": math.log(0.3)},
            ],
        },
        {
            "token": "z",
            "logprob": -9999.0,
            "top_logprobs": [
                {"token": "a", "logprob": math.log(0.7)},
                {"token": "b", "logprob": math.log(0.25)},
            ],
        },
    ]
    scores = score_logprobs(parse_logprobs([content]))
    assert scores.n_outside_top == 1 and scores.sequence_tokens[0] == 1
    assert scores.sequence_nll[0] == pytest.approx(-math.log(0.6))
    # z is outside the top: p(z) ≤ min(0.25, 1 - 0.95) = 0.05, so its NLL is at least -log 0.05
    assert scores.nll_lower_bound == pytest.approx(-math.log(0.6) - math.log(0.05))


def test_calibration_of_top1_matches_hand_binning():
    conf = np.array([0.95, 0.95, 0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 1, 1, 0, 1, 0], bool)
    c = top1_calibration(conf, correct)
    # 15 bins: (0.9333, 1] holds 4 with accuracy 0.75; (0.5333, 0.6] holds 2 with accuracy 0.5
    assert c["ece"] == pytest.approx(4 / 6 * 0.2 + 2 / 6 * 0.05)
    assert c["mce"] == pytest.approx(0.2)
    assert c["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    ("payload", "kwargs", "path"),
    [
        (
            [{"token": "a", "logprob": -1.0}, {"token": "b", "logprob": None}],
            {},
            r"responses\[0\]\[1\]\.logprob",
        ),
        ([{"token": "a", "logprob": "x"}], {}, r"responses\[0\]\[0\]\.logprob"),
        ([{"token": "a"}], {}, r"responses\[0\]\[0\]\.logprob` is required"),
        (
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
            },
            {},
            r"responses\[0\]\.choices\[0\]\.logprobs\.content\[3\]\.top_logprobs` must contain the realised",
        ),
        (
            {"tokens": ["a", "b"], "token_logprobs": [-1.0]},
            {},
            r"responses\[0\]\.tokens` must have one entry",
        ),
        (
            {"tokens": ["a", "b"], "token_logprobs": [-1.0, None]},
            {},
            r"token_logprobs\[1\]` must be a number",
        ),
        (
            [None, {"5": {"logprob": -1.0, "rank": 1}}],
            {"prompt_token_ids": [[1, 6]]},
            r"responses\[0\]\[1\]` must contain the prompt token 6",
        ),
        (
            [None, {"5": {"logprob": -1.0, "rank": 1}}, None],
            {"prompt_token_ids": [[1, 5, 2]]},
            r"responses\[0\]\[2\]` must not be null",
        ),
        (
            [None, {"5": {"logprob": -1.0, "rank": 1}}],
            {"prompt_token_ids": [[5]]},
            r"one entry per prompt token",
        ),
        ([None, {"5": {"logprob": -1.0, "rank": 1}}], {}, r"`prompt_token_ids` must be sent"),
        ([{"token": "a", "logprob": 0.5}], {}, r"responses\[0\]\[0\]\.logprob` must be a log-probability"),
        (
            [
                {
                    "token": "a",
                    "logprob": -0.1,
                    "top_logprobs": [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -0.2}],
                }
            ],
            {},
            r"\[0\]\.top_logprobs` must hold probabilities summing to at most 1",
        ),
        ("text", {}, r"`responses\[0\]` must be a response object"),
    ],
)
def test_bad_logprobs_name_the_field_path(payload, kwargs, path):
    with pytest.raises(InputError, match=path):
        score_logprobs(parse_logprobs([payload], **kwargs))


def test_ranges_must_be_one_per_sequence(rng):
    logp, tokens = _model(rng, 2, 4)
    parsed = parse_logprobs([_chat_response(logp, tokens, k=0)])
    with pytest.raises(InputError, match=r"`ranges` must hold one \[start, stop\] per sequence \(2\)"):
        score_logprobs(parsed, ranges=[[0, 1]])
    scores = score_logprobs(parsed)
    assert (
        scores.totals.hits == {} and scores.confidence.size == 0
    )  # no alternatives: no accuracy, no calibration
    assert scores.n_sampled == 8 and scores.n_teacher_forced == 0
