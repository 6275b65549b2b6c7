"""Rules of the scoring requests' arrays and options: labels below K and among `classes`, rows summing to 1,
weights one per row or class, soft and multilabel targets, a divergence's two sides, a sequence mask."""

import itertools
import math
from typing import Any

import numpy as np

from tests.contract.repairs.arrays import (
    PREDICTIONS,
    REPAIRED,
    array_of,
    array_or_none,
    as_sent,
    cycled,
    drop,
    fields_of,
    flat,
    is_number,
    is_tensor,
    member,
    options_of,
    predictions_of,
    put_array,
)


def sample_weights(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`sample_weight` and BCE's `weight`: a weight ≥ 0 per row (N×K or N), a positive sum, N × max finite."""
    for name in ("sample_weight", "weight"):
        if name not in fields:
            continue
        array, weights = predictions_of(fields), array_of(fields[name])
        if array is None or weights is None or array.ndim > 2 or weights.size == 0:
            continue
        fixed = np.abs(np.resize(weights.reshape(-1), array.shape[0]))
        # (positive as sent: 1e-15 is 0 in FP16)
        if not as_sent(fixed, fields[name]).astype(np.float64).sum() > 0:
            fixed = np.ones_like(fixed)
        largest = float(fixed.max())
        if not np.isfinite(largest * fixed.size):  # calibration's rule: N × max(sample_weight) finite
            fixed = fixed / (2.0 * fixed.size)
        if fixed.shape != weights.shape or not np.array_equal(fixed, weights):
            REPAIRED[f"{name}: one per row, positive sum"] += 1
            put_array(body, name, fixed, fields[name])


def class_weights(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Cross-entropy's `class_weights`: one non-negative weight per class, some labelled row weighted.

    With binary predictions, PyTorch's BCE `pos_weight` and `weight` take no `class_weights`,
    `sample_weight`, `label_smoothing` or `ignore_index` (binary_weights.py): those are left out.
    """
    options = options_of(body) or {}
    array = predictions_of(fields)
    if array is None:
        return
    multilabel = options.get("multilabel") is True
    binary = array.ndim == 1 and not multilabel
    if not binary and not multilabel:
        for name in ("pos_weight", "weight"):  # (binary input only)
            if drop(body, name):
                REPAIRED["BCE pos_weight and weight with binary input only"] += 1
    pos_weight = options.get("pos_weight")
    if binary and isinstance(pos_weight, list):  # (one number: a list is per class, multilabel)
        options["pos_weight"] = next((w for w in flat(pos_weight) if is_number(w) and w >= 0), 1.0)
        REPAIRED["BCE pos_weight one number for binary input"] += 1
    if binary and (options.get("pos_weight") is not None or "weight" in fields_of(body)):
        for name in ("class_weights", "sample_weight", "label_smoothing", "ignore_index"):
            if drop(body, name):
                REPAIRED["BCE weights without class or sample weights, smoothing, ignore_index"] += 1
        return
    like = fields.get("class_weights", options.get("class_weights"))
    weights = array_or_none(like)
    if weights is None or weights.size == 0 or array.ndim > 3 or options.get("multilabel") is True:
        return
    k = 2 if array.ndim == 1 else array.shape[-1]
    fixed = np.abs(np.resize(weights.reshape(-1), k))
    labels = array_or_none(fields.get("labels"))
    scored = labels is not None and labels.size and np.all((labels >= 0) & (labels < k))
    if scored and not fixed[labels.astype(np.int64).reshape(-1)].sum() > 0:
        fixed[fixed == 0] = 1  # (the weight of every labelled row's class was 0)
    if not fixed.sum() > 0:
        fixed = np.ones(k)
    if fixed.shape != weights.shape or not np.array_equal(fixed, weights):
        REPAIRED["class_weights: one per class, some weight"] += 1
        if is_tensor(like):
            put_array(body, "class_weights", fixed, like, integer=False)
        else:
            options["class_weights"] = fixed.tolist()


def multilabel_targets(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Multilabel `targets`: 0/1, shaped as the N×K predictions."""
    multilabel = body.get("multilabel") or (body.get("parameters") or {}).get("multilabel")
    if multilabel is not True or "targets" not in fields:
        return
    array, targets = predictions_of(fields), array_of(fields["targets"])
    if array is None or targets is None or array.ndim != 2 or targets.size == 0:
        return
    fixed = (np.resize(targets.reshape(-1), array.shape) != 0).astype(np.int64)
    if fixed.shape != targets.shape or not np.array_equal(fixed, targets):
        REPAIRED["multilabel targets: 0/1, N×K"] += 1
        put_array(body, "targets", fixed, fields["targets"])


def soft_targets(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Soft `targets` (the predictions' shape): values in [0, 1], rows summing to 1."""
    array, targets = predictions_of(fields), array_or_none(fields.get("targets"))
    if array is None or targets is None or targets.size == 0 or body.get("multilabel") is True:
        return
    # (binary predictions, a length-N vector, take soft targets as a vector)
    if array.ndim >= 2:
        _rows_in_float64(fields["targets"])
    fixed = np.resize(targets.reshape(-1), array.shape)
    if np.any((fixed < 0) | (fixed > 1)):
        fixed = np.abs(fixed) / (1 + np.abs(fixed))
    if fixed.ndim >= 2:
        sums = fixed.sum(axis=-1, keepdims=True)
        fixed = np.where(sums > 0, fixed / np.where(sums > 0, sums, 1), 1 / fixed.shape[-1])
    if fixed.shape != targets.shape or not np.array_equal(fixed, targets):
        REPAIRED["soft targets: shaped as the predictions, in [0, 1], rows summing to 1"] += 1
        put_array(body, "targets", fixed, fields["targets"], integer=bool(np.all(fixed == np.round(fixed))))


def divergence_sides(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A divergence's q side with the shape of its p side (values cycled)."""
    p_name = next((name for name in ("p_probs", "p_logits") if name in fields), None)
    q_name = next((name for name in ("q_probs", "q_logits") if name in fields), None)
    if p_name is None or q_name is None:
        return
    p, q = array_of(fields[p_name]), array_of(fields[q_name])
    if p is None or q is None or q.size == 0 or p.shape == q.shape:
        return
    fixed = np.resize(q.reshape(-1), p.shape)
    if q_name == "q_probs" and fixed.ndim >= 2:
        sums = fixed.sum(axis=-1, keepdims=True)
        fixed = np.where(sums > 0, fixed / np.where(sums > 0, sums, 1), 1 / fixed.shape[-1])
    REPAIRED["divergence: q shaped as p"] += 1
    if fixed.ndim >= 3 and not is_tensor(fields[q_name]):
        # B×T×K is stated as a tensor object, not as nested lists: q takes p's form
        body[q_name] = {"datatype": "FP64", "shape": list(fixed.shape), "data": fixed.reshape(-1).tolist()}
        return
    put_array(body, q_name, fixed, fields[q_name], integer=False)


def pos_label_needs_classes(body: dict[str, Any]) -> None:
    """An inference request's `pos_label` needs `classes` (stated, but for /v1/calibration's: see there)."""
    parameters = body.get("parameters") if isinstance(body.get("inputs"), list) else None
    if (
        isinstance(parameters, dict)
        and parameters.get("pos_label") is not None
        and parameters.get("classes") is None
    ):
        del parameters["pos_label"]
        REPAIRED["pos_label without classes"] += 1


def class_vocabulary(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`classes`: a distinct name per prediction column (2 if binary); labels and `pos_label` among them."""
    options = options_of(body)
    classes = None if options is None else options.get("classes")
    array = predictions_of(fields)
    if not isinstance(classes, list) or len(classes) < 2 or array is None or array.ndim > 2:
        return
    k = 2 if array.ndim == 1 else array.shape[-1]
    strings = isinstance(classes[0], str)
    fixed = classes[:k]
    spare = (f"class {i}" if strings else i for i in itertools.count())
    fixed += itertools.islice((c for c in spare if c not in classes), k - len(fixed))
    if fixed != classes:
        REPAIRED["classes: one per column"] += 1
        options["classes"] = fixed
    pos_label = options.get("pos_label")
    if pos_label is not None and not any(c == pos_label and type(c) is type(pos_label) for c in fixed):
        REPAIRED["pos_label among classes"] += 1
        options["pos_label"] = fixed[-1]
    labels = fields.get("labels")
    values = labels.get("data") if is_tensor(labels) else labels
    if not isinstance(values, list) or any(isinstance(v, list | dict) for v in values):
        return
    if strings and is_tensor(labels):
        return  # (a tensor holds numbers: string classes take no labels input; the document says so)
    if is_tensor(labels) and labels.get("datatype") != "INT64":
        # (integer classes within int64: a float rounds a label off its class, or past 2**53 is refused)
        labels["datatype"] = "INT64"
        REPAIRED["labels among classes"] += 1
    ignore_index = options.get("ignore_index")
    kept = [
        v
        if member(v, fixed) or (ignore_index is not None and v == ignore_index)
        else fixed[(int(v) if isinstance(v, int | float) and float(v).is_integer() else i) % k]
        for i, v in enumerate(values)
    ]
    if not is_tensor(labels) and array.ndim <= 2:
        kept = cycled(kept, array.shape[0])  # (names: `labels_per_row` counted only numbers)
    if kept != values:
        REPAIRED["labels among classes"] += 1
        if is_tensor(labels):
            labels["data"] = kept
        else:
            body["labels"] = kept


def sequence_mask(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """A B×T×K request's `mask`: B×T, 0/1, some position fitted (a ragged one from its values)."""
    array, value = predictions_of(fields), fields.get("mask")
    if array is None or array.ndim != 3 or value is None:
        return
    mask = array_or_none(value)
    ragged = [float(v) for v in flat(value) if isinstance(v, bool) or is_number(v)]
    drawn = mask.reshape(-1) if mask is not None else np.asarray(ragged, np.float64)
    fixed = (np.resize(drawn if drawn.size else np.ones(1), array.shape[:2]) != 0).astype(np.int64)
    if not fixed.any():
        fixed[...] = 1
    if mask is None or fixed.shape != mask.shape or not np.array_equal(fixed, mask):
        REPAIRED["mask: B×T, 0/1"] += 1
        put_array(body, "mask", fixed, fields["mask"], integer=True)


def positive_class(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """`target: "positive_class"` needs two classes (binary input or N×2), `pos_label` binary input."""
    options, array = options_of(body), predictions_of(fields)
    if options is None or array is None:
        return
    if options.get("target") == "positive_class" and array.ndim == 2 and array.shape[1] != 2:
        del options["target"]
        REPAIRED["positive_class target with two classes only"] += 1
    if options.get("pos_label") is not None and array.ndim >= 2 and options.get("multilabel") is not True:
        del options["pos_label"]
        REPAIRED["pos_label with binary input only"] += 1


def requested_outputs(body: dict[str, Any]) -> None:
    """Requested `outputs` named `n`, which every answer has (the others follow the options)."""
    outputs = body.get("outputs") if isinstance(body.get("inputs"), list) else None
    if not isinstance(outputs, list):
        return
    for output in outputs:
        if isinstance(output, dict) and output.get("name") != "n":
            output["name"] = "n"
            REPAIRED["requested outputs: n"] += 1


def labels_per_row(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Labels as many as the predictions' rows (B×T for B×T×K), each below K (modulo K)."""
    if "labels" not in fields:
        return
    values = flat(fields["labels"]["data"] if is_tensor(fields["labels"]) else fields["labels"])
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return
    predictions = next((fields[name] for name in PREDICTIONS if name in fields), None)
    array = None if predictions is None else array_of(predictions)
    labels = array_of(fields["labels"])
    if labels is None and values:  # ragged rows ([[1, 2], []]): their values, in order
        labels = np.array(values, dtype=object)
    if array is None or labels is None or array.size == 0:
        return
    if labels.size == 0:
        labels = np.zeros(1, dtype=np.int64)
    k = 2 if array.ndim == 1 else array.shape[-1]
    rows = array.shape[:1] if array.ndim <= 2 else array.shape[:2]
    # (modulo K before the cast: a label near 2**63 is read as a float64 that no int64 holds)
    fixed = np.resize(labels.reshape(-1), math.prod(rows)).reshape(rows)
    fixed = np.where(fixed == -1, -1, np.mod(fixed, k)) if "ignore_index" not in body else np.mod(fixed, k)
    fixed = fixed.astype(np.int64)
    if fixed.shape != labels.shape or not np.array_equal(fixed, labels):
        REPAIRED["labels: one per row, below K"] += 1
        if fixed.ndim == 2 and not is_tensor(fields["labels"]) and is_tensor(predictions):
            # B×T labels take the B×T×K predictions' form: a tensor object beside a tensor (nested lists
            # are stated beside nested lists only, on a monitor's sequences body)
            data = fixed.reshape(-1).tolist()
            body["labels"] = {"datatype": "INT64", "shape": list(fixed.shape), "data": data}
            return
        put_array(body, "labels", fixed, fields["labels"])


def normalise(body: dict[str, Any], fields: dict[str, Any], name: str) -> None:
    like = fields[name]
    array = array_of(like)
    if array is None:
        return
    if np.any((array < 0) | (array > 1)):
        # (values outside [0, 1]: a tensor's nested `data` is not bounded by the document; see the report)
        array = np.abs(array) / (1 + np.abs(array))
        REPAIRED["probabilities in [0, 1]"] += 1
        if array.ndim < 2:
            put_array(body, name, array, like, integer=False)
    if array.ndim < 2:
        return
    _rows_in_float64(like)
    sums = array.sum(axis=-1, keepdims=True)
    if np.all(np.abs(sums - 1) <= 1e-9):
        return
    uniform = np.full_like(array, 1 / array.shape[-1])
    with np.errstate(invalid="ignore", divide="ignore"):
        fixed = np.where(sums > 0, array / np.where(sums > 0, sums, 1), uniform)
    REPAIRED["rows summing to 1"] += 1
    put_array(body, name, fixed, like, integer=False)


def _rows_in_float64(like: Any) -> None:
    """A tensor of rows summing to 1 sent as FP64: FP16 and BF16 round a row's sum past the tolerance."""
    if is_tensor(like) and like.get("datatype") in ("FP16", "BF16"):
        like["datatype"] = "FP64"
        REPAIRED["rows summing to 1 sent as FP64"] += 1


def options_of_rows(body: dict[str, Any], fields: dict[str, Any]) -> None:
    """Options rows of probabilities need: a `tolerance` that float64 rounding of a sum keeps; the
    labels' `ignore_index` not every label; at most N `validation.folds`; no B×T×K-refused options."""
    options, array = options_of(body), predictions_of(fields)
    if options is None or array is None:
        return
    tolerance = options.get("tolerance")
    if is_number(tolerance) and tolerance < 1e-12 and array.ndim >= 2:
        del options["tolerance"]
        REPAIRED["tolerance below a row sum's rounding left out"] += 1
    labels, ignore = array_or_none(fields.get("labels")), options.get("ignore_index")
    if labels is not None and labels.size and is_number(ignore) and np.all(labels == ignore):
        del options["ignore_index"]
        REPAIRED["ignore_index not every label"] += 1
    validation = options.get("validation")
    folds = validation.get("folds") if isinstance(validation, dict) else None
    if isinstance(validation, dict) and validation.get("holdout") is not None and array.shape[0] < 2:
        del options["validation"]  # (a holdout needs a sample each side)
        REPAIRED["validation folds at most N"] += 1
    elif is_number(folds) and folds > array.shape[0]:
        if array.shape[0] >= 2:
            validation["folds"] = int(array.shape[0])
        else:
            del options["validation"]
        REPAIRED["validation folds at most N"] += 1
    if array.ndim == 3 and isinstance(body.get("inputs"), list):  # (stated on the JSON body only)
        for name in ("classes", "pos_label", "normalize"):
            if drop(body, name):
                REPAIRED["options B×T×K sequences refuse left out"] += 1
