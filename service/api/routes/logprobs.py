"""``POST /v1/logprobs``: score the token logprobs that LLM servers return."""

from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, RawBody, parsed_body, scoring
from service.api.formats.arrays import ArrayReader
from service.api.formats.chat_logprobs import FAST_BYTES, ParsedChat, read_chat
from service.api.formats.inputs import Body
from service.api.formats.payload import collector_paused
from service.api.schemas.logprobs import (
    LanguageModelMetrics,
    LogprobsBody,
    LogprobsOptions,
    LogprobsResult,
    MergeableTotals,
    SequenceScores,
    Top1Calibration,
    TruncatedEntropy,
)
from service.settings import Settings

from . import PROBLEM_RESPONSES, REQUEST_MODELS, json_response

router = APIRouter(prefix="/v1", tags=["language models"])

RAW_FIELDS = ("responses", "response", "prompt_token_ids", "texts")
REQUEST_MODELS.append(LogprobsBody)
#: Every top-level field of a request besides `response(s)`: what the fast chat reader decodes.
FIELDS = tuple(sorted({*LogprobsOptions.model_fields, *RAW_FIELDS}))


def parse_logprobs_body(request: Request, raw: RawBody, settings: Settings) -> Body:
    """A large JSON body of chat completions through the typed reader; anything else as usual."""
    if raw.kind == "json" and len(raw.data) >= FAST_BYTES:
        assert isinstance(raw.data, bytearray)  # JSON is always read into a bytearray
        fields = read_chat(raw.data, FIELDS)
        if fields is not None:
            body = Body(fields, ArrayReader(settings.max_elements, may_hold_booleans=False))
            request.state.body = body
            return body
    return parsed_body(request, raw, settings)


@router.post(
    "/logprobs",
    response_model=LogprobsResult,
    responses=PROBLEM_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LogprobsBody"}}},
        }
    },
)
@scoring(inline_bytes=INLINE_BYTES, parse=parse_logprobs_body)
def score_logprobs(body: Body) -> Response:
    """NLL, perplexities and bits per token or byte of the realised tokens in LLM server responses.

    OpenAI chat completions, legacy completions (echoed prompts included) and vLLM
    prompt_logprobs, pasted as they come. Perplexities are named after whose they are
    (lm-evaluation-harness, Hugging Face evaluate, token-weighted).

    With top_logprobs (or vLLM ranks): top-1 accuracy, calibration of the top-1 token, and
    bounds on the entropy of each position. Logprobs of sampled tokens are conditioned on the
    sample: calibration is meaningful on teacher-forced (prompt) logprobs, and the answer warns
    when sampled tokens are in it.
    """
    options, parsed, scores = score_body(body)
    warnings: list[str] = []
    calibration = _calibration(scores, options, warnings)
    if scores.n_outside_top:
        warnings.append(
            f"{scores.n_outside_top} token(s) had the -9999.0 stand-in (outside the top): left out of "
            "the NLL and perplexities; nll_lower_bound bounds them where alternatives allow"
        )
    totals = scores.totals
    result = LogprobsResult(
        n_sequences=parsed.n_sequences,
        n_tokens=totals.tokens,
        n_outside_top=scores.n_outside_top,
        n_unconditioned=scores.n_unconditioned,
        n_teacher_forced=scores.n_teacher_forced,
        n_sampled=scores.n_sampled,
        nll=totals.nll,
        nll_lower_bound=scores.nll_lower_bound,
        metrics=LanguageModelMetrics(**totals.metrics()),
        calibration=calibration,
        entropy=_entropy(scores),
        per_sequence=_per_sequence(parsed, scores) if options.per_sequence else None,
        totals=MergeableTotals.of(totals),
        warnings=warnings,
    )
    return json_response(result)


def score_body(body: Body) -> tuple[LogprobsOptions, core.ParsedLogprobs, core.LogprobScores]:
    """The options, parsed sequences and scores of a /v1/logprobs body (shared with the monitors)."""
    options = body.options(LogprobsOptions, RAW_FIELDS)
    items, names = _items(body)
    if len(items) == 1 and isinstance(items[0], ParsedChat):  # read by the fast chat reader
        parsed = items[0].parsed
    else:
        # The decoded body is young: collections triggered by the parser's lists would re-scan all of
        # it (6 MB of chat logprobs: ~90 ms of collections); the lists it builds hold no cycle.
        with collector_paused(True):
            parsed = core.parse_logprobs(
                items, prompt_token_ids=_prompt_ids(body), use=options.use, names=names
            )
    n_bytes, n_words = _counts(body, options, parsed.n_sequences)
    scores = core.score_logprobs(
        parsed,
        ranges=_ranges(options, parsed.n_sequences),
        vocab_size=options.vocab_size,
        n_bytes=n_bytes,
        n_words=n_words,
    )
    return options, parsed, scores


