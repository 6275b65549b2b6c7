"""A monitor refuses rows whose loss would be +inf (logits spanning past their dtype's range), before
writing anything: its sums must stay finite to merge, store and export. Before, such a batch was
acknowledged and every later query of the monitor failed ("`stats` holds a non-finite sum")."""

import numpy as np
import pytest
import scipy.special

from .monitoring import monitor_client

SPANS = [("FP64", 1.7e308), ("FP32", 3e38), ("BF16", 2.0**127)]
OTHER = [[0.0, 1.0, 2.0], [2.0, 0.0, 1.0]]


def _logits(datatype: str, big: float) -> dict:
    rows = [[big, -big, 0.0], *OTHER]
    return {"datatype": datatype, "shape": [3, 3], "data": [v for row in rows for v in row]}


def _expected_ce(rows: list[list[float]], labels: list[int]) -> float:
    return float(-scipy.special.log_softmax(np.array(rows), axis=1)[np.arange(len(labels)), labels].mean())


@pytest.mark.parametrize("datatype, big", SPANS)
def test_a_label_past_the_range_is_refused_and_nothing_is_written(tmp_path, datatype, big):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        refused = client.post(
            "/v1/monitors/m/observations", json={"logits": _logits(datatype, big), "labels": [1, 2, 0]}
        )
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        error = refused.json()["errors"][0]
        assert error["pointer"] == "#/logits/data/0" and "+inf" in error["detail"]  # (row 0 of the tensor)
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 0
        # the label at the top: a loss of 0, accepted; the monitor answers its series
        accepted = client.post(
            "/v1/monitors/m/observations", json={"logits": _logits(datatype, big), "labels": [0, 2, 0]}
        )
        assert accepted.status_code == 200, accepted.text
        totals = client.get("/v1/monitors/m").json()["totals"]
        assert totals["n"] == 3
        rel = 1e-12 if datatype == "FP64" else 1e-6
        # row 0's loss is 0 (its label at the top), the others' scipy's: (0 + l1 + l2) / 3
        assert totals["cross_entropy"] == pytest.approx(_expected_ce(OTHER, [2, 0]) * 2 / 3, rel=rel)
        series = client.get("/v1/monitors/m/metrics", params={"window": "1h", "step": "1h"})
        assert series.status_code == 200, series.text


@pytest.mark.parametrize("datatype, big", SPANS)
def test_a_row_past_the_range_waiting_for_its_label_is_refused(tmp_path, datatype, big):
    with monitor_client(tmp_path) as client:
        client.put("/v1/monitors/m", json={"n_classes": 3}).raise_for_status()
        body = {"logits": _logits(datatype, big), "labels": [2, -1, -1], "ids": ["a", None, "c"]}
        body["logits"]["data"][:6] = [*OTHER[0], big, -big, 0.0]  # the spanning row is row 1, no id
        accepted = client.post("/v1/monitors/m/observations", json=body)
        assert accepted.status_code == 200, accepted.text  # row 1 has no id: it waits for nothing
        body["ids"] = ["a2", "b2", "c2"]
        refused = client.post("/v1/monitors/m/observations", json=body)
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["pointer"] == "#/logits/data/3"  # row 1: its first value
        assert client.get("/v1/monitors/m").json()["totals"]["n"] == 3  # the first batch only
