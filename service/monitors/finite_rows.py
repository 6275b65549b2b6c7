"""Rows a monitor cannot hold: a loss of +inf, from logits whose row spans past their dtype's range.

A K-class row whose label's logit lies more than the dtype's range below the row's maximum
(``[3e38, −3e38]`` in float32, ``[1.7e308, −1.7e308]`` in float64) has the loss +inf: the
scoring routes answer it (``"Infinity"``), but a monitor's sums must stay finite to be merged,
stored and exported as Prometheus counters, so such a row is refused (422, naming it) before
anything is written. A row waiting for a late label is refused if its logits span past the
range at all: a label at its minimum would give +inf when it arrives.
"""

import math
from collections.abc import Iterable

import numpy as np

from service.core import Distribution, InputError, MonitorStats
from service.core._typing import IntArray

_REASON = "spans past its dtype's range: the loss {what} is +inf, which a monitor's sums cannot hold"


def check_finite_losses(
    dist: Distribution, labels: IntArray | None, summaries: Iterable[MonitorStats]
) -> None:
    """Refuse the first labelled row whose loss is +inf, if the `summaries` of the batch hold one."""
    if labels is None or all(math.isfinite(s.nll_sum) for s in summaries):
        return
    labelled = labels >= 0
    losses = dist.nll_at(np.where(labelled, labels, 0))
    row = int(np.flatnonzero(labelled & ~np.isfinite(losses))[0])
    raise InputError(_field(dist), _REASON.format(what="of its label"), index=(row,))


def check_finite_spans(dist: Distribution, rows: IntArray) -> None:
    """Refuse the first of `rows` (waiting for a label) whose logits span past their dtype's range."""
    if dist.logits is None or dist.binary:  # probabilities are floored at eps; one logit cannot span
        return
    z = dist.logits[rows]
    with np.errstate(over="ignore"):  # the span past the range is +inf: what is looked for
        spans = z.max(axis=1) - z.min(axis=1)
    if not spans.max() < np.inf:
        row = int(rows[np.flatnonzero(~np.isfinite(spans))[0]])
        raise InputError(_field(dist), _REASON.format(what="of a label at its minimum"), index=(row,))


def _field(dist: Distribution) -> str:
    return "logits" if dist.logits is not None else "probs"
