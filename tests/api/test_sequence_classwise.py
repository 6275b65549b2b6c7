"""/v1/calibration on B×T×K: class-wise and marginal targets and the Brier decomposition, block-wise."""

import numpy as np
import pytest
import torch

from service.core.language import blocks
from tests.api.test_payloads import binary_request
from tests.api.test_sequence_calibration import _batch, _flat
from tests.conftest import assert_problem

URL = "/v1/calibration"
BRIER = ("brier", "brier_reliability", "brier_resolution", "brier_uncertainty")
WITHIN = ("brier_within_bin_variance", "brier_within_bin_covariance")


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Blocks of 7 positions: they straddle sequences, so the sums really are added up."""
    monkeypatch.setattr(blocks, "SEQUENCE_BLOCK_BYTES", 7 * 9 * 8)


def _compare(client, z, y, mask, options):
    body = {"logits": z.tolist(), "labels": y.tolist(), "mask": mask.tolist(), "ignore_index": -100}
    seq = client.post(URL, json=body | options)
    assert seq.status_code == 200, seq.text
    zf, yf = _flat(z, y, mask)
    flat = client.post(URL, json={"logits": zf.tolist(), "labels": yf.tolist()} | options).json()
    return seq.json(), flat


@pytest.mark.parametrize(
    "convention",
    [
        {"target": "classwise"},
        {"target": "marginal", "norm": "l2", "n_bins": 10},
        {"target": "classwise", "binning": "edges", "edges": [0, 0.05, 0.2, 0.5, 1], "closed": "left"},
        {"target": "classwise", "preset": "torchmetrics"},
        {"target": "classwise", "min_bin_count": 3, "bin_weighting": "uniform"},
    ],
)
def test_classwise_sequences_equal_the_flattened_rows(client, rng, convention):
    z, y, mask = _batch(rng)
    metrics = [
        "calibration_error",
        "ece",
        "mce",
        "rmsce",
        "ace_netcal",
        "debiased_l2",
        "brier",
        "reliability",
    ]
    seq, flat = _compare(client, z, y, mask, convention | {"metrics": [*metrics, "spiegelhalter", "nll"]})
    assert seq["convention"]["target"] == convention["target"]
    for name, value in flat["metrics"].items():
        if value is None:
            assert seq["metrics"].get(name) is None, name
        else:
            assert seq["metrics"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
    for name, values in flat["per_class"].items():
        np.testing.assert_allclose(seq["per_class"][name], values, rtol=1e-9, atol=1e-12)
    assert len(seq["reliability"]) == 9
    for got, expected in zip(seq["reliability"], flat["reliability"], strict=True):
        assert got["group"] == expected["group"] and got["count"] == expected["count"]
        np.testing.assert_allclose(got["lower"], expected["lower"])
        np.testing.assert_allclose(
            np.array(got["gap"], float), np.array(expected["gap"], float), rtol=1e-9, atol=1e-12
        )
    assert seq["convention"]["n_excluded_bins"] == flat["convention"]["n_excluded_bins"]


def test_brier_decomposition_of_the_top_label_target(client, rng):
    z, y, mask = _batch(rng)
    seq, flat = _compare(client, z, y, mask, {"metrics": ["brier"], "n_bins": 12})
    m = seq["metrics"]
    for name in (*BRIER, *WITHIN):
        assert m[name] == pytest.approx(flat["metrics"][name], rel=1e-9, abs=1e-12), name
    # Stephenson, Coelho & Jolliffe (2008): the binned decomposition adds up exactly
    total = m["brier_reliability"] - m["brier_resolution"] + m["brier_uncertainty"]
    total += m[WITHIN[0]] - 2 * m[WITHIN[1]]
    assert total == pytest.approx(m["brier"], rel=1e-9)


def test_equal_mass_bins_give_brier_without_decomposition_and_refuse_classwise(client, rng):
    z, y, mask = _batch(rng)
    seq, flat = _compare(client, z, y, mask, {"metrics": ["brier"], "binning": "quantile"})
    assert seq["metrics"]["brier"] == pytest.approx(flat["metrics"]["brier"], rel=1e-12)
    assert seq["metrics"]["brier_reliability"] is None
    body = {"logits": z.tolist(), "labels": y.tolist(), "ignore_index": -100, "target": "classwise"}
    body["binning"] = "quantile"
    assert_problem(client.post(URL, json=body), 422, "#/binning")


def test_classwise_bf16_logits_equal_float32_on_the_same_values(client, rng):
    z, y, _ = _batch(rng)
    bf16 = torch.from_numpy(z).to(torch.bfloat16)
    options = {"ignore_index": -100, "target": "classwise", "metrics": ["ece", "brier"]}
    answers = []
    for values, datatype in (
        (bf16.view(torch.int16).numpy().view(np.uint16), "BF16"),
        (bf16.float().numpy(), "FP32"),
    ):
        blob, headers = binary_request(
            [("logits", values, datatype), ("labels", y, "INT64")], parameters=options
        )
        answer = client.post(URL, content=blob, headers=headers)
        assert answer.status_code == 200, answer.text
        answers.append(answer.json())
    assert answers[0]["metrics"] == answers[1]["metrics"]
    assert answers[0]["per_class"] == answers[1]["per_class"]
