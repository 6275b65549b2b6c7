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
    openapi_extra=request_body(DivergenceBody),
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
    p_shape = (p.dist.n_samples, p.dist.n_classes)
    q_shape = (q.dist.n_samples, q.dist.n_classes)
    if q_shape != p_shape:
        raise core.InputError(
            q.field,
            f"must have the shape of `{p.field}` {p_shape}; got {q_shape}",
        )
    rows = _rows(p, q, log_base(options.base))
    means = {name: float(np.mean(values, dtype=np.float64)) for name, values in rows.items()}
    result = DivergenceResult(
        n=p.dist.n_samples,
        mean=DivergenceStats(**means),
        per_sample=None,  # placed by `respond`, from the arrays
        convention=DivergenceConvention(
            p=p.field.removeprefix("p_"),
            q=q.field.removeprefix("q_"),
            dtype=core.dtype_name(np.result_type(p.dist.dtype, q.dist.dtype)),
            base=options.base,
            unit=unit_of(options.base),
            eps=max(p.dist.eps, q.dist.eps),
            n_clipped=p.dist.n_clipped + q.dist.n_clipped,
            tolerance=p.tolerance,
            n_normalized=p.n_normalized + q.n_normalized,
            zero_convention="0·log 0 = 0; log q uses max(q, eps), so p > 0 = q gives "
            "log(1/eps) terms, or Infinity when eps is 0",
            matches="scipy.special.rel_entr, scipy.stats.entropy, scipy.spatial.distance.jensenshannon",
        ),
    )
    per_sample = {f"per_sample.{name}": rows[name] for name in DivergenceRows.model_fields}
    return Answer(result, per_sample if options.per_sample else {}, options.binary_data_output)


def _rows(p: Prediction, q: Prediction, base: float) -> dict[str, FloatArray]:
    rows = core.divergence_rows(p.dist, q.dist)  # one blocked pass: no N×K logs or products
    js = core.to_base(rows.js, base)
    converted = {
        name: core.to_base(getattr(rows, name), base)
        for name in ("kl_pq", "kl_qp", "entropy_p", "entropy_q", "cross_entropy_pq")
    }
    return {**converted, "js_divergence": js, "js_distance": np.sqrt(js)}
