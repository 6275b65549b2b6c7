"""Each OIP model's metadata lists as inputs exactly the arrays its /v1 body takes."""

import pytest
from fastapi.testclient import TestClient

from service.api.schemas.calibration import CalibrationBody
from service.api.schemas.cross_entropy import CrossEntropyBody
from service.api.schemas.divergence import DivergenceBody
from service.api.schemas.recalibration import ApplyBody, RecalibrateBody, TemperatureBody
from service.app import create_app
from service.settings import Settings

BODIES = {
    "cross-entropy": CrossEntropyBody,
    "divergence": DivergenceBody,
    "calibration": CalibrationBody,
    "temperature": TemperatureBody,
    "recalibrate": RecalibrateBody,
    "apply": ApplyBody,
}


@pytest.mark.parametrize("name", sorted(BODIES))
def test_metadata_inputs_are_fields_of_the_v1_body(name):
    with TestClient(create_app(Settings())) as client:
        metadata = client.get(f"/v2/models/{name}").json()
    inputs = {tensor["name"] for tensor in metadata["inputs"]}
    assert inputs <= set(BODIES[name].model_fields), inputs - set(BODIES[name].model_fields)
    assert inputs


def test_a_temperature_takes_no_raw_scores():
    with TestClient(create_app(Settings())) as client:
        names = [tensor["name"] for tensor in client.get("/v2/models/temperature").json()["inputs"]]
        recalibrate = [tensor["name"] for tensor in client.get("/v2/models/recalibrate").json()["inputs"]]
    assert "scores" not in names and "scores" in recalibrate
