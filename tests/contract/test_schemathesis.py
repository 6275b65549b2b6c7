"""Issue 6 and 21: schemathesis generates requests from the committed openapi/openapi.json for every
operation and runs every check (``--checks all``) on each response: no 5xx, status and content type
documented, body valid against its schema, schema-valid requests accepted and invalid ones refused.

No check is excluded and no refusal excused: a schema-valid request the server refuses fails the
test. The rules the document cannot state (lengths that agree across fields, rows summing to 1,
labels below K, a binary body's framing, late labels among the monitor's class names) are taught to
the generator instead: the hooks (:mod:`tests.contract.hooks`) repair positive cases to keep them, as
a client that read the docs would. The draws, and the server's state they meet, are the same in
every run of a commit: derandomised, with the constants Hypothesis mixes in and the monitors' clock
fixed (tests/contract/conftest.py), ``PYTHONHASHSEED=0`` (``make test``), monitors in a directory of
their own and no compaction during the test.

A survey, for finding every refusal of a run at once rather than the first: with
``XENT_CONTRACT_REFUSALS=<file>`` set, refusals of schema-valid requests and 5xx answers are
appended to the file (JSON lines: the operation, the answer, the JSON request a binary body was
encoded from) instead of failing. CI never sets it.
"""

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

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
from tests.contract import hooks

ROOT = Path(__file__).resolve().parents[2]
#: Cases run per operation (read by the terminal summary in tests/conftest.py).
CASES: Counter[str] = Counter()
#: The survey's file (see the module docstring), if set.
LOG = os.environ.get("XENT_CONTRACT_REFUSALS") or None
#: Refusals and 5xx answers the survey logged, per operation (read by the terminal summary).
SURVEYED: Counter[str] = Counter()

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
# The monitors live in a directory of their own, so the server's state (and so every answer) is the
# draws' alone, not what tests run earlier in the session left there. A compute deadline below
# schemathesis' 10 s read timeout, so a costly request is answered (with its documented 503, which
# fails the test as a 5xx) rather than left hanging; repaired tensors hold at most 6 per dimension,
# so no case comes near it.
DATA_DIR = Path(tempfile.mkdtemp(prefix="xent-contract-"))
schema.app = create_app(
    # (compaction merges old buckets at the moments its thread runs: not during the test, so the state
    # the answers follow from is the requests' alone; tests/contract/conftest.py fixes the clock)
    Settings(api_keys=SecretStr(KEY), request_timeout_s=8, data_dir=DATA_DIR, compaction_interval_s=86_400)
)


def _logged(case: Any, response: Any) -> None:
    try:
        problem = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        problem = None
    SURVEYED[f"{case.method} {case.path}"] += 1
    # the request: a JSON body as sent, a binary one as the JSON request it was encoded from
    body = case.body if isinstance(case.body, dict | list) else None
    body = hooks.ENCODED_FROM.get(getattr(case.body, "data", b""), body)
    line = {"op": f"{case.method} {case.path}", "media_type": case.media_type, "status": response.status_code}
    line = {**line, "problem": problem, "body": body}
    with open(str(LOG), "a") as log:  # (json: orjson refuses integers past 64 bits, which bodies hold)
        log.write(json.dumps(line, default=repr) + "\n")


def _surveyed(check: Any, failure: type[Exception]) -> Any:
    def survey(ctx: Any, response: Any, case: Any) -> Any:
        try:
            return check(ctx, response, case)
        except failure:
            _logged(case, response)
            return None

    survey.__name__ = check.__name__
    return survey


#: Every check, as `--checks all`; in a survey, the two a refusal or a 5xx fails log it instead.
CHECKS: dict[str, Any] = {}
if LOG is not None:
    CHECKS = {
        "excluded_checks": [positive_data_acceptance, not_a_server_error],
        "additional_checks": [
            _surveyed(positive_data_acceptance, RejectedPositiveData),
            _surveyed(not_a_server_error, ServerError),
        ],
    }


@schema.parametrize()
# derandomize: the same cases every run, so CI's verdict is the code's, not the draw's (vary the seed
# locally with `--hypothesis-seed` after removing it, or run `st run` as docs/robustness.md shows).
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_openapi_document(case):
    CASES[f"{case.method} {case.path}"] += 1
    case.call_and_validate(**CHECKS)
