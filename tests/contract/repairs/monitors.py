"""Rules of the monitor routes: a configuration's class names and retention, late labels one per id, and a
binary-mode CloudEvent's ce-* headers."""

import hashlib
import json
from typing import Any

from service.api.routes.monitor_params import parse_time
from service.core import InputError
from service.settings import Settings
from tests.contract.repairs.arrays import REPAIRED, cycled

CE_RESPONSE = "org.kubeflow.serving.inference.response"


CE_REQUEST = "org.kubeflow.serving.inference.request"


_LIMITS = Settings()


def ids_and_labels(body: dict[str, Any]) -> None:
    """A monitor's late labels: one per id."""
    ids, labels = body.get("ids"), body.get("labels")
    if not (isinstance(ids, list) and ids and isinstance(labels, list) and labels):
        return
    if len(ids) != len(labels) and all(not isinstance(v, list) for v in labels):
        body["labels"] = cycled(labels, len(ids))
        REPAIRED["labels: one per id"] += 1


def repair_monitor(body: Any) -> None:
    """A monitor's configuration: class names as many as n_classes, retention ≥ bucket, reservoir ≤ limit."""
    if not isinstance(body, dict):
        return
    names, k = body.get("class_names"), body.get("n_classes")
    if isinstance(names, list) and isinstance(k, int | float) and len(names) != k:
        body["n_classes"] = len(names)
        REPAIRED["class names and n_classes"] += 1
    bucket, retention = body.get("bucket_s", 60), body.get("retention_s", 30 * 86_400)
    if isinstance(bucket, int) and isinstance(retention, int) and retention < bucket:
        body["retention_s"] = max(bucket, 60)
        REPAIRED["retention below the bucket"] += 1
    reservoir = body.get("reservoir_size")
    # (JSON Schema counts 1012655.0 an integer)
    if (
        isinstance(reservoir, int | float)
        and not isinstance(reservoir, bool)
        and reservoir > _LIMITS.max_reservoir
    ):
        body["reservoir_size"] = int(reservoir) % (_LIMITS.max_reservoir + 1)
        REPAIRED["reservoir past XENT_MAX_RESERVOIR"] += 1


def ce_headers(case: Any) -> None:
    """A binary-mode CloudEvent (application/json): its ce-* headers, from a hash of its body."""
    body = case.body if isinstance(case.body, dict) else {}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
    response = "predictions" in body or "outputs" in body
    # set without schemathesis' revalidation: undeclared headers never change a case's validity, but a
    # revalidation recomputes the mode from the components and turned a drawn positive event negative
    headers = {
        **(case.headers or {}),
        "ce-id": digest,
        "ce-source": "schemathesis",
        "ce-type": CE_RESPONSE if response else CE_REQUEST,
        "ce-specversion": "1.0",
    }
    object.__setattr__(case, "headers", headers)
    REPAIRED["CloudEvents binary-mode headers"] += 1


def repair_query(query: dict[str, Any]) -> dict[str, Any]:
    """A monitor query's time range: `window` or `from`, not both; `from` before `to`."""
    fixed = dict(query)
    if fixed.get("from") is not None and fixed.get("window") is not None:
        del fixed["window"]
        REPAIRED["window or from, not both"] += 1
    try:
        begin, end = parse_time(fixed.get("from"), "from"), parse_time(fixed.get("to"), "to")
    except InputError:
        return fixed  # (a time the server refuses as such: for its own reason, stated)
    if begin is not None and end is not None and begin >= end:
        fixed["from"], fixed["to"] = fixed["to"], fixed["from"]
        if begin == end:
            del fixed["from"]
        REPAIRED["from before to"] += 1
    return fixed
