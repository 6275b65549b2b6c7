"""``/v1/monitors/{name}/…`` queries: metrics over time, reliability diagram, temperature refit, drift."""

import math
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.datastructures import State
from starlette.responses import Response

from service import core
from service.api.deps import StoreDep
from service.api.formats.reliability_png import PNG, check_png_available, svg_to_png, wants_png
from service.api.formats.reliability_svg import reliability_svg
from service.api.schemas.monitors import (
    DriftResult,
    MetricsConvention,
    MetricsPoint,
    MetricsResult,
    TemperatureResult,
)
from service.core import MonitorStats
from service.core._typing import FloatArray
from service.core.monitoring.fine_histogram import ALLOWED_BINS, check_bins
from service.monitors import query
from service.monitors.query import Series, reservoir_logits, series
from service.monitors.sums_cache import SumsCache, shared_cache
from service.settings import Settings
from service.store import MonitorConfig

from . import json_response, log_base, unit_of
from .monitors import MONITOR_RESPONSES, MonitorName, SharedPathRoute, require

router = APIRouter(prefix="/v1", tags=["monitors"], route_class=SharedPathRoute)

SVG = "image/svg+xml"
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
#: What the document states of times and durations (the parsers below accept more: spaces, any digits).
EPOCH_PATTERN = r"^[+-]?[0-9]{1,11}(\.[0-9]{1,9})?$"
DURATION_PATTERN = r"^(0*[1-9][0-9]{0,8}(\.[0-9]{1,6})?|0+\.[0-9]{0,5}[1-9])[smhdw]?$"
TimeParam = Annotated[
    str | None,
    Query(
        description="Epoch seconds, or an ISO 8601 time (2026-12-05T20:00:00Z; without an offset, UTC).",
        json_schema_extra={
            "anyOf": [
                {"type": "string", "pattern": EPOCH_PATTERN},
                {"type": "string", "format": "date-time"},
                {"type": "null"},
            ]
        },
    ),
]
_DURATION_SCHEMA = {"anyOf": [{"type": "string", "pattern": DURATION_PATTERN}, {"type": "null"}]}
WindowParam = Annotated[
    str | None,
    Query(
        description='A duration: seconds, or a number with s, m, h, d or w ("1h", "30d").',
        json_schema_extra=_DURATION_SCHEMA,
    ),
]
SegmentParam = Annotated[str | None, Query(description="Only this segment (default: every segment).")]
StepParam = Annotated[
    str | None,
    Query(
        description="Seconds per point (a duration, a multiple of bucket_s); default: one point.",
        json_schema_extra=_DURATION_SCHEMA,
    ),
]
ECE = "Σ_b (n_b / N) |mean confidence_b - accuracy_b| over non-empty equal-width bins [fl(i/B), fl((i+1)/B)]"
BRIER = "Σ_k (p_k - 1[y = k])², halved for two classes (brier_scale auto)"
MATCHES = (
    "POST /v1/calibration (defaults, with this n_bins and closed) and POST /v1/cross-entropy on the same rows"
)


def parse_time(value: str | None, field: str) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string, or raise naming `field`."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
            if moment.tzinfo is None:  # the server's local zone would be an accident of deployment
                moment = moment.replace(tzinfo=UTC)
            seconds = moment.timestamp()
        except ValueError:
            raise core.InputError(
                field, f"must be epoch seconds or an ISO 8601 time; got {value!r}"
            ) from None
    if not math.isfinite(seconds):
        raise core.InputError(field, f"must be a finite time; got {value!r}")
    return seconds


