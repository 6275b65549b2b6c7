"""Issue 6: schemathesis generates requests from the committed openapi/openapi.json for every operation
and checks each response: no 5xx, status and content type documented, body valid against its schema."""

from collections import Counter
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
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
#: The document declares the API-key schemes, so the app runs with a key, and schemathesis sends it (and
#: checks that requests with a wrong or no key are refused: `ignored_auth`).
KEY = "schemathesis-key"
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearer": {"bearer": KEY}, "apiKey": {"api_key": KEY}}},
        # HTTP lets a client send headers a server does not know; Xent ignores them, as every server does.
        "generation": {"allow-extra-parameters": False},
        "checks": {
            # 503 is the documented answer of the compute deadline (a bootstrap of 9,999 resamples
            # takes over 30 s on this machine): a refusal by design, not a crash.
            "not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "503"]},
            "positive_data_acceptance": {
                "expected-statuses": ["2xx", "400", "404", "409", "413", "422", "503"]
            },
            # A monitor route answers 404 for an unknown monitor before it reads the body.
            "negative_data_rejection": {"expected-statuses": ["400", "401", "404", "413", "415", "422"]},
        },
    }
)
# npz bodies are opaque bytes in the schema ({"type": "string", "format": "binary"}): send them as is.
schemathesis.serializer.alias("application/x-npz", "application/octet-stream")

schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json", config=CONFIG)
# A compute deadline below schemathesis' 10 s read timeout: a schema-valid but costly request (a bootstrap
# of 10,000 resamples) is answered with its documented 503, not left hanging.
schema.app = create_app(Settings(api_keys=SecretStr(KEY), request_timeout_s=4))


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(case):
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate()
