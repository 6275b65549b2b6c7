"""``POST /v1/divergence`` with B×T×K token sequences: per-position KL and JS between two models.

Distillation compares a teacher's and a student's next-token distributions at every position:
both sides B×T×K (logits or probabilities), an optional B×T `mask` (1 = scored). The B·T
positions are read as (B·T)×K views of the request's arrays (no copy) and scored by the N×K
route's one blocked pass (:func:`service.core.divergence_rows`): no second B×T×K array. Means
and sums run over the scored positions; `sequences` adds each sequence's sums and token count.
"""

import numpy as np

from service import core
from service.api.formats.inputs import Body, read_prediction
from service.api.schemas import DivergenceOptions
from service.api.schemas.divergence import DivergenceRows, DivergenceSequences, DivergenceStats

from . import Answer


def score_sequence_divergence(
    body: Body, options: DivergenceOptions, p_name: str, p_values: np.ndarray
) -> Answer:
    """Divergences of B×T×K `p_values` (field `p_name`) and the other side, over the scored positions."""
    from .divergence import divergence_result, rows_of

    for name, sent in (("elementwise", options.elementwise), ("normalize", options.normalize)):
        if sent:
            raise core.InputError(name, "is not supported with B×T×K sequence inputs")
    q_name = body.pick("q_logits", "q_probs")
    q_values = body.array(q_name)
    if q_values.shape != p_values.shape:
        raise core.InputError(
            q_name,
            f"must have the shape of `{p_name}` {list(p_values.shape)} (B×T×K); got {list(q_values.shape)}",
        )
    b, t, k = p_values.shape
    scored = np.ones((b, t), bool)
    if body.fields.get("mask") is not None:
        mask = body.array("mask")
        if mask.shape != (b, t) or not np.isin(mask, (0, 1)).all():
            raise core.InputError(
                "mask", f"must be a B×T ({b}×{t}) array of 0 and 1; got shape {list(mask.shape)}"
            )
        scored = mask.astype(bool)
    n = int(np.count_nonzero(scored))
    if n == 0:
        raise core.InputError("mask", "must leave at least one position scored")
    body.fields[p_name] = p_values.reshape(b * t, k)  # a view of a C-contiguous array: no copy
    body.fields[q_name] = q_values.reshape(b * t, k)
    p = read_prediction(body, "p_probs", "p_logits", options)
    q = read_prediction(body, "q_probs", "q_logits", options)
    rows = rows_of(p.dist, q.dist, options)
    flat = scored.ravel()
    stats = {
        reduction: DivergenceStats(
            **{name: float(fn(values[flat], dtype=np.float64)) for name, values in rows.items()}
        )
        for reduction, fn in (("mean", np.mean), ("sum", np.sum))
    }
    sums = {
        name: np.where(scored, values.reshape(b, t), 0.0).sum(axis=1, dtype=np.float64)
        for name, values in rows.items()
    }
    sequences = DivergenceSequences(
        n_sequences=b,
        n_ignored=int(scored.size - n),
        tokens=scored.sum(axis=1).tolist(),
        sum=DivergenceRows(**{name: values.tolist() for name, values in sums.items()}),
    )
    result = divergence_result(options, p, q, stats, None, n, sequences)
    arrays: dict[str, np.ndarray] = {}
    if options.per_sample or options.reduction == "none":
        arrays = {
            f"per_sample.{name}": np.where(scored, rows[name].reshape(b, t), 0.0)
            for name in DivergenceRows.model_fields
        }
    return Answer(result, arrays, options.binary_data_output)
