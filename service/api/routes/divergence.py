"""``POST /v1/divergence``."""

import functools
import math
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, Plain, scoring
from service.api.formats.answers import Document, json_float
from service.api.formats.inputs import Body, Prediction, read_prediction
from service.api.formats.plain import general_answer, plain_logits
from service.api.schemas import (
    DivergenceBody,
    DivergenceConvention,
    DivergenceOptions,
    DivergenceResult,
)
from service.api.schemas.divergence import DivergenceRows, DivergenceSequences, DivergenceStats
from service.core._typing import FloatArray
from service.core.overflow import ERROR_STATE, RAISE_OVER

from . import BINARY_OUTPUT_RESPONSE, PROBLEM_RESPONSES, Answer, log_base, request_body, unit_of
from .divergence_sequences import score_sequence_divergence

router = APIRouter(prefix="/v1", tags=["scores"])

ARRAY_FIELDS = ("p_probs", "p_logits", "q_probs", "q_logits", "sample_weight", "mask")


def plain_divergence(fields: dict[str, Any], max_elements: int) -> tuple[bytes, int] | None:
    """The answer to ``{"p_logits": N×K, "q_logits": N×K}`` (floats) and nothing else.

    What :func:`divergence_answer` answers (:class:`service.api.deps.Plain`), by the same core
    calls: the row means filled into its answer to a plain request; None for the general path
    whenever the request is not that after all.
    """
    p, q = plain_logits(fields["p_logits"], "p_logits"), plain_logits(fields["q_logits"], "q_logits")
    if p is None or q is None or p.shape != q.shape or p.size + q.size > max_elements:
        return None
    n = p.shape[0]
    p_dist = core.Distribution.from_logits(p, validate=False)
    rows = _rows(p_dist, core.Distribution.from_logits(q, validate=False), math.e)
    stats = {name: json_float(np.add.reduce(rows[name], dtype=np.float64) / n) for name in STATS}
    return orjson.dumps({**_plain_answer(), "n": n, "mean": stats}), n


@functools.cache
def _plain_answer() -> Document:
    """The general path's answer to a plain request (its convention is every plain request's)."""
    return general_answer(divergence_answer, {"p_logits": [[0.0, 1.0]], "q_logits": [[1.0, 0.0]]})


@router.post(
    "/divergence",
    response_model=DivergenceResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES},
    openapi_extra=request_body(DivergenceBody, ARRAY_FIELDS),
)
@scoring(
    inline_bytes=INLINE_BYTES,
    roles=ARRAY_FIELDS,
    plain=Plain(frozenset({"p_logits", "q_logits"}), plain_divergence),
)
def score_divergence(body: Body) -> Response:
    """KL both ways, Jensen–Shannon divergence and distance, H(p), H(q) and H(p, q), per row and mean.

    0·log 0 = 0 (scipy.special.rel_entr); where p > 0 but q = 0, the `eps` policy
    applies (eps 0: KL is "Infinity"). JS needs no eps: it is always finite.
    """
    return divergence_answer(body).response()


#: DivergenceStats' fields, in its order.
STATS = tuple(DivergenceStats.model_fields)
ZERO_CONVENTION = (
    "0·log 0 = 0; log q uses max(q, eps), so p > 0 = q gives log(1/eps) terms, or Infinity when eps is 0"
)
MATCHES = (
    "scipy.special.rel_entr, scipy.stats.entropy, scipy.spatial.distance.jensenshannon; "
    "torch.nn.functional.kl_div(log q, p) for reduction and elementwise terms"
)


