"""Rules of the monitor routes: a configuration's class names and retention, late labels one per id, and a
binary-mode CloudEvent's ce-* headers."""

import hashlib
import json
from typing import Any

from service import clock
from service.api.routes.monitor_params import parse_time
from service.core import InputError
from service.settings import Settings
from tests.contract.repairs.arrays import REPAIRED, cycled, is_number

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


def labels_by_name(body: dict[str, Any], config: Any) -> None:
    """Late labels sent as class names: names of the monitor's own (state on the server: its config).

    `config` is the monitor's stored configuration (None: no such monitor, answered 404, or none
    read). A name it does not have becomes one it has, picked by the drawn name's hash.
    """
    labels = body.get("labels")
    names = None if config is None else config.class_names
    if not (names and isinstance(labels, list)):
        return
    fixed = [
        v if not isinstance(v, str) or v in names else names[_stable_hash(v) % len(names)] for v in labels
    ]
    if fixed != labels:
        body["labels"] = fixed
        REPAIRED["late labels among the monitor's class names"] += 1


def _stable_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8], 16)


def repair_monitor(body: Any) -> None:
    """A monitor's configuration: class names as many as n_classes, retention ≥ bucket, reservoir ≤ limit."""
    if not isinstance(body, dict):
        return
    names, k = body.get("class_names"), body.get("n_classes")
    if isinstance(names, list) and isinstance(k, int | float) and len(names) != k:
        body["n_classes"] = len(names)
        REPAIRED["class names and n_classes"] += 1
    bucket, retention = body.get("bucket_s", 60), body.get("retention_s", 30 * 86_400)
    # (JSON Schema counts 11631.0 an integer)
    if is_number(bucket) and is_number(retention) and retention < bucket:
        body["retention_s"] = max(int(bucket), 60)
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


def _two_days_ago() -> float:
    return clock.now() - 2 * 86_400


def repair_query(query: dict[str, Any]) -> dict[str, Any]:
    """A monitor query's time range: `window` or `from`, not both; `from` before `to`."""
    fixed = dict(query)
    if fixed.get("from") is not None and fixed.get("window") is not None:
        del fixed["window"]
        REPAIRED["window or from, not both"] += 1
    for first, last in (("from", "to"), ("reference_from", "reference_to")):
        try:
            begin, end = parse_time(fixed.get(first), first), parse_time(fixed.get(last), last)
        except InputError:
            continue  # (a time the server refuses as such: for its own reason, stated)
        if begin is not None and end is not None and begin >= end:
            fixed[first], fixed[last] = fixed[last], fixed[first]
            if begin == end:
                del fixed[first]
            REPAIRED[f"{first} before {last}"] += 1
        elif first == "reference_from" and begin is not None and end is None and begin > _two_days_ago():
            # (the reference ends where the queried window begins, by default: at most a day ago)
            del fixed[first]
            REPAIRED["reference_from before the window"] += 1
    return fixed
