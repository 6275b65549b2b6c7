"""``POST /v1/divergence``."""

import numpy as np
from fastapi import APIRouter
from starlette.responses import Response

from service import core
from service.api.deps import INLINE_BYTES, scoring
from service.api.formats.inputs import Body, Prediction, read_prediction
from service.api.schemas import (
    DivergenceBody,
    DivergenceConvention,
    DivergenceOptions,
    DivergenceResult,
)
from service.api.schemas.divergence import DivergenceRows, DivergenceStats
from service.core._typing import FloatArray

from . import BINARY_OUTPUT_RESPONSE, PROBLEM_RESPONSES, Answer, log_base, request_body, unit_of

router = APIRouter(prefix="/v1", tags=["scores"])

ARRAY_FIELDS = ("p_probs", "p_logits", "q_probs", "q_logits")


@router.post(
    "/divergence",
    response_model=DivergenceResult,
    responses={**BINARY_OUTPUT_RESPONSE, **PROBLEM_RESPONSES},
    openapi_extra=request_body(DivergenceBody, ARRAY_FIELDS),
)
@scoring(inline_bytes=INLINE_BYTES, roles=ARRAY_FIELDS)
def score_divergence(body: Body) -> Response:
    """KL both ways, Jensen–Shannon divergence and distance, H(p), H(q) and H(p, q), per row and mean.

    0·log 0 = 0 (scipy.special.rel_entr); where p > 0 but q = 0, the `eps` policy
    applies (eps 0: KL is "Infinity"). JS needs no eps: it is always finite.
    """
    return divergence_answer(body).response()


def divergence_answer(body: Body) -> Answer:
    """The divergence result of `body`, with the per-row quantities when asked."""
    options = DivergenceOptions.model_validate(body.scalars(ARRAY_FIELDS))
    p = read_prediction(body, "p_probs", "p_logits", options)
    q = read_prediction(body, "q_probs", "q_logits", options)
    p_dist, q_dist, broadcast = _broadcast(p, q)
    base = log_base(options.base)
    rows = _rows(p_dist, q_dist, base)
    stats = {
        reduction: DivergenceStats(
            **{name: float(fn(values, dtype=np.float64)) for name, values in rows.items()}
        )
        for reduction, fn in (("mean", np.mean), ("sum", np.sum))
    }
    reduced = {"mean": "mean", "batchmean": "mean", "sum": "sum"}.get(options.reduction)
    result = DivergenceResult(
        n=p_dist.n_samples,
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
            eps=max(p.dist.eps, q.dist.eps),
            n_clipped=p.dist.n_clipped + q.dist.n_clipped,
            tolerance=p.tolerance,
            n_normalized=p.n_normalized + q.n_normalized,
            zero_convention="0·log 0 = 0; log q uses max(q, eps), so p > 0 = q gives "
            "log(1/eps) terms, or Infinity when eps is 0",
            matches="scipy.special.rel_entr, scipy.stats.entropy, scipy.spatial.distance.jensenshannon; "
            "torch.nn.functional.kl_div(log q, p) for reduction and elementwise terms",
        ),
    )
    arrays: dict[str, FloatArray] = {}
    if options.per_sample or options.reduction == "none":
        arrays.update({f"per_sample.{name}": rows[name] for name in DivergenceRows.model_fields})
    if options.elementwise:
        terms = core.divergence_terms(p_dist, q_dist)
        for name, field in (("kl_pq", "kl_pq"), ("kl_qp", "kl_qp"), ("js", "js_divergence")):
            arrays[f"terms.{field}"] = core.to_base(getattr(terms, name), base)
    return Answer(result, arrays, options.binary_data_output)


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