def divergence_answer(body: Body) -> Answer:
    """The divergence result of `body`, with the per-row quantities when asked."""
    options = body.options(DivergenceOptions, ARRAY_FIELDS)
    p_name = body.pick("p_logits", "p_probs")
    p_values = body.array(p_name)
    if p_values.ndim == 3:  # B×T×K token sequences (distillation: teacher and student)
        if body.fields.get("sample_weight") is not None:
            raise core.InputError("sample_weight", "applies to N×K rows; sequences take `mask`")
        return score_sequence_divergence(body, options, p_name, p_values)
    if body.fields.get("mask") is not None:
        raise core.InputError("mask", "applies to B×T×K sequence inputs only")
    p = read_prediction(body, "p_probs", "p_logits", options)
    q = read_prediction(body, "q_probs", "q_logits", options)
    p_dist, q_dist, broadcast = _broadcast(p, q)
    base = log_base(options.base)
    rows = _rows(p_dist, q_dist, base)
    weights = _sample_weight(body, p_dist.n_samples, broadcast)
    reduced = {"mean": "mean", "batchmean": "mean", "sum": "sum"}.get(options.reduction)
    stats = None  # only the reduction asked for is computed
    if reduced is not None and weights is not None:
        stats = {name: json_float(_reduce(rows[name], weights, reduced)) for name in STATS}
    elif reduced is not None:
        stats = _unweighted(rows, reduced, p_dist.n_samples)
    # The answer as DivergenceResult's JSON document, fields in its order (formats/answers.py).
    result = {
        "n": int(p_dist.n_samples),
        "mean": stats if reduced == "mean" else None,
        "sum": stats if reduced == "sum" else None,
        "per_sample": None,  # placed by `respond`, from the arrays
        "terms": None,
        "convention": {
            "p": p.field.removeprefix("p_"),
            "q": q.field.removeprefix("q_"),
            "dtype": core.dtype_name(np.result_type(p.dist.dtype, q.dist.dtype)),
            "base": options.base if isinstance(options.base, str) else float(options.base),
            "unit": unit_of(options.base),
            "reduction": options.reduction,
            "elementwise": options.elementwise,
            "broadcast": broadcast,
            "sample_weight": weights is not None,
            "eps": float(max(p.dist.eps, q.dist.eps)),
            "n_clipped": int(p.dist.n_clipped + q.dist.n_clipped),
            "tolerance": float(p.tolerance),
            "n_normalized": int(p.n_normalized + q.n_normalized),
            "zero_convention": ZERO_CONVENTION,
            "matches": MATCHES,
        },
    }
    arrays: dict[str, FloatArray] = {}
    if options.per_sample or options.reduction == "none":
        arrays.update({f"per_sample.{name}": rows[name] for name in DivergenceRows.model_fields})
    if options.elementwise:
        terms = core.divergence_terms(p_dist, q_dist)
        for name, field in (("kl_pq", "kl_pq"), ("kl_qp", "kl_qp"), ("js", "js_divergence")):
            arrays[f"terms.{field}"] = core.to_base(getattr(terms, name), base)
    return Answer(result, arrays, options.binary_data_output)


def _sample_weight(body: Body, n: int, broadcast: str | None) -> FloatArray | None:
    """The N row weights s (N the rows compared, after broadcasting), or None; all zero is a 422."""
    if body.fields.get("sample_weight") is None:
        return None
    weights = core.check_sample_weight(body.array("sample_weight"), n).astype(np.float64)
    if not weights.max(initial=0.0) > 0:
        raise core.InputError("sample_weight", "must have a positive sum; got all zero")
    return weights


def _unweighted(rows: dict[str, FloatArray], reduction: str, n: int) -> dict[str, Any]:
    """Each statistic's mean or sum over rows, in float64.

    np.mean's own steps are Python (~2 µs each): its sum and division, bit for bit, directly, with
    overflow raised for the price of a context variable (service.core.overflow). A sum past float64's
    range is +inf, and the mean then Σ (v / n) (core.mean64): finite, not inf.
    """
    count = n if reduction == "mean" else 1
    token = ERROR_STATE.set(RAISE_OVER)
    try:
        return {name: json_float(np.add.reduce(rows[name], dtype=np.float64) / count) for name in STATS}
    except FloatingPointError:
        fn = core.mean64 if reduction == "mean" else core.sum64
        return {name: json_float(fn(rows[name])) for name in STATS}
    finally:
        ERROR_STATE.reset(token)


