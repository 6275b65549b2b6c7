"""``POST /v1/temperature`` and ``/v1/recalibrate`` with B×T×K token logits: one T over every scored token.

The fit is :func:`service.core.fit_sequence_temperature`: the N×K temperature fit of the scored
positions (inside `mask`, label not `ignore_index`), streamed a block of rows at a time, never
a second B×T×K array. B×T×K `probs` are read as the N×K route reads them: checked block by
block (in [0, 1], rows summing to 1 within `tolerance`) and fitted as ``log(max(p, eps))``,
with `eps` and the count clipped echoed. Its answer is the N×K answer on those rows, plus the
sequence shape and token counts. Only temperature scaling is offered: the other maps have K-sized
parameter sets (vector: 2K, matrix: K² + K) or act per class (isotonic, histogram, Platt, beta),
which at a vocabulary's K is not a token-level recalibration anyone fits.
"""

from typing import Any

import numpy as np

from service import core
from service.api.formats.inputs import Body
from service.api.schemas.recalibration import (
    ApplyOptions,
    FitOptions,
    Metrics,
    Parameters,
    RecalibrateOptions,
    RecalibrationConvention,
    SequenceFit,
    TemperatureOptions,
    TemperatureParameters,
)

from . import log_base, unit_of

APPLY_PEER = (
    "nll: torch.nn.functional.cross_entropy(logits.transpose(1, 2) / T, labels, ignore_index=…); "
    "every metric equals the N×K apply on the scored rows"
)
SEQUENCE_PEER = (
    "torch.nn.functional.cross_entropy(logits.transpose(1, 2) / T, labels, ignore_index=…) minimised "
    "over T (scipy.optimize.minimize_scalar); equals the N×K fit on the scored rows"
)
#: Array fields of the N×K fits that have no token-level form.
_NOT_FOR_SEQUENCES = ("targets", "sample_weight", "scores")
#: Options of the N×K fits that have no token-level form.
_OPTIONS_NOT_FOR_SEQUENCES = ("validation", "classes", "pos_label")


def sequence_values(body: Body) -> tuple[str, np.ndarray] | None:
    """(field, B×T×K values) when the predictions sent are token sequences, else None."""
    sent = [name for name in ("logits", "probs") if body.fields.get(name) is not None]
    if len(sent) != 1:
        return None  # none or both: the N×K reader says which
    values = body.array(sent[0], bfloat16=True)
    return (sent[0], values) if values.ndim == 3 else None


def sequence_fit_fields(
    body: Body, options: TemperatureOptions | RecalibrateOptions, name: str, values: np.ndarray
) -> dict[str, Any]:
    """The fields of a temperature or recalibrate answer: the fit of B×T `labels` under B×T×K `values`."""
    _refuse(body, options, name, getattr(options, "method", "temperature"))
    found = core.fit_sequence_temperature(
        body.array("labels"),
        values,
        mask=_mask(body),
        ignore_index=options.ignore_index,
        bfloat16=name in body.reader.bfloat16,
        rtol=options.rtol,
        max_iter=options.max_iter,
        field=name,
        **_reading(options, name),
    )
    fit = found.fit
    n = int(found.tokens.sum())
    return {
        "parameters": TemperatureParameters(temperature=fit.temperature),
        "temperature": fit.temperature,
        "converged": fit.converged,
        "reason": fit.reason,
        "iterations": fit.iterations,
        "gradient": fit.gradient,
        "n": n,
        "n_ignored": int(found.scored.size - n),
        "before": _metrics(found.before, options.base),
        "after": _metrics(found.after, options.base),
        "sequences": _echo(values, found.scored),
        "convention": _convention(options, name, values, SEQUENCE_PEER, found.eps, found.n_clipped),
    }


