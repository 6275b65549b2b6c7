"""The routes of the app and the request-body fields each publishes, read from its OpenAPI document.

Fuzzing and malformed-input tests iterate over these, so a route added later is covered without edits.
"""

from functools import cache
from typing import Any

from service.app import create_app
from service.settings import Settings


@cache
def _document() -> dict[str, Any]:
    return create_app(Settings()).openapi()


#: A value for each path parameter, so a templated route is called at a real path.
PATH_PARAMETERS = {"{name}": "fuzzed"}


def concrete(template: str) -> str:
    """`template` with each path parameter replaced by its value in PATH_PARAMETERS."""
    for parameter, value in PATH_PARAMETERS.items():
        template = template.replace(parameter, value)
    return template


def post_routes() -> list[str]:
    """Paths of every POST operation under /v1 that takes a request body (parameters filled in)."""
    return sorted(
        concrete(p)
        for p, ops in _document()["paths"].items()
        if "post" in ops and p.startswith("/v1/") and "requestBody" in ops["post"]
    )


def get_routes() -> list[str]:
    """Paths of every GET operation the app publishes, but those naming a resource (``{name}``)."""
    return sorted(p for p, ops in _document()["paths"].items() if "get" in ops and "{" not in p)


def body_fields(path: str) -> dict[str, Any]:
    """Property schemas of the JSON request body of `path`."""
    document = _document()
    path = next(template for template in document["paths"] if concrete(template) == path)
    schema = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    if "$ref" not in schema and "oneOf" not in schema:  # a free-form body (a CloudEvent): no named fields
        return {}
    own = schema if "$ref" in schema else schema["oneOf"][0]  # the route's own model first
    if "$ref" not in own:  # the model with the route's own rules: {"allOf": [{"$ref": ...}, rules...]}
        own = next(part for part in own["allOf"] if "$ref" in part)
    ref = own["$ref"]
    properties: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]["properties"]
    return properties
