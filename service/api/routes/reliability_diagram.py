"""``POST /v1/reliability-diagram``."""

from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import scoring
from service.api.formats.inputs import Body
from service.api.formats.reliability_svg import reliability_svg
from service.api.schemas.calibration import CalibrationBody, CalibrationOptions

from . import PROBLEM_RESPONSES, request_body
from .calibration import ARRAY_FIELDS, convention_result, read_calibration_request

router = APIRouter(prefix="/v1", tags=["calibration"])

SVG = "image/svg+xml"
_CAPTION_METRICS = ("ece", "mce", "smooth_ece", "brier", "accuracy", "mean_confidence")


@router.post(
    "/reliability-diagram",
    responses={
        **PROBLEM_RESPONSES,
        200: {"content": {SVG: {"schema": {"type": "string"}}}, "description": "An SVG document."},
    },
    response_class=Response,
    openapi_extra=request_body(CalibrationBody, ARRAY_FIELDS),
)
@scoring(inline_bytes=0, roles=ARRAY_FIELDS)
def draw_reliability_diagram(body: Body) -> Response:
    """Reliability diagram (SVG, 600×600, light and dark themes) of a calibration request.

    Takes the body of POST /v1/calibration; the bins follow the same options and
    the caption states the metric values and the convention. Top-label or
    positive-class targets only (one diagram).
    """
    options = CalibrationOptions.model_validate(body.scalars(ARRAY_FIELDS))
    prediction, labels, convention, _ = read_calibration_request(body, options)
    wanted = ["reliability", "ece", "mce", "smooth_ece", "brier", "accuracy", "mean_confidence"]
    report = core.calibration_report(labels, prediction.dist, convention, metrics=wanted)
    if report.target in ("classwise", "marginal"):
        raise core.InputError(
            "target", f'must be "top_label" or "positive_class" for a diagram; got "{report.target}"'
        )
    conv = convention_result(options, prediction, report)
    s = report.scalars
    shown = [f"{name} {s[name]:.4f}" for name in _CAPTION_METRICS if name in s]
    preset = f"preset {conv.preset} · " if conv.preset else ""
    caption = [
        " · ".join(shown[:3]),
        " · ".join(shown[3:]),
        f"{preset}{conv.target} · N = {labels.shape[0]}",
        f"{conv.binning} bins, B = {conv.n_bins} ({conv.edge_rule} edges), closed {conv.closed}, "
        f"{conv.bin_weighting} weights",
        "bars: accuracy · shaded: gap to mean confidence (red: over-, cyan: under-confident)",
        f"whiskers: {conv.level:.0%} Wilson intervals",
    ]
    title = f"Reliability diagram ({'positive class' if conv.target == 'positive_class' else 'top label'})"
    svg = reliability_svg(report.reliability[0], title=title, caption=caption)
    return Response(svg, media_type=SVG)
