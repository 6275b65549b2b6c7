"""The ceiling for a small request: only the work any such service must do, as raw ASGI.

One handler per measured route (``/v1/cross-entropy``, ``/v1/divergence``, ``/v1/calibration``
with its default metrics, ``/v1/apply`` with a bare temperature, and a monitor's small write,
``/v1/monitors/bench/observations``: :mod:`benchmarks.essential_monitor`): the JSON body is parsed by
orjson, turned into arrays, checked by Xent's own checks (finite logits, probabilities summing
to 1, labels in range), computed by Xent's own core functions — exactly what Xent's default
answer computes — and answered with Xent's answer, field for field (``benchmarks.http`` checks
the two answers are equal). Nothing else: no FastAPI, no Pydantic, no middleware (request ids,
metrics, access log, auth, limits, deadlines), no option models, no problem+json, no envelope or
binary formats. Xent's CPU per request minus this server's is the cost of Xent's own layers.
"""

import gc
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from benchmarks.essential_monitor import NAME, EssentialMonitor
from service import core
from service.api.routes.calibration import P_VALUES
from service.api.routes.divergence import MATCHES, ZERO_CONVENTION
from service.core.calibration.brier import brier_factor

Fields = dict[str, Any]

CROSS_ENTROPY_CONVENTION = {
    "classes": None,
    "pos_label": None,
    "input": "logits",
    "form": "categorical",
    "truth": "labels",
    "dtype": "float64",
    "base": "e",
    "unit": "nats",
    "reduction": "mean",
    "eps": 0.0,
    "n_clipped": 0,
    "tolerance": 1e-6,
    "n_normalized": 0,
    "label_smoothing": 0.0,
    "class_weights": False,
    "sample_weight": False,
    "pos_weight": None,
    "weight": False,
    "ignore_index": None,
    "top_k": None,
    "matches": "torch.nn.functional.cross_entropy",
}
DIVERGENCE_CONVENTION = {
    "p": "logits",
    "q": "logits",
    "dtype": "float64",
    "base": "e",
    "unit": "nats",
    "reduction": "mean",
    "elementwise": False,
    "broadcast": None,
    "sample_weight": False,
    "eps": 0.0,
    "n_clipped": 0,
    "tolerance": 1e-6,
    "n_normalized": 0,
    "zero_convention": ZERO_CONVENTION,
    "matches": MATCHES,
}
DIVERGENCE_STATS = (
    "kl_pq",
    "kl_qp",
    "js_divergence",
    "js_distance",
    "entropy_p",
    "entropy_q",
    "cross_entropy_pq",
)
#: The default calibration convention: no preset, no option sent.
CALIBRATION = core.resolve_convention(None, {})


def _number(value: float) -> float | str:
    """A float as Xent's answers write it: non-finite values as "Infinity", "-Infinity", "NaN"."""
    value = float(value)
    if math.isfinite(value):
        return value
    return "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")


def _floats(values: np.ndarray) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values.tolist()]


def cross_entropy(fields: Fields) -> bytes:
    """Mean cross-entropy of `labels` under categorical `logits`, accuracy and mean entropy."""
    logits = core.check_logits(np.array(fields["logits"], dtype=np.float64))
    labels = core.check_labels(np.array(fields["labels"], dtype=np.int64), logits.shape[1])
    dist = core.Distribution.from_logits(logits, validate=False)
    dist.summarise(top=True, entropy=True, labels=labels)
    losses = core.nll(labels, dist)
    answer = {
        "n": labels.size,
        "n_ignored": 0,
        "loss": _number(float(np.add.reduce(losses, dtype=np.float64)) / losses.size),
        "losses": None,
        "accuracy": _number(int(np.count_nonzero(dist.predicted() == labels)) / labels.size),
        "top_k_accuracy": None,
        "mean_entropy": _number(float(np.add.reduce(dist.entropy(), dtype=np.float64)) / labels.size),
        "convention": CROSS_ENTROPY_CONVENTION,
        "language_model": None,
    }
    return orjson.dumps(answer)


def divergence(fields: Fields) -> bytes:
    """Row means of KL both ways, JS divergence and distance and the entropies, `p_logits` vs `q_logits`."""
    p_logits = core.check_logits(np.array(fields["p_logits"], dtype=np.float64), field="p_logits")
    q_logits = core.check_logits(np.array(fields["q_logits"], dtype=np.float64), field="q_logits")
    if p_logits.shape != q_logits.shape:
        raise core.InputError("q_logits", "must have the shape of `p_logits`")
    p = core.Distribution.from_logits(p_logits, validate=False)
    q = core.Distribution.from_logits(q_logits, validate=False)
    rows = core.divergence_rows(p, q)
    n = p_logits.shape[0]
    values = {
        "kl_pq": rows.kl_pq,
        "kl_qp": rows.kl_qp,
        "js_divergence": rows.js,
        "js_distance": np.sqrt(rows.js),
        "entropy_p": rows.entropy_p,
        "entropy_q": rows.entropy_q,
        "cross_entropy_pq": rows.cross_entropy_pq,
    }
    mean = {name: _number(np.add.reduce(values[name], dtype=np.float64) / n) for name in DIVERGENCE_STATS}
    answer = {
        "n": n,
        "mean": mean,
        "sum": None,
        "per_sample": None,
        "terms": None,
        "convention": DIVERGENCE_CONVENTION,
    }
    return orjson.dumps(answer)


