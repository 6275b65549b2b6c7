"""Labels named by a class vocabulary (`classes`, `pos_label`), as scikit-learn's ``labels=``."""

from typing import Any

import numpy as np

from service.core import InputError, check_labels
from service.core._typing import IntArray
from service.core.validation import first_index


def map_labels(
    raw: Any, classes: list[int] | list[str], pos_label: int | str | None, n_classes: int, *, binary: bool
) -> IntArray:
    """Column indices of `raw` labels, column j being ``classes[j]``; binary: 1 for `pos_label`.

    Declared classes must number the prediction columns (2 for binary input), as
    ``sklearn.metrics.log_loss(labels=…)``; a label outside them is a 422 naming its index.
    Binary input: `pos_label` (default ``classes[1]``) is the positive class, as
    ``brier_score_loss(pos_label=…)``.
    """
    if len(classes) != n_classes:
        columns = "2 (binary input)" if binary else str(n_classes)
        raise InputError(
            "classes", f"declares {len(classes)} classes but the predictions have {columns} columns"
        )
    vocab = np.asarray(classes)
    order = np.argsort(vocab, kind="stable")
    ranked = vocab[order]
    if np.any(ranked[1:] == ranked[:-1]):
        raise InputError("classes", "must be distinct")
    labels = np.asarray(raw)
    strings = vocab.dtype.kind == "U"
    if labels.ndim != 1 or (labels.dtype.kind == "U") != strings or labels.dtype.kind in "bfcO":
        kind = "strings" if strings else "integers"
        raise InputError("labels", f"must be a list of {kind}, as `classes`")
    at = np.minimum(np.searchsorted(ranked, labels), n_classes - 1)
    unknown = ranked[at] != labels
    if unknown.any():
        index = first_index(unknown)
        raise InputError("labels", f"{labels[index].item()!r} is not one of `classes`", index=index)
    indices = order[at].astype(np.intp)
    if pos_label is not None:
        if not binary:
            raise InputError("pos_label", "applies to binary input only (a length-N positive-class vector)")
        matches = [j for j, c in enumerate(classes) if c == pos_label and type(c) is type(pos_label)]
        if not matches:
            raise InputError("pos_label", f"{pos_label!r} is not one of `classes`")
        indices = (indices == matches[0]).astype(np.intp)
    return check_labels(indices, n_classes)
