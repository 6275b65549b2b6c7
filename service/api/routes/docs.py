"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) from assets the service serves itself.

No CDN: the pages work offline and behind a strict Content-Security-Policy (scripts, styles and
fonts from the service only; styles inline too, which both renderers set on elements; ReDoc's
search runs in a ``blob:`` worker). The assets are vendored under ``service/api/static``
(versions and licences in its VENDORED.md) and served with a long cache lifetime.
"""

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = "/docs-assets"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

router = APIRouter(include_in_schema=False)

_SWAGGER = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Xent – Swagger UI</title>
<link rel="icon" type="image/png" href="{assets}/swagger-ui/favicon-32x32.png">
<link rel="stylesheet" href="{assets}/swagger-ui/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-url="{openapi}"></div>
<script src="{assets}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{assets}/swagger-ui/init.js"></script>
</body>
</html>
"""

_REDOC = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Xent – ReDoc</title>
<link rel="icon" type="image/png" href="{assets}/swagger-ui/favicon-32x32.png">
</head>
<body>
<redoc spec-url="{openapi}"></redoc>
<script src="{assets}/redoc/redoc.standalone.js"></script>
</body>
</html>
"""


def _page(template: str, request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    html = template.format(assets=root + ASSETS, openapi=root + "/openapi.json")
    return HTMLResponse(html, headers=HEADERS)


@router.get("/docs")
async def swagger_ui_html(request: Request) -> HTMLResponse:
    """Swagger UI: every operation, its schemas and examples; Authorize sends an API key."""
    return _page(_SWAGGER, request)


@router.get("/redoc")
async def redoc_html(request: Request) -> HTMLResponse:
    """ReDoc: the same document as one readable page."""
    return _page(_REDOC, request)


def install(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets on `app` (built with ``docs_url=None, redoc_url=None``)."""
    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="docs-assets")
