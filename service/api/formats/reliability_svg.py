"""A reliability diagram as a self-contained SVG document (no plotting library).

Top panel: per-bin accuracy bars over [lower, upper], the diagonal, the gap between
accuracy and mean confidence shaded (red: over-confident, blue: under-confident) with
Wilson-interval whiskers. Bottom panel: the confidence histogram. Caption: metric
values and the convention. Colours come from CSS classes with a
``prefers-color-scheme: dark`` variant, so the diagram follows the viewer's theme.
"""

import math
from collections.abc import Sequence
from xml.sax.saxutils import escape

import numpy as np

from service.core import Reliability

WIDTH = 600
HEIGHT = 600
_LEFT, _RIGHT = 64, 24
_TOP = 44
_PLOT = WIDTH - _LEFT - _RIGHT
_HIST_TOP = _TOP + 300 + 28
_HIST_HEIGHT = 80
_CAPTION_TOP = _HIST_TOP + _HIST_HEIGHT + 34

_STYLE = """
svg { font-family: system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; }
.bg { fill: #ffffff; }
.frame { fill: none; stroke: #6b7280; stroke-width: 1; }
.grid { stroke: #e5e7eb; stroke-width: 1; }
.diag { stroke: #111827; stroke-width: 1.5; stroke-dasharray: 5 4; }
.bar { fill: #2563eb; fill-opacity: 0.85; }
.over { fill: #dc2626; fill-opacity: 0.35; }
.under { fill: #0891b2; fill-opacity: 0.35; }
.whisker { stroke: #111827; stroke-width: 1.2; }
.hist { fill: #6b7280; }
.text { fill: #111827; font-size: 13px; }
.small { fill: #374151; font-size: 11px; }
.title { fill: #111827; font-size: 16px; font-weight: 600; }
@media (prefers-color-scheme: dark) {
  .bg { fill: #0f172a; }
  .frame { stroke: #94a3b8; }
  .grid { stroke: #1e293b; }
  .diag { stroke: #e2e8f0; }
  .bar { fill: #60a5fa; }
  .over { fill: #f87171; fill-opacity: 0.45; }
  .under { fill: #22d3ee; fill-opacity: 0.45; }
  .whisker { stroke: #e2e8f0; }
  .hist { fill: #94a3b8; }
  .text, .title { fill: #f1f5f9; }
  .small { fill: #cbd5e1; }
}
"""


def _x(value: float) -> float:
    return _LEFT + _PLOT * value


def _y(value: float) -> float:
    return _TOP + 300 * (1 - value)


def _fmt(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".") if math.isfinite(value) else "0"


def _line(x1: float, y1: float, x2: float, y2: float, cls: str) -> str:
    return f'<line class="{cls}" x1="{_fmt(x1)}" y1="{_fmt(y1)}" x2="{_fmt(x2)}" y2="{_fmt(y2)}"/>'


def _text(x: float, y: float, text: str, cls: str = "small", anchor: str = "start") -> str:
    return f'<text class="{cls}" x="{_fmt(x)}" y="{_fmt(y)}" text-anchor="{anchor}">{escape(text)}</text>'


def _rect(x0: float, y0: float, x1: float, y1: float, cls: str) -> str:
    x, y = min(x0, x1), min(y0, y1)
    return (
        f'<rect class="{cls}" x="{_fmt(x)}" y="{_fmt(y)}" '
        f'width="{_fmt(abs(x1 - x0))}" height="{_fmt(abs(y1 - y0))}"/>'
    )


def _axes() -> list[str]:
    out = [_rect(_LEFT, _TOP, _LEFT + _PLOT, _TOP + 300, "frame")]
    for tick in np.linspace(0, 1, 6):
        t = float(tick)
        out.append(_line(_x(t), _TOP, _x(t), _TOP + 300, "grid"))
        out.append(_line(_LEFT, _y(t), _LEFT + _PLOT, _y(t), "grid"))
        out.append(_text(_x(t), _HIST_TOP + _HIST_HEIGHT + 16, f"{t:.1f}", anchor="middle"))
        out.append(_text(_LEFT - 8, _y(t) + 4, f"{t:.1f}", anchor="end"))
    out.append(f'<line class="diag" x1="{_x(0)}" y1="{_y(0)}" x2="{_x(1)}" y2="{_y(1)}"/>')
    out.append(
        f'<text class="text" x="18" y="{_TOP + 150}" text-anchor="middle" '
        f'transform="rotate(-90 18 {_TOP + 150})">accuracy</text>'
    )
    return out


def _bins(rel: Reliability) -> list[str]:
    out: list[str] = []
    filled = rel.weight > 0
    for i in np.flatnonzero(filled):
        lo, hi = float(rel.lower[i]), float(rel.upper[i])
        if hi <= lo:  # an overflow bin [1, 1]: draw it as a sliver at the right edge
            lo, hi = 1 - 0.006, 1.0
        acc, conf = float(rel.accuracy[i]), float(rel.confidence[i])
        out.append(_rect(_x(lo) + 0.5, _y(0), _x(hi) - 0.5, _y(acc), "bar"))
        out.append(_rect(_x(lo) + 0.5, _y(acc), _x(hi) - 0.5, _y(conf), "over" if conf > acc else "under"))
        mid = (_x(lo) + _x(hi)) / 2
        low, high = float(rel.wilson_low[i]), float(rel.wilson_high[i])
        out.append(
            f'<line class="whisker" x1="{mid}" y1="{_fmt(_y(low))}" x2="{mid}" y2="{_fmt(_y(high))}"/>'
        )
    return out


def _histogram(rel: Reliability) -> list[str]:
    out = [_rect(_LEFT, _HIST_TOP, _LEFT + _PLOT, _HIST_TOP + _HIST_HEIGHT, "frame")]
    peak = float(rel.weight.max()) if rel.weight.size else 0.0
    for i in np.flatnonzero(rel.weight > 0):
        lo, hi = float(rel.lower[i]), float(rel.upper[i])
        if hi <= lo:
            lo, hi = 1 - 0.006, 1.0
        height = _HIST_HEIGHT * float(rel.weight[i]) / peak
        bottom = _HIST_TOP + _HIST_HEIGHT
        out.append(_rect(_x(lo) + 0.5, bottom - height, _x(hi) - 0.5, bottom, "hist"))
    label = str(int(peak)) if peak.is_integer() else f"{peak:.4g}"  # sample weights: a weight sum
    out.append(f'<text class="small" x="{_LEFT - 8}" y="{_HIST_TOP + 12}" text-anchor="end">{label}</text>')
    out.append(
        f'<text class="text" x="{_LEFT + _PLOT / 2}" y="{_HIST_TOP + _HIST_HEIGHT + 32}" '
        'text-anchor="middle">confidence (histogram of samples per bin)</text>'
    )
    return out


def reliability_svg(rel: Reliability, *, title: str, caption: Sequence[str]) -> str:
    """The SVG document for one reliability diagram; `caption` lines go under the plots."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title, {chr(34): "&quot;"})}">',
        f"<title>{escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        f'<rect class="bg" x="0" y="0" width="{WIDTH}" height="{HEIGHT}"/>',
        f'<text class="title" x="{WIDTH / 2}" y="26" text-anchor="middle">{escape(title)}</text>',
        *_axes(),
        *_bins(rel),
        *_histogram(rel),
    ]
    for i, line in enumerate(caption):
        parts.append(
            f'<text class="small" x="{_LEFT}" y="{_CAPTION_TOP + 16 * i + 16}">{escape(line)}</text>'
        )
    parts.append("</svg>")
    return "\n".join(parts)
