"""The report of an offline scoring job: the ``/v1/calibration`` scalars that merge exactly, plus CE.

Every number here comes from merged :class:`~service.core.MonitorStats` and equals what
``/v1/calibration`` (default conventions, or the ``n_bins`` / ``closed`` given) and
``/v1/cross-entropy`` answer on all the rows at once. Scalars of ``/v1/calibration`` that need
the rows themselves (sorting, kernels, per-class second moments) are listed in ``left_out``
with the reason; none is approximated.
"""

import math
import os
import tempfile
from datetime import date, timedelta
from typing import Any

import numpy as np

from service.core import MonitorStats

from .reduce import By, Summary

UNITS = {"e": "nats", "2": "bits", "10": "hartleys"}
BASES = {"e": math.e, "2": 2.0, "10": 10.0}

#: ``/v1/calibration`` scalars that need more than sums per fine bin, and why.
LEFT_OUT = {
    "smooth_ece": "a kernel smoother over every (confidence, outcome) pair with a bandwidth searched on "
    "all of them: not a sum over partitions",
    "smooth_ece_sigma": "the bandwidth of smooth_ece",
    "ace_nixon": "equal-count ranges of every class's probabilities: needs the sorted values of all rows",
    "spiegelhalter_z": "needs Σ (1 - 2p)² p (1 - p), which MonitorStats does not keep",
    "spiegelhalter_p": "follows spiegelhalter_z",
    "ks_statistic": "the cumulative calibration curve over all rows sorted by confidence",
    "ks_p": "follows ks_statistic",
    "kuiper_statistic": "the cumulative calibration curve over all rows sorted by confidence",
    "kuiper_p": "follows kuiper_statistic",
    "brier_reliability": "the Murphy decomposition bins every class's probability (second moments per "
    "class and bin), which MonitorStats does not keep",
    "brier_resolution": "as brier_reliability",
    "brier_uncertainty": "as brier_reliability",
    "brier_within_bin_variance": "as brier_reliability",
    "brier_within_bin_covariance": "as brier_reliability",
    "mean_entropy": "(/v1/cross-entropy) MonitorStats keeps no entropy sum",
}
_WEIGHTED_OUT = {"debiased_l2": "its bias correction n_b - 1 assumes unit row weights"}
_SERIES_METRICS = ("cross_entropy", "accuracy", "ece", "brier", "mean_confidence")


def metrics(stats: MonitorStats, *, n_bins: int, closed: str, base: str) -> dict[str, float]:
    """The exact scalars: ``/v1/calibration``'s names (``nll`` in `base`) and ``cross_entropy``."""
    errors = stats.calibration_errors(n_bins, closed=closed)  # type: ignore[arg-type]
    hist = stats.positive if stats.binary and stats.positive is not None else stats.top  # routes' target
    rows, weight, conf, hits = hist.coarsen(n_bins, closed)  # type: ignore[arg-type]
    valid = rows > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(valid, conf / weight - hits / weight, 0.0)
        accuracy = np.where(valid, hits / weight, 0.0)
        correction = np.where(rows >= 2, accuracy * (1 - accuracy) / (rows - 1), 0.0)
    labelled = stats.weight_labelled
    out = {
        "calibration_error": errors["ece"],
        "ece": errors["ece"],
        "mce": errors["mce"],
        "rmsce": errors["rmsce"],
        # netcal's ACE: uniform weight over non-empty bins; Kumar et al.'s debiased l2 (core.binned)
        "ace_netcal": float(np.abs(gap).sum() / max(int(valid.sum()), 1)) if labelled else math.nan,
    }
    if not stats.weighted:
        usable = rows >= 2
        square = (
            np.where(usable, weight / labelled, 0.0) * np.where(usable, gap * gap - correction, 0.0)
        ).sum()
        out["debiased_l2"] = float(np.sqrt(max(square, 0.0))) if labelled else math.nan
    ce = stats.cross_entropy(base=BASES[base])
    accuracy_all = stats.accuracy()
    out |= {
        "brier": stats.brier(),
        "nll": ce,
        "accuracy": accuracy_all,
        "mean_confidence": stats.mean_confidence(),
        "confidence_gap": stats.mean_confidence() - accuracy_all,
        "cross_entropy": ce,
    }
    return out