def _items(body: Body) -> tuple[list[Any], list[str] | None]:
    fields = body.fields
    sent = [name for name in ("responses", "response") if fields.get(name) is not None]
    if len(sent) != 1:
        got = "both" if sent else "neither"
        raise core.InputError("responses", f"exactly one of `responses` or `response` is required; got {got}")
    if sent[0] == "response" or isinstance(fields[sent[0]], ParsedChat):
        return [fields[sent[0]]], [sent[0]]
    items = fields["responses"]
    if not isinstance(items, list):
        raise core.InputError("responses", f"must be a list of responses; got {type(items).__name__}")
    return items, None


def _prompt_ids(body: Body) -> list[Any] | None:
    ids = body.fields.get("prompt_token_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(i is None or isinstance(i, list) for i in ids):
        raise core.InputError(
            "prompt_token_ids", "must be a list holding one list of token ids (or null) per prompt"
        )
    return ids


def _ranges(options: LogprobsOptions, n: int) -> list[tuple[int | None, int | None]] | None:
    if options.ranges is not None and options.context_length is not None:
        raise core.InputError("ranges", "exactly one of `ranges` or `context_length` may be sent; got both")
    if options.context_length is None:
        return options.ranges
    starts = options.context_length
    if isinstance(starts, int):
        return [(starts, None)] * n
    if len(starts) != n:
        raise core.InputError("context_length", f"must hold one length per sequence ({n}); got {len(starts)}")
    return [(s, None) for s in starts]


def _counts(body: Body, options: LogprobsOptions, n: int) -> tuple[Any, Any]:
    texts = body.fields.get("texts")
    if texts is None:
        return options.bytes, options.words
    if options.bytes is not None or options.words is not None:
        raise core.InputError("texts", "exclusive with `bytes` and `words`; send one or the other")
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise core.InputError("texts", "must be a list of strings, one per sequence")
    if len(texts) != n:
        raise core.InputError("texts", f"must hold one text per sequence ({n}); got {len(texts)}")
    return core.lm_eval_counts(texts)


def _calibration(
    scores: core.LogprobScores, options: LogprobsOptions, warnings: list[str]
) -> Top1Calibration | None:
    if options.calibration is False:
        return None
    if not scores.confidence.size:
        if options.calibration:
            warnings.append("no top_logprobs or ranks to compare with: no accuracy or calibration")
        return None
    teacher_forced = scores.n_sampled == 0
    if not teacher_forced:
        warnings.append(
            f"calibration includes {scores.n_sampled} sampled token(s): their logprobs are conditioned "
            "on the sample, so calibration is meaningful only on teacher-forced (prompt) logprobs"
        )
    values = core.top1_calibration(scores.confidence, scores.correct)
    return Top1Calibration(n_tokens=int(scores.confidence.size), teacher_forced=teacher_forced, **values)


def _entropy(scores: core.LogprobScores) -> TruncatedEntropy | None:
    if not scores.entropy_lower.size:
        return None
    upper = None if scores.entropy_upper is None else float(scores.entropy_upper.mean())
    return TruncatedEntropy(
        n_positions=int(scores.entropy_lower.size),
        mean_lower_bound=float(scores.entropy_lower.mean()),
        mean_upper_bound=upper,
    )


def _per_sequence(parsed: core.ParsedLogprobs, scores: core.LogprobScores) -> SequenceScores:
    return SequenceScores(
        path=parsed.paths,
        nll=scores.sequence_nll.tolist(),
        tokens=scores.sequence_tokens.tolist(),
        perplexity=core.sequence_perplexity(scores.sequence_nll, scores.sequence_tokens).tolist(),
        outside_top=scores.sequence_outside_top.tolist(),
        teacher_forced=np.asarray(parsed.teacher_forced).tolist(),
    )
