"""``/v1/monitors/{name}/sequences`` and ``…/perplexity``: a language model's perplexity over time.

A write takes what ``POST /v1/logprobs`` takes (scored by the same code) plus each sequence's
time and a segment, and adds each sequence's sums to its bucket; the query answers, per step,
what ``/v1/logprobs`` answers on that step's sequences.
"""

import math
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service import clock, core
from service.api.deps import StoreDep
from service.api.formats.inputs import Body
from service.api.schemas.monitor_lm import PerplexityPoint, PerplexityResult, SequencesBody, SequencesResult
from service.core import PerplexitySeries
from service.monitors.counters import MonitorCounters
from service.monitors.lm import read_series, sequence_rows
from service.settings import Settings

from . import REQUEST_MODELS, json_response
from .logprobs import score_body
from .monitor_params import SegmentParam, StepParam, TimeParam, WindowParam, parse_duration, time_range
from .monitor_writes import MonitorWrite, run_write
from .monitors import (
    MONITOR_RESPONSES,
    IdempotencyKeyHeader,
    MonitorName,
    SharedPathRoute,
    require,
)

router = APIRouter(prefix="/v1", tags=["monitors"], route_class=SharedPathRoute)
REQUEST_MODELS.append(SequencesBody)


@router.post(
    "/monitors/{name}/sequences",
    response_model=SequencesResult,
    responses=MONITOR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SequencesBody"}}},
        }
    },
)
async def record_sequences(
    request: Request, name: MonitorName, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Add scored sequences (a /v1/logprobs body) to the monitor's perplexity series; answered once durable.

    `timestamps` (epoch seconds, one per sequence; default now) and `segment` are optional.
    Each sequence's NLL, tokens, perplexity and, when known, bytes, words and top-1 hits are
    added to its time bucket.
    """
    counters: MonitorCounters = request.app.state.monitor_counters

    def record(write: MonitorWrite) -> Response:
        body = write.body()
        times = body.fields.pop("timestamps", None)
        segment = body.fields.pop("segment", None)
        for field in [f for f, value in body.fields.items() if value is None]:
            del body.fields[field]  # null stands for absent (the logprobs reader refuses B×T×K fields)
        if not _has_logits(body):
            for field in ("labels", "mask", "ignore_index"):
                if field in body.fields:
                    raise core.InputError(field, "applies to B×T×K sequence inputs only")
        sums = _logits_sums(body) if _has_logits(body) else _logprobs_sums(body)
        store = write.store()
        config = require(store, name)
        series, tag, rows = sequence_rows(
            config, *sums[:2], times=times, now=clock.now(), segment=segment, **sums[2]
        )
        result = SequencesResult(
            monitor=name,
            n_sequences=int(series.sequences.sum()),
            n_tokens=int(series.tokens.sum()),
            buckets=int(series.start.size),
            segment=tag,
        )
        store.add_lm_sums(name, rows, key=write.key(lambda _: result))
        counters.add_lm(name, rows)
        return json_response(result)

    return await run_write(request, idempotency_key, "sequences", record)


Sums = tuple[np.ndarray, np.ndarray, dict[str, Any]]


def _has_logits(body: Body) -> bool:
    return any(body.fields.get(f) is not None for f in ("logits", "probs"))


def _logprobs_sums(body: Body) -> Sums:
    """Per-sequence NLL, tokens and counts of a /v1/logprobs body."""
    _, _, scores = score_body(body)
    counts = {"bytes": scores.sequence_bytes, "words": scores.sequence_words, "hits": scores.sequence_hits}
    return scores.sequence_nll, scores.sequence_tokens, counts


def _ignore_index(value: object) -> int | None:
    """`ignore_index` as the OpenAPI document's `integer` (JSON Schema's) reads it.

    An integral JSON number (``-100.0``) is that integer; null is None; a boolean, a fraction, a
    string or anything else is refused.
    """
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise core.InputError("ignore_index", f"must be an integer or null; got {value!r}")


def _logits_sums(body: Body) -> Sums:
    """Per-sequence NLL, tokens and top-1 hits of B×T×K sequences with B×T labels (as /v1/cross-entropy)."""
    if any(body.fields.get(f) is not None for f in ("responses", "response")):
        raise core.InputError("responses", "cannot be sent with `logits` or `probs`; send one kind of input")
    allowed = {"logits", "probs", "labels", "mask", "ignore_index", "bytes", "words"}
    for field in body.fields:
        if field not in allowed:
            raise core.InputError(field, f"is not a field of B×T×K sequences ({', '.join(sorted(allowed))})")
    name = body.pick("logits", "probs")
    values = body.array(name, bfloat16=True)
    if values.ndim != 3:
        raise core.InputError(name, f"must be B×T×K token sequences; got {values.ndim} dimension(s)")
    if body.fields.get("labels") is None:
        raise core.InputError("labels", "are required (B×T token ids) with B×T×K sequence inputs")
    ignore_index = _ignore_index(body.fields.get("ignore_index"))  # none by default, as /v1/cross-entropy
    scores = core.token_scores(
        body.array("labels"),
        values,
        kind="logits" if name == "logits" else "probs",
        mask=body.array("mask") if body.fields.get("mask") is not None else None,
        ignore_index=ignore_index,
        bfloat16=name in body.reader.bfloat16,
        field=name,
    )
    counts = {f: body.array(f) if body.fields.get(f) is not None else None for f in ("bytes", "words")}
    return scores.sequence_nll, scores.tokens, {**counts, "hits": scores.hits(1)}


def _points(
    series: PerplexitySeries, begin: int, end: int, step: int, n_points: int
) -> list[PerplexityPoint]:
    """One point per step; a step without sequences has zero counts and null metrics."""
    at = (series.start - begin) // step  # each of the series' buckets is one point
    metrics: dict[str, list[float | None]] = {}
    for key, values in series.metrics().items():
        column = np.full(n_points, np.nan)
        column[at] = values
        metrics[key] = [None if math.isnan(v) else v for v in column.tolist()]
    counts = {}
    for key, dtype in (("sequences", np.int64), ("tokens", np.int64), ("nll", np.float64)):
        column = np.zeros(n_points, dtype)
        column[at] = getattr(series, key)
        counts[key] = column.tolist()
    return [
        PerplexityPoint(
            start=begin + p * step,
            end=min(begin + (p + 1) * step, end),
            n_sequences=counts["sequences"][p],
            n_tokens=counts["tokens"][p],
            nll=counts["nll"][p],
            **{key: values[p] for key, values in metrics.items()},
        )
        for p in range(n_points)
    ]


@router.get("/monitors/{name}/perplexity", response_model=PerplexityResult, responses=MONITOR_RESPONSES)
def monitor_perplexity(
    request: Request,
    name: MonitorName,
    store: StoreDep,
    start: Annotated[TimeParam, Query(alias="from")] = None,
    to: TimeParam = None,
    window: WindowParam = None,
    step: StepParam = None,
    segment: SegmentParam = None,
) -> Response:
    """A language model's NLL per token, perplexities and bits per token or byte over time.

    Ranges and steps as GET …/metrics. Each point, and `total`, has the values /v1/logprobs's
    `metrics` gives on the sequences of its buckets.
    """
    settings: Settings = request.app.state.settings
    config = require(store, name)
    begin, end = time_range(config, start, to, window)
    width = parse_duration(step, "step")
    step_s = end - begin if width is None else width
    if step_s != int(step_s) or int(step_s) % config.bucket_s:
        raise core.InputError(
            "step", f"must be a whole multiple of the bucket width {config.bucket_s} s; got {step}"
        )
    step_s = int(step_s)
    if width is not None:  # points on the step's grid, as GET …/metrics
        begin = begin // step_s * step_s
    n_points = -(-(end - begin) // step_s)
    if n_points > settings.max_query_points:
        raise core.InputError(
            "step",
            f"gives {n_points} points; the limit is XENT_MAX_QUERY_POINTS={settings.max_query_points}",
        )
    series = read_series(store, config, begin, end, step_s, segment)
    whole = PerplexitySeries(  # every point in one: the range's total
        **{**series.__dict__, "width": end - begin, "start": np.full(series.start.size, begin)}
    ).merge(PerplexitySeries.observe([], [], [], width=end - begin))
    result = PerplexityResult(
        monitor=name,
        start=begin,
        end=end,
        step=step_s,
        segment=segment,
        total=_points(whole, begin, end, end - begin, 1)[0],
        points=_points(series, begin, end, step_s, n_points),
    )
    return json_response(result)
