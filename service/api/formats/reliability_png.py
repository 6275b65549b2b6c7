"""PNG reliability diagrams: the SVG rasterised by resvg (the ``png`` extra, PyPI ``resvg-py``).

resvg is a Rust SVG renderer shipped as a self-contained wheel (no Cairo, no browser). Without
the extra, a request that asks only for ``image/png`` is a 406 saying how to get it; the SVG
stays the default answer.
"""

import re
from typing import Any

from starlette.responses import Response

from ..errors.problems import ProblemError

PNG = "image/png"
SVG = "image/svg+xml"
_RANGE = re.compile(r"^\s*([^;\s]+)\s*(?:;(.*))?$")
_Q = re.compile(r"(?:^|;)\s*q\s*=\s*([0-9.]+)")
#: The 200 and 406 answers of a reliability-diagram route (the routes add their problem answers).
DIAGRAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {
            SVG: {"schema": {"type": "string"}},
            PNG: {"schema": {"type": "string", "format": "binary"}},
        },
        "description": "An SVG document; a PNG when `Accept` prefers image/png (the `png` extra).",
    },
    406: {
        "description": "image/png asked for, and the `png` extra (resvg-py) is not installed.",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}},
    },
}


def wants_png(accept: str | None) -> bool:
    """Whether `accept` prefers ``image/png`` to ``image/svg+xml`` (ties, ``*/*`` and none: SVG).

    Examples
    --------
    >>> wants_png("image/png"), wants_png("image/svg+xml, image/png"), wants_png(None)
    (True, False, False)
    >>> wants_png("image/svg+xml;q=0.5, image/png")
    True
    """
    if not accept:
        return False
    quality = {PNG: 0.0, SVG: 0.0}
    for part in accept.split(","):
        match = _RANGE.match(part)
        if match is None:
            continue
        media, params = match.group(1).lower(), match.group(2) or ""
        q = _Q.search(params)
        try:
            weight = float(q.group(1)) if q else 1.0
        except ValueError:
            weight = 0.0
        for candidate in quality:
            if media == candidate or media in ("*/*", "image/*"):
                # an exact range outranks a wildcard for the same type
                exact = media == candidate
                if exact or quality[candidate] == 0.0:
                    quality[candidate] = weight if exact else max(quality[candidate], weight * 0.999)
    return quality[PNG] > quality[SVG]


def png_asked(accept: str | None) -> bool:
    """Whether the `accept` header asks for PNG (:func:`wants_png`); its 406 first if PNG cannot be made.

    Called before the request's data is read, so a 406 costs nothing.
    """
    png = wants_png(accept)
    if png:
        check_png_available()
    return png


def diagram_response(image: str | bytes) -> Response:
    """The diagram's answer: SVG text, or PNG bytes (from :func:`svg_to_png`)."""
    if isinstance(image, bytes):
        return Response(image, media_type=PNG)
    return Response(image, media_type=SVG)


def check_png_available() -> None:
    """Raise the 406 of a PNG request when the ``png`` extra is not installed."""
    try:
        import resvg_py  # noqa: F401
    except ImportError:
        raise ProblemError(
            406,
            "image/png needs the `png` extra (pip install 'xent-service[png]', which adds resvg-py); "
            "ask for image/svg+xml, or convert the SVG yourself (docs: reliability diagrams)",
        ) from None


def svg_to_png(svg: str) -> bytes:
    """`svg` rendered to PNG at its own size (600 × 600) on a white background."""
    import resvg_py

    return bytes(resvg_py.svg_to_bytes(svg_string=svg, background="#ffffff"))
