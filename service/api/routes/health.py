"""Liveness and readiness probes."""

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from service.api.errors.problems import ProblemError

router = APIRouter(tags=["health"])


class HealthResult(BaseModel):
    """Probe answer."""

    status: str = Field(description='"ok" when live, "ready" when ready to score.')


# Both probes are coroutines: FastAPI answers them on the event loop, where a plain `def` took a
# hop to its thread pool, whose threads the scoring work also runs on.


@router.get("/healthz")
async def healthz() -> HealthResult:
    """Liveness: the process answers HTTP."""
    return HealthResult(status="ok")


_DRAINING: dict[int | str, dict[str, Any]] = {
    503: {
        "description": "Shutting down (SIGTERM seen): take this instance out of rotation.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    }
}


@router.get("/readyz", responses=_DRAINING)
async def readyz(request: Request) -> HealthResult:
    """Readiness: the app is built and can score requests; 503 once it is shutting down."""
    if request.app.state.gate.draining:
        raise ProblemError(503, "shutting down", headers={"Retry-After": "1"})
    return HealthResult(status="ready")
