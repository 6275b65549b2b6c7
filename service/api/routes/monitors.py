"""``/v1/monitors``: create, read and delete monitors; record predictions and late labels."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar

import numpy as np
from fastapi import APIRouter, Header, Path, Request
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from service import clock, core
from service.api.deps import StoreDep
from service.api.formats.payload import parse_json_object
from service.api.middleware.dispatch import DirectEntry
from service.api.schemas.monitor_lm import MonitorLanguageModel
from service.api.schemas.monitors import (
    NAME_PATTERN,
    LabelsBody,
    LabelsResult,
    MonitorBody,
    MonitorDetail,
    MonitorList,
    MonitorResult,
    MonitorTotals,
    ObservationsBody,
    ObservationsResult,
)
from service.core import PerplexitySeries
from service.monitors import TEMPERED, fold_labels
from service.monitors.counters import MonitorCounters
from service.monitors.idempotency import HEADER
from service.monitors.lm import held_series
from service.monitors.query import totals
from service.monitors.sums_cache import shared_cache
from service.settings import Settings
from service.store import (
    JoinCounts,
    MonitorConfig,
    MonitorNotFound,
    MonitorStore,
)

from . import PROBLEM_RESPONSES, REQUEST_MODELS, json_response, request_body
from .monitor_observations import ARRAY_FIELDS, class_indices, observations
from .monitor_writes import MonitorWrite, first_header, loop_bytes, run_write


class SharedPathRoute(APIRoute):
    """A route whose 405 answer lists the methods of every route on its path in ``Allow``.

    Starlette's 405 names only the first route that matched the path (``PUT`` of
    ``/v1/monitors/{name}``), though ``GET`` and ``DELETE`` serve it too.
    """

    methods_by_path: ClassVar[dict[str, set[str]]] = {}

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.methods_by_path.setdefault(self.path, set()).update(self.methods or ())

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 405 with every method of the path; otherwise as APIRoute."""
        if self.methods and scope["method"] not in self.methods:
            allowed = ", ".join(sorted(self.methods_by_path[self.path]))
            raise HTTPException(status_code=405, headers={"Allow": allowed})
        await super().handle(scope, receive, send)


router = APIRouter(prefix="/v1", tags=["monitors"], route_class=SharedPathRoute)
#: The idempotency header's name as ASGI servers give it (lower case).
HEADER_NAME = HEADER.lower().encode()

MonitorName = Annotated[str, Path(pattern=NAME_PATTERN, description="The monitor's name.")]
MONITOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEM_RESPONSES,
    404: {**PROBLEM_RESPONSES[422], "description": "No monitor of that name."},
    409: {
        **PROBLEM_RESPONSES[422],
        "description": "A field that cannot change, or a cap the store has reached.",
    },
}
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        description="Makes a retry safe: a request repeated with the same key (for a day, "
        "XENT_IDEMPOTENCY_TTL_S) is answered like the first, with `Idempotent-Replayed: true`, and "
        "counts once; the same key with a different request is a 422. 1 to 255 printable ASCII characters.",
        # HTTP trims a value's outer spaces: the first and last characters are visible ones.
        json_schema_extra={"pattern": "^[!-~]([ -~]{0,253}[!-~])?$"},
    ),
]
REQUEST_MODELS.append(LabelsBody)


def require(store: MonitorStore, name: str) -> MonitorConfig:
    """The monitor's config, or raise MonitorNotFound (404)."""
    config = store.get_monitor(name)
    if config is None:
        raise MonitorNotFound(name)
    return config


def monitor_result(config: MonitorConfig) -> MonitorResult:
    """The public view of a stored config."""
    return MonitorResult(
        name=config.name,
        n_classes=config.n_classes,
        binary=config.binary,
        class_names=None if config.class_names is None else list(config.class_names),
        bucket_s=config.bucket_s,
        retention_s=config.retention_s,
        label_ttl_s=config.label_ttl_s,
        reservoir_size=config.reservoir_size,
        output=config.output,
        output_kind=config.output_kind,
        temperature=config.temperature,
        created_at=config.created_at,
        updated_at=config.updated_at,
    )


@router.put(
    "/monitors/{name}",
    response_model=MonitorResult,
    status_code=200,
    responses={
        **MONITOR_RESPONSES,
        201: {"model": MonitorResult, "description": "Created (`Location` names it); 200: updated."},
    },
)
def put_monitor(name: MonitorName, body: MonitorBody, store: StoreDep, request: Request) -> Response:
    """Create a monitor (201) or update it (200): K or binary, class names, buckets, retention, reservoir.

    K, `binary` and `bucket_s` cannot change once the monitor exists (409); delete it to change them.
    """
    counters: MonitorCounters = request.app.state.monitor_counters
    config = MonitorConfig(
        name=name,
        n_classes=body.k,
        binary=body.binary,
        class_names=None if body.class_names is None else tuple(body.class_names),
        bucket_s=body.bucket_s,
        retention_s=body.retention_s,
        label_ttl_s=body.label_ttl_s,
        reservoir_size=body.reservoir_size,
        output=body.output,
        output_kind=body.output_kind,
    )
    stored, created = store.put_monitor(config)
    counters.touch(name)
    response = json_response(monitor_result(stored))
    response.status_code = 201 if created else 200
    if created:
        response.headers["Location"] = f"/v1/monitors/{name}"
    return response


