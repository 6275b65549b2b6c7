"""The framework's floor: a bare FastAPI app whose POSTs return a constant.

It answers on every path ``benchmarks.http`` measures, so each route's floor is taken with
that route's own body (the bodies differ in size).
"""

from fastapi import FastAPI, Request
from starlette.responses import Response

app = FastAPI()

PATHS = (
    "/v1/cross-entropy",
    "/v1/divergence",
    "/v1/calibration",
    "/v1/apply",
    "/v1/monitors/bench/observations",
)


async def constant(request: Request) -> Response:
    """Read the body and return a constant JSON object."""
    await request.body()
    return Response(b'{"loss":0.0}', media_type="application/json")


for _path in PATHS:
    app.post(_path)(constant)