def sequence_apply_fields(
    body: Body, options: ApplyOptions, parameters: Parameters, name: str, values: np.ndarray
) -> dict[str, Any]:
    """The fields of an apply answer: `parameters` (a temperature) scored on B×T×K `values`."""
    _refuse(body, options, name, parameters.method)
    assert isinstance(parameters, TemperatureParameters)
    found, scored, n_clipped = core.sequence_temperature_metrics(
        body.array("labels"),
        values,
        parameters.temperature,
        mask=_mask(body),
        ignore_index=options.ignore_index,
        bfloat16=name in body.reader.bfloat16,
        field=name,
        **_reading(options, name),
    )
    eps = core.resolve_eps(options.eps, np.dtype(np.float64 if values.dtype == np.float64 else np.float32))
    n = int(np.count_nonzero(scored))
    return {
        "n": n,
        "method": "temperature",
        "metrics": _metrics(found, options.base),
        "sequences": _echo(values, scored),
        "convention": _convention(
            options, name, values, APPLY_PEER, eps if name == "probs" else 0.0, n_clipped
        ),
    }


def _reading(options: FitOptions | ApplyOptions, name: str) -> dict[str, Any]:
    """How the values are read: `probs` as log(max(p, eps)) under the tolerance, as the N×K route."""
    if name != "probs":
        return {}
    return {"probabilities": True, "eps": options.eps, "tolerance": options.tolerance}


def _mask(body: Body) -> np.ndarray | None:
    return body.array("mask") if body.fields.get("mask") is not None else None


def _echo(values: np.ndarray, scored: np.ndarray) -> SequenceFit:
    tokens = np.count_nonzero(scored, axis=1)
    return SequenceFit(
        shape=list(values.shape),
        n_sequences=int(values.shape[0]),
        tokens=tokens.tolist(),
        n_ignored=int(scored.size - tokens.sum()),
    )


def _metrics(metrics: core.FitMetrics, base: Any) -> Metrics:
    """The scores of the scored tokens, NLL in the unit of `base`."""
    nll = metrics.nll / np.log(log_base(base))
    return Metrics(nll=nll, ece=metrics.ece, brier=metrics.brier, accuracy=metrics.accuracy)


def _refuse(body: Body, options: FitOptions | ApplyOptions, name: str, method: str) -> None:
    """What a token-level temperature cannot take: a 422 naming it."""
    if getattr(options, "normalize", False):
        raise core.InputError(
            "normalize",
            "is not supported with B×T×K sequence inputs: send rows summing to 1 within `tolerance`",
        )
    if method != "temperature":
        field = "method" if isinstance(options, FitOptions) else "parameters.method"
        raise core.InputError(
            field,
            f'"{method}" is not supported with B×T×K sequence inputs: only "temperature" (one T over '
            "every scored token) maps token logits",
        )
    for field in _NOT_FOR_SEQUENCES:
        if body.fields.get(field) is not None:
            raise core.InputError(field, "is not supported with B×T×K sequence inputs; send B×T `labels`")
    for field in _OPTIONS_NOT_FOR_SEQUENCES:
        if getattr(options, field, None) is not None:
            raise core.InputError(field, "is not supported with B×T×K sequence inputs")
    probs = "binary_data_output" if isinstance(options, ApplyOptions) else "return_probs"
    if getattr(options, probs):
        raise core.InputError(
            probs,
            "is not supported with B×T×K sequence inputs: the probabilities would be a second B×T×K "
            "tensor; apply softmax(log p / T) where the predictions are",
        )
    if body.fields.get("labels") is None:
        raise core.InputError(
            "labels",
            "are required (B×T token ids) with B×T×K sequence inputs"
            + ("" if isinstance(options, FitOptions) else ": they score softmax(logits / T) token by token"),
        )


def _convention(
    options: FitOptions | ApplyOptions, name: str, values: np.ndarray, peer: str, eps: float, n_clipped: int
) -> RecalibrationConvention:
    sent = np.dtype(np.float32) if values.dtype == np.uint16 else values.dtype  # BF16 reads as float32
    if name == "probs":  # fitted as the logits log(max(p, eps)), as the N×K route
        peer = peer.replace("logits.transpose", "log(max(probs, eps)).transpose")
    return RecalibrationConvention(
        input=name,
        form="sequence",
        truth="labels",
        dtype="float64" if values.dtype == np.float64 else "float32",
        base=options.base,
        unit=unit_of(options.base),
        eps=eps,
        n_clipped=n_clipped,
        tolerance=(options.tolerance or core.default_tolerance(sent)) if name == "probs" else 0.0,
        n_normalized=0,
        ece_bins=core.ECE_BINS,
        ignore_index=options.ignore_index,
        matches=peer,
    )