@router.get("/monitors", response_model=MonitorList, responses=PROBLEM_RESPONSES)
def list_monitors(request: Request, store: StoreDep) -> Response:
    """Every monitor's configuration, by name (those the API key may use, if it is limited)."""
    allowed = getattr(request.state, "api_key_monitors", None)
    configs = [c for c in store.list_monitors() if allowed is None or c.name in allowed]
    return json_response(MonitorList(monitors=[monitor_result(c) for c in configs]))


@router.get("/monitors/{name}", response_model=MonitorDetail, responses=MONITOR_RESPONSES)
def get_monitor(request: Request, name: MonitorName, store: StoreDep) -> Response:
    """A monitor's configuration and totals over everything it holds."""
    config = require(store, name)
    settings: Settings = request.app.state.settings
    held = totals(store, config, cache=shared_cache(request.app.state, settings.monitor_cache_mb))
    m = held.metrics
    labelled = int(m.n_labelled[0]) > 0
    segments = [s for s in store.segments(name) if not s.endswith(TEMPERED)]
    result = MonitorTotals(
        n=int(m.n[0]),
        n_labelled=int(m.n_labelled[0]),
        cross_entropy=float(m.cross_entropy[0]) if labelled else None,
        accuracy=float(m.accuracy[0]) if labelled else None,
        first_bucket=held.first_bucket,
        last_bucket=held.last_bucket,
        segments=segments,
        language_model=_language_model(held_series(store, config)),
    )
    return json_response(MonitorDetail(**monitor_result(config).model_dump(), totals=result))


def _language_model(series: PerplexitySeries) -> MonitorLanguageModel | None:
    """The totals of a one-bucket series (None without one), as GET …/perplexity's `total`."""
    if not series.start.size:
        return None
    metrics = {key: None if np.isnan(v[0]) else float(v[0]) for key, v in series.metrics().items()}
    return MonitorLanguageModel(
        n_sequences=int(series.sequences[0]),
        n_tokens=int(series.tokens[0]),
        nll=float(series.nll[0]),
        **metrics,
    )


@router.delete("/monitors/{name}", status_code=204, response_class=Response, responses=MONITOR_RESPONSES)
def delete_monitor(name: MonitorName, store: StoreDep) -> Response:
    """Delete a monitor and all its data."""
    if not store.delete_monitor(name):
        raise MonitorNotFound(name)
    return Response(status_code=204)


@router.post(
    "/monitors/{name}/observations",
    response_model=ObservationsResult,
    responses=MONITOR_RESPONSES,
    openapi_extra=request_body(ObservationsBody, ARRAY_FIELDS),
)
async def record_observations(
    request: Request, name: MonitorName, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Record a batch of predictions, with labels where known; answered once it is durable.

    Predictions are `logits` or `probs` (N×K, or N positive-class values for a binary monitor)
    in any payload format the scoring routes take. `labels` (-1: not yet known), `ids` (for
    late labels), `timestamps` (epoch seconds; default now) and `segment` are optional.
    Probabilities are logged with eps "auto" (the dtype's machine epsilon).
    """
    return await observations(request, name, idempotency_key)


def _observations_direct(request: Request) -> Awaitable[Response]:
    """:func:`record_observations` for the scoring dispatch: the name and header read here."""
    return observations(request, request.path_params["name"], first_header(request.scope, HEADER_NAME))


record_observations.direct = DirectEntry(_observations_direct, NAME_PATTERN, loop_bytes)  # type: ignore[attr-defined]


@router.post(
    "/monitors/{name}/labels",
    response_model=LabelsResult,
    responses=MONITOR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LabelsBody"}}},
        }
    },
)
async def record_labels(
    request: Request, name: MonitorName, idempotency_key: IdempotencyKeyHeader = None
) -> Response:
    """Late labels by id: each joins its prediction in the bucket of the prediction's time.

    The answer counts joined, unknown, duplicate and expired ids; these are not errors.
    """
    return await _labels(request, name, idempotency_key)


async def _labels(request: Request, name: str, idempotency_key: str | None) -> Response:
    def join(write: MonitorWrite) -> Response:
        fields = parse_json_object(bytes(write.raw.data))
        body = LabelsBody.model_validate(fields)
        store = write.store()
        config = require(store, name)
        if len(body.labels) != len(body.ids):
            raise core.InputError(
                "labels", f"must hold one label per id ({len(body.ids)}); got {len(body.labels)}"
            )
        labels = core.check_labels(
            np.array(class_indices(list(body.labels), config), np.int64), config.n_classes
        )
        folded: list[tuple[str, core.MonitorStats]] = []

        def result(counts: JoinCounts) -> LabelsResult:
            return LabelsResult(
                monitor=name,
                joined=counts.joined,
                unknown=counts.unknown,
                duplicate=counts.duplicate,
                expired=counts.expired,
            )

        fold = fold_labels(config, folded)
        counts = store.join_labels(name, body.ids, clock.now(), fold, labels.tolist(), key=write.key(result))
        request.app.state.monitor_counters.add(name, folded)
        return json_response(result(counts))

    return await run_write(request, idempotency_key, "labels", join, media=False)


def _labels_direct(request: Request) -> Awaitable[Response]:
    """:func:`record_labels` for the scoring dispatch: the name and header read here."""
    return _labels(request, request.path_params["name"], first_header(request.scope, HEADER_NAME))


record_labels.direct = DirectEntry(_labels_direct, NAME_PATTERN)  # type: ignore[attr-defined]
