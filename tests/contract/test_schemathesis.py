"""Issue 6 and 21: schemathesis generates requests from the committed openapi/openapi.json for every
operation and runs every check (``--checks all``) on each response: no 5xx, status and content type
documented, body valid against its schema, schema-valid requests accepted and invalid ones refused.

Where a check's verdict is overridden, it is per reason, for the rules the document cannot state
(:mod:`tests.contract.unstatable`): a refusal of a schema-valid request for any other reason fails.
"""

import json
import os
from collections import Counter
from pathlib import Path

import orjson
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import ServerError
from schemathesis.openapi.checks import RejectedPositiveData
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.settings import Settings
from tests.contract import hooks  # noqa: F401  (registers the repairs of positive cases)
from tests.contract.unstatable import excused

ROOT = Path(__file__).resolve().parents[2]
#: Cases run per operation (read by the terminal summary in tests/conftest.py).
CASES: Counter[str] = Counter()
#: Refusals of schema-valid requests excused, per reason (read by the terminal summary).
EXCUSED: Counter[str] = Counter()
#: A file to append each refusal of a schema-valid request to, excused or not (JSON lines), if set.
LOG = os.environ.get("XENT_CONTRACT_REFUSALS")

# The document declares the API-key schemes, so the app runs with a key, and schemathesis sends it (and
# checks that requests with a wrong or no key are refused: `ignored_auth`).
KEY = "schemathesis-key"
CONFIG = SchemathesisConfig.from_dict(
    {
        "auth": {"openapi": {"bearer": {"bearer": KEY}, "apiKey": {"api_key": KEY}}},
        # A recipient MUST ignore header fields it does not recognise (RFC 9110, section 5.1): Xent
        # does, as every server does, so a request with an invented header is not "schema-violating".
        "generation": {"allow-extra-parameters": False},
        # An invalid body may be refused for its size before its content is read: a 413 is a refusal.
        "checks": {
            "negative_data_rejection": {
                "expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422"]
            }
        },
    }
)
# npz bodies are opaque bytes in the schema ({"type": "string", "format": "binary"}): send them as is.
schemathesis.serializer.alias("application/x-npz", "application/octet-stream")

schema = schemathesis.openapi.from_path(ROOT / "openapi" / "openapi.json", config=CONFIG)
# A compute deadline below schemathesis' 10 s read timeout: a schema-valid but costly request (a bootstrap
# of 10,000 resamples) is answered with its documented 503, not left hanging.
schema.app = create_app(Settings(api_keys=SecretStr(KEY), request_timeout_s=4))


def _excuse(case, response) -> bool:
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        problem = None
    reason = excused(case.media_type, response.status_code, problem)
    if reason is not None:
        EXCUSED[reason] += 1
    if LOG is not None:
        line = {"op": f"{case.method} {case.path}", "media_type": case.media_type, "reason": reason}
        # the request: a JSON body as sent, a binary one as the JSON request it was encoded from
        body = case.body if isinstance(case.body, dict | list) else None
        body = hooks.ENCODED_FROM.get(getattr(case.body, "data", b""), body)
        line = {**line, "status": response.status_code, "problem": problem, "body": body}
        with open(LOG, "a") as log:  # (json: orjson refuses integers past 64 bits, which bodies hold)
            log.write(json.dumps(line, default=repr) + "\n")
    return reason is not None


def accepts_schema_valid_requests(ctx, response, case):
    """``positive_data_acceptance``, but for a rule the document cannot state (per reason)."""
    try:
        return positive_data_acceptance(ctx, response, case)
    except RejectedPositiveData:
        if _excuse(case, response):
            return None
        raise


def no_server_error(ctx, response, case):
    """``not_a_server_error``, but for the compute deadline's documented 503."""
    try:
        return not_a_server_error(ctx, response, case)
    except ServerError:
        if response.status_code == 503 and _excuse(case, response):
            return None
        raise


@schema.parametrize()
# derandomize: the same cases every run, so CI's verdict is the code's, not the draw's (vary the seed
# locally with `--hypothesis-seed` after removing it, or run `st run` as docs/robustness.md shows).
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_openapi_document(case):
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate(
        excluded_checks=[positive_data_acceptance, not_a_server_error],
        additional_checks=[accepts_schema_valid_requests, no_server_error],
    )
