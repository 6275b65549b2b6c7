"""``GET /dashboard``: a built-in page charting the monitors (HTML, script and style from package data).

The page and its files are served without an API key; the page itself asks ``/v1/monitors`` with
the key the user types (kept in ``sessionStorage``, sent as ``X-API-Key``). Every answer carries a
strict Content-Security-Policy: nothing loads from another origin and no inline script runs.
"""

from functools import cache
from importlib.resources import files

from fastapi import APIRouter
from starlette.exceptions import HTTPException
from starlette.responses import Response

router = APIRouter(include_in_schema=False)

#: Same origin only; the reliability diagram is shown from a ``blob:`` URL of the SVG the script
#: fetched with the key.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
ASSETS = {
    "dashboard.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


@cache
def _asset(name: str) -> bytes:
    return files("service.api").joinpath("static", name).read_bytes()


def _serve(name: str) -> Response:
    return Response(
        _asset(name),
        media_type=ASSETS[name],
        headers={
            "Content-Security-Policy": CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-cache",
        },
    )


@router.get("/dashboard")
async def dashboard() -> Response:
    """The dashboard page (``?monitor=name&window=1h`` choose what it shows)."""
    return _serve("dashboard.html")


@router.get("/dashboard/{asset}")
async def dashboard_asset(asset: str) -> Response:
    """The page's script and style sheet."""
    if asset not in ASSETS or asset == "dashboard.html":
        raise HTTPException(status_code=404)
    return _serve(asset)
