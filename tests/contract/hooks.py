"""schemathesis hooks that teach the generator the rules JSON Schema cannot state, on positive cases only.

A positive case is a request the document says is valid; these rules (lengths that agree across fields,
rows summing to 1, labels below K, a binary body's framing, CloudEvents' binary-mode headers, the
deployment's limits) are the server's too, so a draw that breaks one is *repaired* into a request that
keeps them, keeping the draw's values where it can: tensors are cut to at most
:data:`~tests.contract.repairs.arrays.CAP` per dimension and their ``data`` cycled to ``prod(shape)``
values, rows made as long as the first one, probabilities divided by their row's sum, labels taken
modulo K (and among `classes`), a vLLM prompt's token ids taken from its entries, an applied map's
arrays shaped by the predictions; an option the predictions' form refuses is left out. A binary body
(``application/octet-stream``, ``application/x-npz``) is a drawn JSON request of the same operation,
repaired, then encoded (the fuzzing phase; the coverage phase, which draws nothing in a hook, encodes
the operation's documented JSON example). Negative cases are left as drawn, so
``negative_data_rejection`` still sees refusals. A JSON body set anew is revalidated by schemathesis
against the document: a repair the document refuses turns the case into a negative one (checked as
such), so no repaired case is held to acceptance unless the document says it is valid. A binary body is
bytes, which every ``{"type": "string", "format": "binary"}`` body matches, so it is set as the case's
starting state (:func:`tests.contract.repairs.binary.set_binary`): schemathesis 4.32.5 would call any
bytes a hook sets invalid.

The repairs live in :mod:`tests.contract.repairs`, a module per concern (arrays, scoring requests,
maps and binnings, logprob documents, monitors, binary bodies); this module holds the hooks.

Used by the pytest contract test (imported there) and by the command-line runner::

    SCHEMATHESIS_HOOKS=tests.contract.hooks st run openapi/openapi.json --checks all ...

:data:`REPAIRED` counts the repairs per kind (read by the terminal summary in tests/conftest.py).
"""

import copy
import sys
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import schemathesis
from hypothesis import strategies as st
from schemathesis.transport.serialization import Binary

from tests.contract.repairs.arrays import REPAIRED
from tests.contract.repairs.binary import BINARY_MEDIA_TYPES, ENCODED_FROM, set_binary, to_binary
from tests.contract.repairs.json_body import repair_json
from tests.contract.repairs.monitors import ce_headers, labels_by_name, repair_monitor, repair_query

__all__ = ["ENCODED_FROM", "REPAIRED", "flatmap_case", "map_case"]


def _positive(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode.is_positive


def _phase(case: Any) -> str:
    return str(case.meta.phase.name) if case.meta is not None else ""


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Repair a positive case (see the module docstring); a negative one goes as drawn."""
    if not _positive(case):
        return case
    try:
        # (NumPy raises rather than warns, so a value no repair can hold fails alike under pytest and st)
        with np.errstate(all="raise", under="ignore"):
            return _repaired(case)
    except Exception as exc:  # noqa: BLE001  (a value no repair can hold: the documented example instead)
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        where = f"{Path(frame.filename).name}:{frame.lineno}"
        REPAIRED[f"not repairable ({type(exc).__name__} at {where}): the example instead"] += 1
        example = _example(case, case.media_type)
        if example is not None and case.media_type not in BINARY_MEDIA_TYPES:
            case.body = example
            if case.operation.path.endswith("/events") and case.media_type == "application/json":
                ce_headers(case)
        return case


def _repaired(case: Any) -> Any:
    path, media_type = case.operation.path, case.media_type
    if media_type in BINARY_MEDIA_TYPES:
        # the fuzzing phase draws a JSON request in flatmap_case; the coverage phase (no draws in a
        # map_case) and the examples phase encode the operation's documented JSON example
        return case if _phase(case) == "fuzzing" else _example_encoded(case, media_type)
    if isinstance(case.body, dict):
        body = copy.deepcopy(case.body)
        if path == "/v1/monitors/{name}" and case.method.upper() == "PUT":
            repair_monitor(body)
        elif media_type in ("application/json", "application/cloudevents+json"):
            repair_json(body, path)
        if path == "/v1/monitors/{name}/labels":
            labels_by_name(body, _monitor_config(case))
        if body != case.body:
            # set anew only when changed: schemathesis then revalidates it against the document
            case.body = body
    if path.endswith("/events") and media_type == "application/json":
        ce_headers(case)
    if case.query and path.startswith("/v1/monitors/{name}/"):
        query = repair_query(case.query)
        if query != case.query:
            case.query = query
    return case


def _monitor_config(case: Any) -> Any:
    """The stored configuration of the case's monitor in the app under test, or None (none, or no app)."""
    test = sys.modules.get("tests.contract.test_schemathesis")
    name = (case.path_parameters or {}).get("name")
    store = None if test is None else test.schema.app.state.monitors.current
    if store is None or not isinstance(name, str):
        return None
    try:
        return store.get_monitor(name)
    except UnicodeError:  # (a drawn name with a lone surrogate: the server refuses it, 4xx)
        return None


def _example(case: Any, media_type: str) -> dict[str, Any] | None:
    """A copy of the operation's documented example body of `media_type`, if the document finds it valid."""
    body = next((item for item in case.operation.body.items if item.media_type == media_type), None)
    example = None if body is None else body.definition.get("example")
    return copy.deepcopy(example) if isinstance(example, dict) and body.is_valid(example) else None


def _example_encoded(case: Any, media_type: str) -> Any:
    """A coverage-phase binary case: the operation's JSON example (valid by the document) encoded."""
    example = _example(case, "application/json")
    if example is None:
        REPAIRED["binary body without a valid JSON example"] += 1
        return case
    return to_binary(case, media_type, example)


def _json_bodies(operation: Any) -> Any:
    """The strategy of the operation's positive JSON bodies (schemathesis' own, from the document)."""
    from schemathesis.generation import GenerationMode

    body = next(item for item in operation.body.items if item.media_type == "application/json")
    config = operation.schema.config.generation_for(operation=operation, phase="fuzzing")
    return body.get_strategy(operation, config, GenerationMode.POSITIVE)


def _encoded(case: Any, media_type: str, body: Any) -> Any:
    drawn = case.body
    try:
        with np.errstate(all="raise", under="ignore"):
            repair_json(body, case.operation.path)
            return to_binary(case, media_type, body)
    except Exception:  # noqa: BLE001
        # values no binary datatype holds (an integer past 64 bits): the operation's example instead
        REPAIRED["binary body not encodable"] += 1
        set_binary(case, bytes(drawn.data) if isinstance(drawn, Binary) else b"")
        return _example_encoded(case, media_type)


@schemathesis.hook
def flatmap_case(context: Any, case: Any) -> Any:
    """A positive binary case: a drawn JSON request of the operation, repaired, then encoded."""
    media_type = case.media_type
    if not _positive(case) or media_type not in BINARY_MEDIA_TYPES or _phase(case) != "fuzzing":
        return st.just(case)
    return _json_bodies(case.operation).map(lambda body: _encoded(case, media_type, body))
