"""A monitor's plain small write, stored raw on the event loop in one pass.

Serving stacks mostly send ``{"logits": N×K numbers, "labels": N integers}``: a few dozen rows,
no key, no ids, no timestamps, the default segment, stored as one raw row
(:mod:`service.monitors.settle`). :func:`plain_write` reads, checks and stores such a body by
the calls the general way (:func:`.monitor_observations.observations`) makes for it — the plain
readers, ``check_labels``, :func:`~service.monitors.settle.raw_row`, the store's
``append_raw_soon`` with the cached config as ``expect`` — and answers its document, without
its per-request objects (the write, the recording, the body, the prediction, the prepared
batch): ~780 Python steps fewer a write (a ``sys.settrace`` count over ``benchmarks.in_process``'s
writes, 8 at a time: 4,608 → 3,829).

Whenever the request is anything else, or anything goes otherwise — the body is not plain or
a check refuses it, the monitor is not in this process's config cache, the segment has no row
yet, the store changed its config or would block — it returns None with nothing written, and
the general way serves the request from the start (and answers an error as it does, after
checking it against the stored config).
"""

from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from service import core
from service.api.deps import DIRECT_BODY
from service.api.errors.problems import ProblemError
from service.api.formats.payload import parse_json_object
from service.api.formats.plain import numbers_only, plain_array, plain_logits
from service.monitors.configs import ConfigCache
from service.monitors.settle import raw_row
from service.store import ConfigChanged, LockHeld, MonitorNotFound, WouldBlock

from . import json_response

#: The fields of a plain write.
PLAIN_FIELDS = frozenset({"logits", "labels"})


def plain_arrays(
    data: bytearray, fields: dict[str, Any], max_elements: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """A plain body's logits and labels as the general reader reads them, or None.

    `fields` is its JSON, with exactly `PLAIN_FIELDS`. None whenever the general reader could
    answer otherwise: a string or boolean in the body (so no key twice), logits that are not N×K
    floats its checks take, labels that are not a list of numbers, more elements than
    `max_elements`. The labels are not checked yet.
    """
    if not numbers_only(data, fields):
        return None
    logits, labels = plain_logits(fields["logits"], "logits"), plain_array(fields["labels"])
    if logits is None or labels is None or logits.size + labels.size > max_elements:
        return None
    return logits, labels


async def plain_write(request: Request, name: str) -> Response | None:
    """The answer to a plain small write to monitor `name`, once durable; None: the general way serves it."""
    state: dict[str, Any] = request.scope["state"]
    data = state.get(DIRECT_BODY)  # the direct layer's whole JSON body, left for the general way
    if data is None:
        return None
    app = request.app.state
    store = app.monitors.current
    if store is None or not store.inline_writes:
        return None
    try:
        fields = parse_json_object(data, unique_keys=False)
    except ProblemError:
        return None
    arrays = plain_arrays(data, fields, app.settings.max_elements) if fields.keys() == PLAIN_FIELDS else None
    if arrays is None:
        return None
    logits, labels = arrays
    configs: ConfigCache = app.monitor_configs
    config = configs.cached(store, name)
    if config is None or config.binary or logits.shape[1] != config.n_classes:
        return None
    if not configs.knows_segment(store, config, ""):
        return None
    try:
        labels = core.check_labels(labels, config.n_classes, ignore_index=-1)
        core.check_same_length("labels", labels.shape[0], logits.shape[0], other="logits")
    except core.InputError:
        return None
    raw = raw_row(config, logits, labels, "")
    if raw is None:
        return None
    row, labelled = raw
    try:
        await store.append_raw_soon(name, row, expect=config)
    except ConfigChanged as changed:  # nothing written: the general way prepares it with this one
        configs.update(store, name, changed.config)
        return None
    except MonitorNotFound:
        configs.update(store, name, None)
        return None
    except (LockHeld, WouldBlock):  # nothing written: the general way waits, or writes in a thread
        return None
    del state[DIRECT_BODY]
    n = logits.shape[0]
    state["bytes_in"], state["rows"] = len(data), n  # for the metrics and the access log
    app.monitors.wake_settler()
    document = {
        "monitor": name,
        "n": n,
        "n_labelled": labelled,
        "n_pending": 0,
        "n_duplicate_ids": 0,
        "buckets": 1,
        "segment": "",
    }
    return json_response(document)
