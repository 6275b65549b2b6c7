"""``GET /metrics``: Prometheus text exposition."""

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

router = APIRouter(tags=["health"])
#: The format `generate_latest` writes (text 0.0.4), which every Prometheus version scrapes.
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format 0.0.4.", "content": {"text/plain": {}}}},
)
async def metrics(request: Request) -> Response:
    """Request counts, latency histograms, rows and bytes scored, errors by kind (all workers)."""
    state = request.app.state
    await run_in_threadpool(state.monitors.settle_now)  # small writes not summarised yet, counted now
    state.monitor_counters.flush()  # this worker's monitor writes held (counters.FLUSH_S)
    # the request series held since this turn began, flushed on the loop that adds to them (a
    # flush from another thread could zero a count added between its read and its reset)
    state.metrics.tally.flush()
    return Response(await run_in_threadpool(state.metrics.exposition), media_type=TEXT_FORMAT)