def report(
    summary: Summary,
    stats: MonitorStats,
    *,
    header: dict[str, Any],
    n_bins: int,
    closed: str,
    base: str,
    by: By | None,
) -> dict[str, Any]:
    """The JSON report (``NaN`` / infinities as strings, as ``xent score --json`` writes them)."""
    left_out = dict(LEFT_OUT) | (_WEIGHTED_OUT if stats.weighted else {})
    out: dict[str, Any] = {
        **header,
        "n": summary.rows,
        "n_classes": stats.n_classes,
        "weighted": stats.weighted,
        "convention": {
            "n_bins": n_bins,
            "closed": closed,
            "binning": "uniform",
            "edge_rule": "exact",
            "target": "positive_class" if stats.binary else "top_label",
            "brier_scale": "half" if stats.n_classes == 2 else "sum",
            "base": base,
            "unit": UNITS[base],
            "matches": "/v1/calibration and /v1/cross-entropy on all rows at once (default conventions "
            "with these n_bins and closed)",
        },
        "metrics": _json_floats(metrics(stats, n_bins=n_bins, closed=closed, base=base)),
        "left_out": left_out,
    }
    if by is not None:
        out["series"] = {"by": by, "groups": _series(summary, by, n_bins=n_bins, closed=closed, base=base)}
    return out


def _series(summary: Summary, by: By, *, n_bins: int, closed: str, base: str) -> list[dict[str, Any]]:
    def order(key: Any) -> tuple[bool, str | int]:
        return key is None, key if by == "day" else str(key)

    rows = []
    for key in sorted(summary.groups, key=order):
        stats = summary.groups[key]
        values = metrics(stats, n_bins=n_bins, closed=closed, base=base)
        label: object
        if by == "day":
            label = (date(1970, 1, 1) + timedelta(days=int(key))).isoformat()
        else:  # JSON keeps strings, numbers, booleans and null; anything else (dates, bytes) as text
            label = key if key is None or isinstance(key, str | int | float | bool) else str(key)
        rows.append(
            {
                "key": label,
                "n": stats.n_labelled,
                "metrics": _json_floats({name: values[name] for name in _SERIES_METRICS}),
            }
        )
    return rows


def _json_floats(values: dict[str, float]) -> dict[str, float | str]:
    out: dict[str, float | str] = {}
    for name, value in values.items():
        v = float(value)
        out[name] = (
            v if math.isfinite(v) else ("NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity"))
        )
    return out


def reliability_svg(stats: MonitorStats, *, n_bins: int, closed: str, values: dict[str, float]) -> str:
    """The ``/v1/reliability-diagram`` drawing of the merged statistics (no FastAPI import)."""
    from service.api.formats.reliability_svg import reliability_svg as draw

    target = "positive_class" if stats.binary else "top_label"
    shown = [f"{name} {values[name]:.4f}" for name in ("ece", "mce", "brier", "accuracy", "mean_confidence")]
    caption = [
        " · ".join(shown[:3]),
        " · ".join(shown[3:]) + " · smooth_ece left out (not mergeable)",
        f"{target} · N = {stats.n_labelled}",
        f"uniform bins, B = {n_bins} (exact edges), closed {closed}, mass weights",
        "bars: accuracy · shaded: gap to mean confidence (red: over-, cyan: under-confident)",
        "whiskers: 95% Wilson intervals",
    ]
    title = f"Reliability diagram ({'positive class' if stats.binary else 'top label'})"
    rel = stats.reliability(n_bins, closed=closed)  # type: ignore[arg-type]
    return draw(rel, title=title, caption=caption)


def write_atomically(path: str, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same directory and a rename."""
    directory = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".xent-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
