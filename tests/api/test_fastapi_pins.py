"""What the scoring dispatch (service.api.middleware.dispatch) assumes of FastAPI and Starlette.

Scoring POSTs enter at Xent's own layer, skipping FastAPI's outer layers, unless FastAPI's
native telemetry is on (read from its private ``_native_telemetry``). These tests fail when an
upgrade changes either, so that the skip is re-checked rather than silently wrong.
"""

import fastapi
import starlette

from service.api.middleware.dispatch import fastapi_telemetry_on
from service.api.middleware.exchange import ExchangeMiddleware
from service.app import create_app
from service.settings import Settings

#: The versions the dispatch was written and checked against.
CHECKED = {"fastapi": "0.165.", "starlette": "1.10."}
#: FastAPI's layers outside the user middleware, which a scoring POST does not pass.
SKIPPED = ["ServerErrorMiddleware", "ExceptionTelemetryMiddleware", "AppBodyLimitMiddleware"]


def test_fastapi_and_starlette_are_the_versions_the_dispatch_was_checked_against():
    found = {"fastapi": fastapi.__version__, "starlette": starlette.__version__}
    assert all(found[name].startswith(prefix) for name, prefix in CHECKED.items()), (
        f"{found}: re-check service/api/middleware/dispatch.py (the layers a scoring POST skips and "
        "FastAPI's native telemetry), then update CHECKED and SKIPPED here"
    )


def test_the_layers_a_scoring_post_skips_are_fastapi_s_known_outer_ones():
    app = create_app(Settings())
    layer, outer = app.build_middleware_stack(), []
    while not isinstance(layer, ExchangeMiddleware):
        outer.append(type(layer).__name__)
        layer = layer.app
    assert outer == SKIPPED
    assert app.max_body_size is None  # the body-limit layer skipped has no limit to apply: Xent's applies


def test_fastapi_native_telemetry_is_where_the_dispatch_reads_it():
    app = create_app(Settings())
    telemetry = app._native_telemetry  # AttributeError here: FastAPI moved it; see the module docstring
    assert callable(telemetry.enabled)
    assert fastapi_telemetry_on(app) is telemetry.enabled() is False  # no OpenTelemetry configured here