def parse_duration(value: str | None, field: str) -> float | None:
    """Seconds from ``90``, ``90s``, ``5m``, ``1h``, ``30d``, ``1w``, or raise naming `field`."""
    if value is None:
        return None
    match = _DURATION.match(value)
    if match is None or float(match.group(1)) <= 0:
        raise core.InputError(
            field, f'must be a positive duration such as 300, "5m", "1h" or "30d"; got {value!r}'
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def time_range(
    config: MonitorConfig, start: str | None, end: str | None, span: str | None, *, default_span: str = "1h"
) -> tuple[int, int]:
    """``[from, to)`` aligned outward to buckets; `to` defaults to now, `from` to ``to - window``."""
    to = parse_time(end, "to")
    to = time.time() if to is None else to
    begin = parse_time(start, "from")
    if begin is not None and span is not None:
        raise core.InputError("window", "cannot be combined with `from`; give one of them")
    if begin is None:
        seconds = parse_duration(span or default_span, "window")
        assert seconds is not None
        begin = to - seconds
    if begin >= to:
        raise core.InputError("from", f"must be before `to` ({to}); got {begin}")
    b = config.bucket_s
    return math.floor(begin / b) * b, math.ceil(to / b) * b


def _value(x: float) -> float | None:
    return None if math.isnan(x) else x


def _points(series: Series, end: int, step: int) -> list[MetricsPoint]:
    m = series.metrics

    def values(a: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else v for v in a.tolist()]

    columns = zip(
        series.starts,
        m.n.tolist(),
        m.n_labelled.tolist(),
        *(values(a) for a in (m.cross_entropy, m.accuracy, m.brier, m.ece, m.mce, m.mean_confidence)),
        values(series.tempered_confidence),
        strict=True,
    )
    return [
        MetricsPoint(
            start=start,
            end=min(start + step, end),
            n=n,
            n_labelled=n_labelled,
            cross_entropy=ce,
            accuracy=accuracy,
            brier=brier,
            ece=ece,
            mce=mce,
            mean_confidence=confidence,
            expected_accuracy_calibrated=tempered,
        )
        for start, n, n_labelled, ce, accuracy, brier, ece, mce, confidence, tempered in columns
    ]


def sums_cache(state: State, settings: Settings) -> SumsCache:
    """The app's cache of decoded statistics (created on first use, sized by XENT_MONITOR_CACHE_MB)."""
    return shared_cache(state, settings.monitor_cache_mb)


NBins = Annotated[
    int,
    Query(
        description="Equal-width bins of the ECE / MCE; must divide 2520.",
        json_schema_extra={"enum": list(ALLOWED_BINS)},
    ),
]
Closed = Annotated[Literal["right", "left"], Query(description="Which side of each bin is closed.")]


@router.get("/monitors/{name}/metrics", response_model=MetricsResult, responses=MONITOR_RESPONSES)
def monitor_metrics(
    request: Request,
    name: MonitorName,
    store: StoreDep,
    start: Annotated[TimeParam, Query(alias="from")] = None,
    to: TimeParam = None,
    window: WindowParam = None,
    step: StepParam = None,
    segment: SegmentParam = None,
    n_bins: NBins = 15,
    closed: Closed = "right",
    base: Annotated[Literal["e", "2", "10"], Query(description="Log base of cross_entropy.")] = "e",
) -> Response:
    """A time series of count, labelled count, CE, accuracy, Brier, ECE / MCE and expected accuracy.

    `from`/`to` (default: the last `window`, 1h) are aligned outward to the monitor's buckets;
    each point covers the buckets starting in [start, start + step). Buckets older than a day
    are hourly after compaction. The convention is echoed; on the same rows every value equals
    POST /v1/calibration's and /v1/cross-entropy's defaults.
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
    if width is not None:  # points on the step's grid (hourly steps on hourly buckets)
        begin = begin // step_s * step_s
    # Without a step, the one point is the whole aligned range: on the grid of its own width it
    # would be cut in two (and reach back up to a width further).
    n_points = -(-(end - begin) // step_s)
    if n_points > settings.max_query_points:
        raise core.InputError(
            "step",
            f"gives {n_points} points; the limit is XENT_MAX_QUERY_POINTS={settings.max_query_points}",
        )
    n_bins = check_bins(n_bins)
    numeric_base: Literal["e", 2, 10] = "e" if base == "e" else int(base)  # type: ignore[assignment]
    points = series(
        store,
        config,
        begin,
        end,
        step_s,
        segment,
        n_bins=n_bins,
        closed=closed,
        base=log_base(numeric_base),
        cache=sums_cache(request.app.state, settings),
    )
    result = MetricsResult(
        monitor=name,
        start=begin,
        end=end,
        step=step_s,
        segment=segment,
        temperature=config.temperature,
        convention=MetricsConvention(
            base=numeric_base,
            unit=unit_of(numeric_base),
            n_bins=n_bins,
            closed=closed,
            target="positive_class" if config.binary else "top_label",
            ece=ECE,
            brier=BRIER,
            matches=MATCHES,
        ),
        points=_points(points, end, step_s),
    )
    return json_response(result)


@router.get(
    "/monitors/{name}/reliability-diagram",
    responses={
        **MONITOR_RESPONSES,
        200: {
            "content": {
                SVG: {"schema": {"type": "string"}},
                PNG: {"schema": {"type": "string", "format": "binary"}},
            },
            "description": "An SVG document; a PNG when `Accept` prefers image/png (the `png` extra).",
        },
        406: {
            "description": "image/png asked for, and the `png` extra (resvg-py) is not installed.",
            "content": {
                "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
            },
        },
    },
    response_class=Response,
)
def monitor_reliability_diagram(
    request: Request,
    name: MonitorName,
    store: StoreDep,
    window: WindowParam = None,
    to: TimeParam = None,
    segment: SegmentParam = None,
    n_bins: NBins = 15,
    closed: Closed = "right",
) -> Response:
    """Reliability diagram (SVG, as POST /v1/reliability-diagram) of a window's labelled rows (default 1h).

    With `Accept: image/png` (preferred to image/svg+xml), the same diagram as a 600×600 PNG on
    white, rendered by resvg (the `png` extra; without it a 406).
    """
    png = wants_png(request.headers.get("accept"))
    if png:
        check_png_available()  # before the store is read
    config = require(store, name)
    begin, end = time_range(config, None, to, window)
    n_bins = check_bins(n_bins)
    settings: Settings = request.app.state.settings
    summary = query.window_summary(
        store,
        config,
        begin,
        end,
        segment,
        n_bins=n_bins,
        closed=closed,
        cache=sums_cache(request.app.state, settings),
    )
    m = summary.metrics
    if m.n_labelled[0] == 0:
        raise core.InputError(
            "window", f"holds no labelled rows of monitor {config.name!r} in [{begin}, {end})"
        )
    target = "positive class" if config.binary else "top label"
    caption = [
        f"ece {m.ece[0]:.4f} · mce {m.mce[0]:.4f} · brier {m.brier[0]:.4f}",
        f"accuracy {m.accuracy[0]:.4f} · mean_confidence {m.mean_confidence[0]:.4f}",
        f"monitor {name} · {target} · N = {m.n_labelled[0]} labelled of {m.n[0]}",
        f"[{begin}, {end}) · equal-width bins, B = {n_bins}, closed {closed}",
        "bars: accuracy · shaded: gap to mean confidence (red: over-, cyan: under-confident)",
        "whiskers: 95% Wilson intervals",
    ]
    title = f"Reliability diagram ({target})"
    svg = reliability_svg(summary.reliability, title=title, caption=caption)
    return Response(svg_to_png(svg), media_type=PNG) if png else Response(svg, media_type=SVG)


@router.post("/monitors/{name}/temperature", response_model=TemperatureResult, responses=MONITOR_RESPONSES)
def fit_monitor_temperature(
    name: MonitorName,
    store: StoreDep,
    window: WindowParam = None,
    to: TimeParam = None,
) -> Response:
    """Refit the temperature on the reservoir's labelled rows of a window (default 30d), and store it.

    From then on each batch also records its mean confidence after this temperature
    (`expected_accuracy_calibrated` in the metrics).
    """
    config = require(store, name)
    begin, end = time_range(config, None, to, window, default_span="30d")
    rows = store.reservoir(name, begin, end, max(config.reservoir_size, 1))
    if not rows:
        raise core.InputError("window", f"holds no reservoir rows of monitor {name!r} in [{begin}, {end})")
    logits, labels = reservoir_logits(rows, config)
    fit = core.fit_temperature(logits, labels=labels, validate=False)
    if math.isfinite(fit.temperature) and fit.temperature > 0:
        store.set_temperature(name, fit.temperature)
    return json_response(
        TemperatureResult(
            monitor=name,
            temperature=fit.temperature,
            nll=fit.nll,
            nll_initial=fit.nll_initial,
            n=len(rows),
            converged=fit.converged,
            reason=fit.reason,
            start=begin,
            end=end,
        )
    )


def _shares(values: FloatArray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


@router.get("/monitors/{name}/drift", response_model=DriftResult, responses=MONITOR_RESPONSES)
def monitor_drift(
    name: MonitorName,
    store: StoreDep,
    window: WindowParam = None,
    to: TimeParam = None,
    reference_from: TimeParam = None,
    reference_to: TimeParam = None,
    segment: SegmentParam = None,
) -> Response:
    """Jensen–Shannon divergence (base 2) of label and predicted-class distributions against a reference.

    The window defaults to the last hour, the reference to the window just before it.
    """
    config = require(store, name)
    begin, end = time_range(config, None, to, window)
    ref_end = parse_time(reference_to, "reference_to")
    ref_begin = parse_time(reference_from, "reference_from")
    ref_end_i = begin if ref_end is None else math.ceil(ref_end / config.bucket_s) * config.bucket_s
    ref_begin_i = (
        ref_end_i - (end - begin)
        if ref_begin is None
        else math.floor(ref_begin / config.bucket_s) * config.bucket_s
    )
    if ref_begin_i >= ref_end_i:
        raise core.InputError(
            "reference_from", f"must be before reference_to ({ref_end_i}); got {ref_begin_i}"
        )
    current = query.window(store, config, begin, end, segment).stats
    reference = query.window(store, config, ref_begin_i, ref_end_i, segment).stats

    def js(a: MonitorStats | None, b: MonitorStats | None, attr: str, count: str) -> float | None:
        if a is None or b is None or getattr(a, count) == 0 or getattr(b, count) == 0:
            return None
        return core.js_drift(getattr(a, attr)(), getattr(b, attr)())

    def dist(s: MonitorStats | None, attr: str, count: str) -> list[float | None] | None:
        return None if s is None or getattr(s, count) == 0 else _shares(getattr(s, attr)())

    return json_response(
        DriftResult(
            monitor=name,
            base=2,
            label_js=js(current, reference, "label_distribution", "n_labelled"),
            predicted_js=js(current, reference, "predicted_distribution", "n_predictions"),
            window=[begin, end],
            reference=[ref_begin_i, ref_end_i],
            n=0 if current is None else current.n_predictions,
            n_reference=0 if reference is None else reference.n_predictions,
            label_distribution=dist(current, "label_distribution", "n_labelled"),
            reference_label_distribution=dist(reference, "label_distribution", "n_labelled"),
            predicted_distribution=dist(current, "predicted_distribution", "n_predictions"),
            reference_predicted_distribution=dist(reference, "predicted_distribution", "n_predictions"),
        )
    )