def calibration(fields: Fields) -> bytes:
    """Every default calibration metric, the reliability bins and the convention, of `probs` and `labels`."""
    probs = core.check_probabilities(np.array(fields["probs"], dtype=np.float64), tolerance=1e-6)
    labels = core.check_labels(np.array(fields["labels"], dtype=np.int64), probs.shape[1])
    dist = core.Distribution.from_probs(probs, validate=False)
    report = core.calibration_report(labels, dist, CALIBRATION)
    conv = report.convention
    bins = [
        {
            "group": r.group,
            "lower": r.lower.tolist(),
            "upper": r.upper.tolist(),
            "count": r.count.astype(np.int64).tolist(),
            "confidence": _floats(r.confidence),
            "accuracy": _floats(r.accuracy),
            "gap": _floats(r.gap),
            "wilson_low": _floats(r.wilson_low),
            "wilson_high": _floats(r.wilson_high),
        }
        for r in report.reliability
    ]
    factor = brier_factor(conv.brier_scale, dist.n_classes, binary=dist.binary)
    convention = {
        "classes": None,
        "pos_label": None,
        "input": "probs",
        "form": "categorical",
        "dtype": "float64",
        "preset": conv.preset,
        "binning": conv.binning,
        "edge_rule": conv.edge_rule,
        "quantile_method": conv.quantile_method,
        "n_bins": report.n_bins,
        "closed": conv.closed,
        "overflow_bin": conv.overflow_bin,
        "exclude_zero": conv.exclude_zero,
        "clip": conv.clip,
        "float32_confidence": conv.float32_confidence,
        "top_k": None,
        "ignore_index": None,
        "sample_weight": False,
        "input_dtype_means": conv.input_dtype_means,
        "min_bin_count": conv.min_bin_count,
        "n_excluded_bins": report.n_excluded_bins,
        "target": report.target,
        "norm": conv.norm,
        "bin_weighting": conv.bin_weighting,
        "brier_scale": "half" if factor == 0.5 else "sum",
        "base": "e",
        "unit": "nats",
        "eps": float(dist.eps),
        "n_clipped": int(dist.n_clipped),
        "tolerance": 1e-6,
        "n_normalized": 0,
        "level": conv.level,
        "tests_on": "positive_class" if report.target == "positive_class" else "top_label",
        "p_values": P_VALUES,
        "matches": "Xent conventions as stated; any preset reproduces its peer exactly",
    }
    answer = {
        "n": labels.size,
        "n_ignored": 0,
        "n_classes": dist.n_classes,
        "metrics": {name: _number(value) for name, value in report.scalars.items()},
        "per_class": report.per_class or None,
        "reliability": bins or None,
        "top_k_accuracy": None,
        "bootstrap": None,
        "convention": convention,
    }
    return orjson.dumps(answer)


def apply(fields: Fields) -> bytes:
    """softmax(logits / temperature), N×K probabilities."""
    logits = core.check_logits(np.array(fields["logits"], dtype=np.float64))
    temperature = float(fields["temperature"])
    if not temperature >= 0:
        raise core.InputError("temperature", "must be ≥ 0")
    probs = np.exp(core.apply_temperature(logits, temperature, validate=False))
    answer = {
        "n": logits.shape[0],
        "method": "temperature",
        "probs": probs,
        "metrics": None,
        "convention": None,
    }
    return orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)


#: The monitor write (:mod:`benchmarks.essential_monitor`), by path: the monitor's name.
MONITOR_PATHS = {f"/v1/monitors/{NAME}/observations": NAME}
MONITOR = EssentialMonitor()

ROUTES: dict[str, Callable[[Fields], bytes]] = {
    "/v1/cross-entropy": cross_entropy,
    "/v1/divergence": divergence,
    "/v1/calibration": calibration,
    "/v1/apply": apply,
}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST to one of :data:`ROUTES` with its JSON body; 404 for anything else, 422 for a bad input."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] == "lifespan.startup":
            # as Xent's workers do at start-up (service.app): what lives as long as the process is
            # kept out of the collector's full scans, so that the difference is Xent's layers alone
            if gc.get_freeze_count() == 0:
                gc.collect()
                gc.freeze()
            await send({"type": "lifespan.startup.complete"})
        MONITOR.close()
        await send({"type": "lifespan.shutdown.complete"})
        return
    body, more = b"", True
    while more:
        message = await receive()
        body, more = body + message.get("body", b""), message.get("more_body", False)
    path = scope["path"]
    if scope["method"] == "PUT" and path == f"/v1/monitors/{NAME}":  # its monitor, made once (K = 10)
        MONITOR.open()
        await _answer(send, 200, b"{}")
        return
    handler = ROUTES.get(path)
    if scope["method"] != "POST" or (handler is None and path not in MONITOR_PATHS):
        await _answer(send, 404, b"{}")
        return
    try:
        fields = orjson.loads(body)
        answer = handler(fields) if handler is not None else await MONITOR.write(MONITOR_PATHS[path], fields)
    except core.InputError:
        await _answer(send, 422, b"{}")
        return
    await _answer(send, 200, answer)


async def _answer(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
