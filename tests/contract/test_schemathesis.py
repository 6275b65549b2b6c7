"""Issue 6: schemathesis generates requests from the committed openapi/openapi.json for every operation
and checks each response: no 5xx, status and content type documented, body valid against its schema."""

from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from service.app import create_app
from service.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: Cases run per operation (read by the terminal summary in tests/conftest.py).
CASES: Counter[str] = Counter()

#: A schema-valid body may still break a rule JSON Schema cannot state (exactly one of `logits`/`probs`,
#: rows summing to 1, labels below K): a 422 naming the field. Binary-extension and npz bodies are opaque
#: strings in the schema, so bytes that do not frame tensors are a 400, and a schema-valid shape may declare
#: more elements than the limit: a 413. An invalid body may likewise be refused for its size first. A
#: monitor route names a monitor that may not exist (404) or would pass a cap on monitors (409).
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "404", "409", "413", "422"]},
            "negative_data_rejection": {"expected-statuses": ["400", "413", "415", "422"]},
        }
    }
)
# npz bodies are opaque bytes in the schema ({"type": "string", "format": "binary"}): send them as is.
schemathesis.serializer.alias("application/x-npz", "application/octet-stream")

schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json", config=CONFIG)
schema.app = create_app(Settings())


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate()
