"""Labels named by a class vocabulary (`classes`, `pos_label`), as scikit-learn's ``labels=``."""

from typing import Any

import numpy as np

from service.core import InputError, check_labels
from service.core._typing import IntArray
from service.core.validation import first_index, integral_floats


def check_vocabulary(
    classes: list[int] | list[str], pos_label: int | str | None, n_classes: int, *, binary: bool
) -> int | None:
    """Check `classes` against the prediction columns; the column `pos_label` names (binary input).

    Declared classes must number the prediction columns (2 for binary input), as
    ``sklearn.metrics.log_loss(labels=…)``, and be distinct; `pos_label` (binary input only)
    must be one of them. Returns its position in `classes`, None when it was not sent.
    """
    if len(classes) != n_classes:
        columns = "2 (binary input)" if binary else str(n_classes)
        raise InputError(
            "classes", f"declares {len(classes)} classes but the predictions have {columns} columns"
        )
    if len(set(classes)) != len(classes):
        raise InputError("classes", "must be distinct")
    if pos_label is None:
        return None
    if not binary:
        raise InputError("pos_label", "applies to binary input only (a length-N positive-class vector)")
    matches = [j for j, c in enumerate(classes) if c == pos_label and type(c) is type(pos_label)]
    if not matches:
        raise InputError("pos_label", f"{pos_label!r} is not one of `classes`")
    return matches[0]


def ignored_sentinel(ignore_index: int, n_classes: int) -> int:
    """The index-space value that marks ignored rows once names are mapped to columns.

    `ignore_index` itself when no column has that index, else -1 (no column index is negative):
    a raw label equal to `ignore_index` is ignored, never a column that happens to share its number.

    Examples
    --------
    >>> ignored_sentinel(-100, 3), ignored_sentinel(1, 3)
    (-100, -1)
    """
    return ignore_index if not 0 <= ignore_index < n_classes else -1


def map_labels(
    raw: Any,
    classes: list[int] | list[str],
    pos_label: int | str | None,
    n_classes: int,
    *,
    binary: bool,
    ignore_index: int | None = None,
) -> IntArray:
    """Column indices of `raw` labels, column j being ``classes[j]``; binary: 1 for `pos_label`.

    Declared classes must number the prediction columns (2 for binary input), as
    ``sklearn.metrics.log_loss(labels=…)``; a label outside them is a 422 naming its index.
    Binary input: `pos_label` (default ``classes[1]``) is the positive class, as
    ``brier_score_loss(pos_label=…)``. A raw label equal to `ignore_index` (integer classes
    only) is compared before mapping, need not be a class, and comes out as
    :func:`ignored_sentinel`.
    """
    positive = check_vocabulary(classes, pos_label, n_classes, binary=binary)
    vocab = np.asarray(classes)
    order = np.argsort(vocab, kind="stable")
    ranked = vocab[order]
    labels = np.asarray(raw)
    strings = vocab.dtype.kind == "U"
    if not strings and labels.ndim == 1 and labels.dtype.kind == "f":  # 2.0, as without `classes`
        labels = integral_floats(labels)
    if labels.ndim != 1 or (labels.dtype.kind == "U") != strings or labels.dtype.kind in "bfcO":
        kind = "strings" if strings else "integers"
        raise InputError("labels", f"must be a list of {kind}, as `classes`")
    at = np.minimum(np.searchsorted(ranked, labels), n_classes - 1)
    unknown = ranked[at] != labels
    ignored = None if ignore_index is None else labels == ignore_index
    if ignored is not None:
        unknown &= ~ignored
    if unknown.any():
        index = first_index(unknown)
        raise InputError("labels", f"{labels[index].item()!r} is not one of `classes`", index=index)
    indices = order[at].astype(np.intp)
    if positive is not None:
        indices = (indices == positive).astype(np.intp)
    if ignored is None or ignore_index is None:
        return check_labels(indices, n_classes)
    sentinel = ignored_sentinel(ignore_index, n_classes)
    indices[ignored] = sentinel
    return check_labels(indices, n_classes, ignore_index=sentinel)
