"""Every map fitted with `sample_weight` (and `classes`) is accepted by /v1/apply, JSON and binary (#20)."""

import numpy as np
import pytest

from service.client import XentClient
from tests.client.test_fit_roundtrip import _batches

CASES = [
    ("platt", "binary"),
    ("beta", "binary"),
    ("isotonic", "binary"),
    ("histogram", "binary"),
    ("isotonic", "categorical"),
    ("histogram", "categorical"),
    ("vector", "categorical"),
    ("matrix", "categorical"),
    ("temperature", "categorical"),
]


@pytest.mark.parametrize("payload", ["json", "binary"])
@pytest.mark.parametrize(("method", "form"), CASES)
def test_every_weighted_map_round_trips_through_apply(live_url, rng, payload, method, form):
    binary, categorical = _batches(rng)
    logits, labels = binary if form == "binary" else categorical
    weights = rng.uniform(0, 2, size=labels.size)
    k = 2 if form == "binary" else logits.shape[1]
    classes = [10 * c for c in range(k)]  # int names: sent as a tensor like any label array
    names = np.asarray(classes)[labels]
    with XentClient(live_url, payload=payload) as xent:
        fit = xent.recalibrate(
            method, logits=logits, labels=names, classes=classes, sample_weight=weights, return_probs=True
        )
        assert fit.convention.sample_weight and fit.convention.classes == classes
        for parameters in (fit.parameters, fit.parameters.model_dump(mode="json")):
            applied = xent.apply(
                parameters, logits=logits, labels=names, classes=classes, sample_weight=weights
            )
            assert applied.probs == fit.probs
            assert applied.metrics == fit.after
