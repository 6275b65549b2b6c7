"""The query parameters of a monitor's reads: times, windows, steps and segments, and their parsing.

The document states the forms (``EPOCH_PATTERN``, ``DURATION_PATTERN``); the parsers accept more
(spaces, any digits) and name the parameter in their 422.
"""

import math
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query

from service import clock, core
from service.store import MonitorConfig

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
    to = clock.now() if to is None else to
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
