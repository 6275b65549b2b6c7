"""``POST /v1/divergence`` with B×T×K token sequences: per-position KL and JS between two models.

Distillation compares a teacher's and a student's next-token distributions at every position:
both sides B×T×K (logits or probabilities), an optional B×T `mask` (1 = scored). The B·T
positions are read as (B·T)×K views of the request's arrays (no copy) and scored by the N×K
route's one blocked pass (:func:`service.core.divergence_rows`): no second B×T×K array. float16,
BF16 and integer (JSON) sides are widened a block of rows at a time (float32; integers float64,
as the N×K reader does) and each widened block is scored by the same pass, so the answer equals
the float32/float64 one on the same values. Means and sums run over the scored positions;
`sequences` adds each sequence's sums and token count.
"""

from dataclasses import replace

import numpy as np

from service import core
from service.api.formats.arrays import widen_bf16
from service.api.formats.inputs import Body, Prediction, read_prediction
from service.api.schemas import DivergenceOptions
from service.api.schemas.divergence import DivergenceRows, DivergenceSequences, DivergenceStats
from service.core.cancel import checkpoint
from service.core.validation import as_float_array

from . import Answer

#: Bytes of input checked at a time: a block of rows, so no check allocates an input-sized mask.
CHECK_BLOCK_BYTES = 1 << 20
#: Bytes of one side widened at a time (float16, BF16, integers): a block of rows, never the whole side.
WIDEN_BLOCK_BYTES = 4 << 20


def score_sequence_divergence(
    body: Body, options: DivergenceOptions, p_name: str, p_values: np.ndarray
) -> Answer:
    """Divergences of B×T×K `p_values` (field `p_name`) and the other side, over the scored positions."""
    from .divergence import divergence_result, rows_of

    for name, sent in (("elementwise", options.elementwise), ("normalize", options.normalize)):
        if sent:
            raise core.InputError(name, "is not supported with B×T×K sequence inputs")
    q_name = body.pick("q_logits", "q_probs")
    q_values = body.array(q_name, bfloat16=True)
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
    if _narrow(body, p_name) or _narrow(body, q_name):
        rows, p, q = _widened_rows(body, options, (p_name, q_name), t)
    else:
        p = _read_side(body, "p", options, t)
        q = _read_side(body, "q", options, t)
        rows = rows_of(p.dist, q.dist, options)
    flat = scored.ravel()
    stats = {  # (a sum past float64's range: +inf; the mean is Σ (v / n) then)
        reduction: DivergenceStats(**{name: float(fn(values[flat])) for name, values in rows.items()})
        for reduction, fn in (("mean", core.mean64), ("sum", core.sum64))
    }
    with np.errstate(over="ignore", invalid="ignore"):  # a sequence's sum past float64's range: +inf
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


def _narrow(body: Body, name: str) -> bool:
    """Whether the side `name` is sent in a dtype the pass does not read as it is."""
    return name in body.reader.bfloat16 or body.fields[name].dtype not in (np.float32, np.float64)


def _widened_rows(
    body: Body, options: DivergenceOptions, names: tuple[str, str], t: int
) -> tuple[dict[str, np.ndarray], Prediction, Prediction]:
    """Every per-position quantity, widening both sides a block of rows at a time.

    Each block of each side is widened, checked and scored by the one pass; the rows are
    independent, so the values equal the pass over the whole widened sides.
    """
    from .divergence import rows_of

    raws = [body.fields[name] for name in names]
    n, k = raws[0].shape
    step = max(1, WIDEN_BLOCK_BYTES // (k * 8))
    out: dict[str, np.ndarray] = {}
    clipped = [0, 0]
    tolerances = [
        options.tolerance or (1e-2 if name in body.reader.bfloat16 else core.default_tolerance(raw.dtype))
        for name, raw in zip(names, raws, strict=True)
    ]
    sides: list[Prediction] = []
    for start in range(0, n, step):
        checkpoint()
        sides = [
            _check_block(_widen(body, name, raw[start : start + step]), name, tolerance, options, start, t)
            for name, raw, tolerance in zip(names, raws, tolerances, strict=True)
        ]
        found = rows_of(sides[0].dist, sides[1].dist, options)
        for name, values in found.items():
            out.setdefault(name, np.empty(n, values.dtype))[start : start + step] = values
        clipped = [c + side.dist.n_clipped for c, side in zip(clipped, sides, strict=True)]
    p, q = (
        replace(side, dist=replace(side.dist, n_clipped=c)) for side, c in zip(sides, clipped, strict=True)
    )
    return out, p, q


def _widen(body: Body, name: str, block: np.ndarray) -> np.ndarray:
    """A block of rows as float32 (float16, BF16 words) or float64 (integers), as the N×K reader widens."""
    if name in body.reader.bfloat16:
        return widen_bf16(block)
    return as_float_array(block, field=name)


def _check_block(
    block: np.ndarray, name: str, tolerance: float, options: DivergenceOptions, start: int, t: int
) -> Prediction:
    """A widened block of one side checked; errors point at ``[b, t, k]`` of the B×T×K array."""
    try:
        if name.endswith("logits"):
            core.check_logits(block, field=name)
            return Prediction(
                core.Distribution(logits=block), name, core.dtype_name(block.dtype), tolerance, 0
            )
        core.check_probabilities(block, field=name, tolerance=tolerance)
    except core.InputError as error:
        if not error.index:
            raise
        row = start + error.index[0]
        raise core.InputError(name, error.reason, index=(row // t, row % t, *error.index[1:])) from None
    dist = core.Distribution.from_probs(block, eps=options.eps, validate=False)
    return Prediction(dist, name, core.dtype_name(block.dtype), tolerance, 0)


def _read_side(body: Body, side: str, options: DivergenceOptions, t: int) -> Prediction:
    """One side as (B·T)×K, checked a block of rows at a time (float32 and float64 sent as they are).

    Other dtypes (integers from JSON, float16, BF16) go through the N×K reader, which widens them.
    Errors point at ``[b, t, k]`` of the B×T×K array.
    """
    name = body.pick(f"{side}_logits", f"{side}_probs")
    raw = body.fields[name]
    if raw.dtype not in (np.float32, np.float64):
        return read_prediction(body, f"{side}_probs", f"{side}_logits", options)
    tolerance = options.tolerance or core.default_tolerance(raw.dtype)
    floor = core.resolve_eps(options.eps, raw.dtype) if name.endswith("probs") else 0.0
    rows = max(1, CHECK_BLOCK_BYTES // (raw.shape[1] * raw.itemsize))
    n_clipped = 0
    for start in range(0, raw.shape[0], rows):
        block = raw[start : start + rows]
        try:
            if name.endswith("logits"):
                core.check_logits(block, field=name)
            else:
                core.check_probabilities(block, field=name, tolerance=tolerance)
        except core.InputError as error:
            if not error.index:
                raise
            row = start + error.index[0]
            raise core.InputError(name, error.reason, index=(row // t, row % t, *error.index[1:])) from None
        if floor > 0:
            n_clipped += int(np.count_nonzero(block < floor))
    if name.endswith("logits"):
        return Prediction(core.Distribution(logits=raw), name, core.dtype_name(raw.dtype), tolerance, 0)
    dist = core.Distribution(sent_probs=raw, eps=floor, n_clipped=n_clipped)
    return Prediction(dist, name, core.dtype_name(raw.dtype), tolerance, 0)
