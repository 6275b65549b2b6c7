"""``/v1/monitors/{name}/…`` queries: metrics over time, reliability diagram, temperature refit, drift."""

import math
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Query, Request
from starlette.datastructures import State
from starlette.responses import Response

from service import core
from service.api.deps import StoreDep
from service.api.formats.reliability_png import DIAGRAM_RESPONSES, diagram_response, png_asked, svg_to_png
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

from . import json_response, log_base, unit_of
from .monitor_params import (  # noqa: F401  (public names of this module before the split)
    DURATION_PATTERN,
    EPOCH_PATTERN,
    SegmentParam,
    StepParam,
    TimeParam,
    WindowParam,
    parse_duration,
    parse_time,
    time_range,
)
from .monitors import MONITOR_RESPONSES, MonitorName, SharedPathRoute, require

router = APIRouter(prefix="/v1", tags=["monitors"], route_class=SharedPathRoute)

ECE = "Σ_b (n_b / N) |mean confidence_b - accuracy_b| over non-empty equal-width bins [fl(i/B), fl((i+1)/B)]"
BRIER = "Σ_k (p_k - 1[y = k])², halved for two classes (brier_scale auto)"
MATCHES = (
    "POST /v1/calibration (defaults, with this n_bins and closed) and POST /v1/cross-entropy on the same rows"
)


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
    responses={**MONITOR_RESPONSES, **DIAGRAM_RESPONSES},
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
    png = png_asked(request.headers.get("accept"))  # before the store is read
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
    return diagram_response(svg_to_png(svg) if png else svg)


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
