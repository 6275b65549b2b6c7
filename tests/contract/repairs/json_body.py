"""The repair of a positive JSON body (or inference request): every rule, in the order they depend on
each other."""

from typing import Any

from tests.contract.repairs.arrays import (
    ARRAY_FIELDS,
    PROBABILITIES,
    REPAIRED,
    depth_of,
    fields_of,
    fix_tensor,
    is_tensor,
    rectangular,
)
from tests.contract.repairs.logprobs import logprobs_documents, sequence_counts
from tests.contract.repairs.maps import (
    MAPS,
    applied_map,
    bin_edges,
    binary_methods,
    map_inputs,
    preset_fields,
)
from tests.contract.repairs.monitors import ids_and_labels
from tests.contract.repairs.scoring import (
    class_vocabulary,
    class_weights,
    divergence_sides,
    labels_per_row,
    multilabel_targets,
    normalise,
    options_of_rows,
    pos_label_needs_classes,
    positive_class,
    requested_outputs,
    sample_weights,
    sequence_mask,
    soft_targets,
)


def repair_json(body: Any, path: str = "") -> None:
    """Repair a positive JSON body in place (tensors, rows, sums, labels; see the module docstring)."""
    if not isinstance(body, dict):
        return
    for value in [*body.values(), *(body.get("inputs") or [])]:
        if is_tensor(value):
            fix_tensor(value)
    for name in ARRAY_FIELDS:
        value = body.get(name)
        depth = depth_of(value)
        if isinstance(value, list) and depth >= 1:
            fixed = rectangular(value, depth)
            if fixed != value:
                REPAIRED["rows of one length"] += 1
                body[name] = fixed
    if path.endswith(("/apply", "/apply/infer", "/recalibrate", "/recalibrate/infer")):
        binary_methods(body)
    fields = fields_of(body)
    for name in PROBABILITIES:
        if name in fields:
            normalise(body, fields, name)
    labels_per_row(body, fields)
    ids_and_labels(body)
    sample_weights(body, fields)
    multilabel_targets(body, fields)
    soft_targets(body, fields)
    divergence_sides(body, fields)
    bin_edges(body)
    pos_label_needs_classes(body)
    class_vocabulary(body, fields)
    sequence_mask(body, fields)
    requested_outputs(body)
    logprobs_documents(body)
    positive_class(body, fields)
    sequence_counts(body)
    preset_fields(body)
    options_of_rows(body, fields_of(body))
    if path.removeprefix("/v1/").removeprefix("/v2/models/").removesuffix("/infer") in MAPS:
        map_inputs(body, fields)
    if path.endswith(("/apply", "/apply/infer")):
        applied_map(body, fields)
    if path.endswith(("/cross-entropy", "/cross-entropy/infer")):
        class_weights(body, fields_of(body))
