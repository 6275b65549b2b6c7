"""Liveness and readiness probes."""

from fastapi import APIRouter
from pydantic import BaseModel, Field

router = APIRouter(tags=["health"])


class HealthResult(BaseModel):
    """Probe answer."""

    status: str = Field(description='"ok" when live, "ready" when ready to score.')


@router.get("/healthz")
def healthz() -> HealthResult:
    """Liveness: the process answers HTTP."""
    return HealthResult(status="ok")


@router.get("/readyz")
def readyz() -> HealthResult:
    """Readiness: the app is built and can score requests."""
    return HealthResult(status="ready")