def _reduce(values: FloatArray, weights: FloatArray | None, reduction: str) -> float:
    """Mean or sum over rows; weighted: ``Σ s·x / Σ s`` or ``Σ s·x`` (a row of weight 0 adds 0, even inf)."""
    if weights is None:  # (a sum past float64's range: +inf; the mean is Σ (v / n) then)
        return core.mean64(values) if reduction == "mean" else core.sum64(values)
    # mean: only ratios matter, so weights near 1e308 are scaled down first (a sum may overflow: inf)
    w = weights if reduction == "sum" else weights / float(weights.max())
    with np.errstate(invalid="ignore", over="ignore"):  # NaN rows (JS distance, base < 1) stay NaN
        weighted = np.where(w == 0, 0.0, values.astype(np.float64) * w)
        total = float(np.sum(weighted))
    return total if reduction == "sum" else total / float(np.sum(w))


def _broadcast(p: Prediction, q: Prediction) -> tuple[core.Distribution, core.Distribution, str | None]:
    """Both sides with N rows: a side sent as one row is compared with every row of the other."""
    p_shape = (p.dist.n_samples, p.dist.n_classes)
    q_shape = (q.dist.n_samples, q.dist.n_classes)
    same_k = p_shape[1] == q_shape[1] and p.dist.binary == q.dist.binary
    if q_shape == p_shape:
        return p.dist, q.dist, None
    if same_k and q_shape[0] == 1:
        return p.dist, q.dist.broadcast(p_shape[0]), "q"
    if same_k and p_shape[0] == 1:
        return p.dist.broadcast(q_shape[0]), q.dist, "p"
    raise core.InputError(
        q.field,
        f"must have the shape of `{p.field}` {p_shape}, or one row of its K; got {q_shape}",
    )


def _rows(p: core.Distribution, q: core.Distribution, base: float) -> dict[str, FloatArray]:
    rows = core.divergence_rows(p, q)  # one blocked pass: no N×K logs or products
    js = core.to_base(rows.js, base)
    converted = {
        name: core.to_base(getattr(rows, name), base)
        for name in ("kl_pq", "kl_qp", "entropy_p", "entropy_q", "cross_entropy_pq")
    }
    with np.errstate(invalid="ignore"):  # a base below 1 makes JS negative: NaN, as scipy's jensenshannon
        distance = np.sqrt(js)
    return {**converted, "js_divergence": js, "js_distance": distance}


def rows_of(p: core.Distribution, q: core.Distribution, options: DivergenceOptions) -> dict[str, FloatArray]:
    """Every per-row quantity in the options' base."""
    return _rows(p, q, log_base(options.base))


def divergence_result(
    options: DivergenceOptions,
    p: Prediction,
    q: Prediction,
    stats: dict[str, DivergenceStats],
    broadcast: str | None,
    n: int,
    sequences: DivergenceSequences | None = None,
) -> DivergenceResult:
    """The result with its convention, reduced as the options ask, over `n` rows or positions."""
    reduced = {"mean": "mean", "batchmean": "mean", "sum": "sum"}.get(options.reduction)
    result = DivergenceResult(
        n=n,
        sequences=sequences,
        mean=stats["mean"] if reduced == "mean" else None,
        sum=stats["sum"] if reduced == "sum" else None,
        per_sample=None,  # placed by `respond`, from the arrays
        convention=DivergenceConvention(
            p=p.field.removeprefix("p_"),
            q=q.field.removeprefix("q_"),
            dtype=core.dtype_name(np.result_type(p.dist.dtype, q.dist.dtype)),
            base=options.base,
            unit=unit_of(options.base),
            reduction=options.reduction,
            elementwise=options.elementwise,
            broadcast=broadcast,
            sample_weight=False,  # N×K rows only
            eps=max(p.dist.eps, q.dist.eps),
            n_clipped=p.dist.n_clipped + q.dist.n_clipped,
            tolerance=p.tolerance,
            n_normalized=p.n_normalized + q.n_normalized,
            zero_convention=ZERO_CONVENTION,
            matches=MATCHES,
        ),
    )
    return result
