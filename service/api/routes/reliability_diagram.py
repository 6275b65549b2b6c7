"""``POST /v1/reliability-diagram``."""

import anyio
from fastapi import APIRouter, Request
from starlette.responses import Response

from service import core
from service.api.deps import scoring
from service.api.formats.inputs import Body
from service.api.formats.reliability_png import (
    DIAGRAM_RESPONSES,
    diagram_response,
    png_asked,
    svg_to_png,
)
from service.api.formats.reliability_svg import reliability_svg
from service.api.schemas.calibration import CalibrationBody, CalibrationOptions

from . import PROBLEM_RESPONSES, request_body
from .calibration import ARRAY_FIELDS, convention_result, read_calibration_request, read_sample_weight
from .calibration_sequences import sequence_calibration

router = APIRouter(prefix="/v1", tags=["calibration"])

_CAPTION_METRICS = ("ece", "mce", "smooth_ece", "brier", "accuracy", "mean_confidence")


@router.post(
    "/reliability-diagram",
    responses={**PROBLEM_RESPONSES, **DIAGRAM_RESPONSES},
    response_class=Response,
    openapi_extra=request_body(CalibrationBody, ARRAY_FIELDS),
)
async def draw_reliability_diagram(request: Request) -> Response:
    """Reliability diagram (SVG, 600×600, light and dark themes) of a calibration request.

    Takes the body of POST /v1/calibration; the bins follow the same options and
    the caption states the metric values and the convention. Top-label or
    positive-class targets only (one diagram); B×T×K token sequences draw the top-1 token's.
    With `sample_weight`, bars are weighted means, the histogram the weight per bin and the
    caption leaves out smooth ECE (no weighted form).
    With `Accept: image/png` (preferred to image/svg+xml), the same diagram as a 600×600 PNG on
    white, rendered by resvg (the `png` extra; without it a 406).
    """
    png = png_asked(request.headers.get("accept"))
    response = await _svg(request)
    if not png or response.status_code != 200:
        return response
    return diagram_response(await anyio.to_thread.run_sync(svg_to_png, bytes(response.body).decode()))


@scoring(inline_bytes=0, roles=ARRAY_FIELDS)
def _svg(body: Body) -> Response:
    """The diagram as SVG (see :func:`draw_reliability_diagram`)."""
    options = body.options(CalibrationOptions, ARRAY_FIELDS)
    wanted = ["reliability", "ece", "mce", "smooth_ece", "brier", "accuracy", "mean_confidence"]
    name = body.pick("logits", "probs")
    values = body.array(name, bfloat16=True)
    if values.ndim == 3:  # B×T×K token sequences: the top-1 token's diagram (no Brier: whole rows)
        found = sequence_calibration(body, options, name, values, [m for m in wanted if m != "brier"])
        report, conv, s, n = found.report, found.convention, found.scalars, found.n
    else:
        prediction, labels, convention, _ = read_calibration_request(body, options)
        weights = read_sample_weight(body)
        if weights is not None:  # smooth ECE is built from the order of the rows: no weighted form
            wanted.remove("smooth_ece")
        report = core.calibration_report(
            labels, prediction.dist, convention, metrics=wanted, sample_weight=weights
        )
        if report.target in ("classwise", "marginal"):
            raise core.InputError(
                "target", f'must be "top_label" or "positive_class" for a diagram; got "{report.target}"'
            )
        conv = convention_result(options, prediction, report, weighted=weights is not None)
        s, n = report.scalars, labels.shape[0]
    shown = [f"{name} {s[name]:.4f}" for name in _CAPTION_METRICS if name in s]
    preset = f"preset {conv.preset} · " if conv.preset else ""
    caption = [
        " · ".join(shown[:3]),
        " · ".join(shown[3:]),
        f"{preset}{conv.target} · N = {n}"
        + (" · sample_weight: weighted bins" if conv.sample_weight else ""),
        f"{conv.binning} bins, B = {conv.n_bins} ({conv.edge_rule} edges), closed {conv.closed}, "
        f"{conv.bin_weighting} weights",
        "bars: accuracy · shaded: gap to mean confidence (red: over-, cyan: under-confident)",
        f"whiskers: {conv.level:.0%} Wilson intervals",
    ]
    title = f"Reliability diagram ({'positive class' if conv.target == 'positive_class' else 'top label'})"
    svg = reliability_svg(report.reliability[0], title=title, caption=caption)
    return diagram_response(svg)


# A scoring route (dispatched as one, under the compute deadline): its SVG is scored with body 0 inline.
draw_reliability_diagram.inline_bytes = 0  # type: ignore[attr-defined]
