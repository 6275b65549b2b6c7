"""``POST /v1/monitors/{name}/events``: KServe's inference logger (CloudEvents) as a monitor source."""

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from service import core
from service.api.deps import raw_body
from service.api.formats.payload import parse_json_object
from service.api.openapi.events import JSON_SCHEMA, STRUCTURED_EVENT
from service.api.schemas.monitors import EventResult
from service.monitors import IngestCounts, ingest
from service.monitors.batch_checks import MAX_ID_CHARS
from service.monitors.counters import MonitorCounters
from service.monitors.events import RESPONSE, predictions, read_event, row_ids
from service.monitors.idempotency import check_key, event_key, fingerprint
from service.settings import Settings
from service.store import IdempotencyKey, Replayed

from . import json_response
from .monitor_writes import answer_bytes
from .monitors import (
    MONITOR_RESPONSES,
    IdempotencyKeyHeader,
    MonitorName,
    SharedPathRoute,
    require,
)

STRUCTURED = "application/cloudevents+json"
router = APIRouter(prefix="/v1", tags=["monitors"], route_class=SharedPathRoute)

EVENT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "Binary mode: the inference request or response, with `ce-*` headers. "
        "Structured mode: the whole CloudEvent.",
        "content": {
            "application/json": {"schema": JSON_SCHEMA},
            "application/cloudevents+json": {"schema": STRUCTURED_EVENT},
        },
    }
}


@router.post(
    "/monitors/{name}/events",
    response_model=EventResult,
    responses=MONITOR_RESPONSES,
    openapi_extra=EVENT_BODY,
)
async def record_event(
    request: Request,
    name: MonitorName,
    segment: Annotated[
        str | None, Query(max_length=64, description="Segment of the rows (default none).")
    ] = None,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Record a CloudEvent of KServe's inference logger (binary or structured mode).

    `org.kubeflow.serving.inference.response`: its predictions (V1 `predictions` or V2 `outputs`,
    the tensor named by the monitor's `output`, read as its `output_kind`) are recorded at
    `ce-time`, each row waiting for its label under the id `<ce-id>` (one row) or
    `<ce-id>:<row>`. `org.kubeflow.serving.inference.request` is checked and acknowledged only.
    A response event sent again (the same headers and bytes) is answered like the first and counts
    once, with or without an `Idempotency-Key`.
    """
    settings: Settings = request.app.state.settings
    raw = await raw_body(request, settings)
    if raw.kind != "json":
        raise core.InputError(
            "content-type", "must be JSON (application/json or application/cloudevents+json)"
        )
    holder = request.app.state.monitors
    counters: MonitorCounters = request.app.state.monitor_counters
    media = (request.headers.get("content-type") or "application/json").split(";")[0].strip().lower()
    headers = {k.lower(): v for k, v in request.headers.items()}
    header = check_key(idempotency_key)

    def record() -> Response:
        data = bytes(raw.data)
        event = read_event(headers, parse_json_object(data), media)
        store = holder.get()
        config = require(store, name)
        label = segment or ""
        if event.type != RESPONSE:
            return json_response(
                EventResult(
                    monitor=name,
                    id=event.id,
                    type=event.type,
                    recorded=False,
                    n=0,
                    n_pending=0,
                    n_duplicate_ids=0,
                    ids=[],
                    segment=label,
                )
            )
        dist, _ = predictions(event.data, config)
        ids = row_ids(event.id, dist.n_samples)
        if len(ids[-1]) > MAX_ID_CHARS:
            raise core.InputError("ce-id", f"must leave room for `:<row>` within {MAX_ID_CHARS} characters")
        times = None if event.time is None else [event.time] * dist.n_samples

        def result(counts: IngestCounts, row_ids: list[str]) -> EventResult:
            return EventResult(
                monitor=name,
                id=event.id,
                type=event.type,
                recorded=True,
                n=counts.rows,
                n_pending=counts.pending,
                n_duplicate_ids=counts.duplicate_ids,
                ids=row_ids,
                segment=label,
            )

        # The request as sent: its CloudEvents headers (binary mode), media type, segment and bytes.
        parts: list[str | bytes] = [
            *(f"{k}:{v}" for k, v in sorted(headers.items()) if k.startswith("ce-")),
            media,
            label,
            data,
        ]
        source = str(headers.get("ce-source", "")) if media != STRUCTURED else ""
        key = header or event_key(source, event.id, parts)
        # The stored answer leaves out the row ids (one per row; they follow from ce-id and n).
        stored = IdempotencyKey(
            key, fingerprint(["events", *parts]), lambda counts: answer_bytes(result(counts, []))
        )
        try:
            counts = ingest(store, config, dist, None, ids, times, label, key=stored)
        except core.InputError as error:
            if error.field == "timestamps":
                raise core.InputError("ce-time", error.reason) from None
            raise
        except Replayed as replay:  # the first answer, its ids put back
            first = EventResult.model_validate_json(replay.answer).model_copy(update={"ids": ids})
            raise Replayed(replay.key, answer_bytes(first)) from None
        counters.add(name, counts.stats)
        return json_response(result(counts, ids))

    return await anyio.to_thread.run_sync(record, limiter=request.app.state.scoring_limiter)
