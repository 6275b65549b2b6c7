import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

from service.app import create_app

ROOT = Path(__file__).resolve().parents[1]
#: Routes whose body is nested JSON (server responses), not arrays: no binary or npz form.
JSON_ONLY = {"/v1/logprobs"}


def test_committed_openapi_matches_app():
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert committed == create_app().openapi(), "openapi/openapi.json is stale: run `make openapi`"


def test_the_committed_document_is_valid_openapi_3_1_with_resolvable_refs():
    from openapi_spec_validator import OpenAPIV31SpecValidator

    document = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    errors = [error.message for error in OpenAPIV31SpecValidator(document).iter_errors()]
    assert not errors, errors[:3]
    # Every $ref, including those into a component's properties, points at a schema of the document.
    text = json.dumps(document)
    for ref in set(re.findall(r'"\$ref": "#/([^"]+)"', text)):
        target = document
        for part in ref.split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        assert isinstance(target, dict), ref


def test_narrowed_inference_requests_refer_to_the_option_schemas():
    """An OIP request's options are typed by $ref to the JSON body's fields, not copied per endpoint."""
    document = create_app().openapi()
    schemas = document["components"]["schemas"]
    for path in ("/v1/cross-entropy", "/v2/models/cross-entropy/infer"):
        body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        narrowed = next(s for s in body.get("oneOf", [body]) if "allOf" in s)["allOf"][1]
        inputs = narrowed["properties"]["inputs"]
        assert inputs == {"$ref": "#/components/schemas/CrossEntropyInferenceInputs"}
        parameters = narrowed["properties"]["parameters"]
        options = next(s for s in parameters.get("anyOf", [parameters]) if "properties" in s)["properties"]
        assert options["eps"] == {"$ref": "#/components/schemas/CrossEntropyBody/properties/eps"}
        assert "eps" in schemas["CrossEntropyBody"]["properties"]


def test_every_operation_documents_its_body_and_problems():
    spec = create_app().openapi()
    schemas = spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            assert operation.get("description") or operation.get("summary"), (method, path)
            if method == "post" and path.startswith("/v2/"):  # OIP: inference requests, JSON or binary
                content = operation["requestBody"]["content"]
                assert {"application/json", "application/octet-stream"} <= set(content)
                # narrowed to the model's roles and options (service/api/openapi/inference.py)
                assert content["application/json"]["schema"]["allOf"][0]["title"] == "InferenceRequest"
                assert {"400", "422"} <= set(operation["responses"])
            elif method == "post" and (
                not path.startswith("/v1/monitors/") or path.endswith("/observations")
            ):
                content = operation["requestBody"]["content"]
                json_schema = content["application/json"]["schema"]
                if path not in JSON_ONLY:  # array routes also take binary tensors and npz
                    assert {"application/octet-stream", "application/x-npz"} <= set(content)
                for ref in json_schema.get("oneOf", [json_schema]):
                    ref = ref["allOf"][0] if "allOf" in ref else ref
                    # a narrowed inference request spells InferenceRequest out (its title)
                    assert ref.get("title", ref.get("$ref", "").split("/")[-1]) in schemas
                assert {"400", "422"} <= set(operation["responses"])


def test_request_fields_are_described():
    schemas = create_app().openapi()["components"]["schemas"]
    for name in ("CrossEntropyBody", "DivergenceBody", "LogprobsBody"):
        for field, schema in schemas[name]["properties"].items():
            assert schema.get("description"), f"{name}.{field} has no description"


def test_core_does_not_import_the_web_stack():
    code = "import sys, service.core; print('fastapi' in sys.modules or 'pydantic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_document_is_built_at_start_up_not_by_the_first_request():
    from fastapi.testclient import TestClient

    app = create_app()
    assert app.openapi_schema is None
    with TestClient(app) as client:  # runs the lifespan
        assert app.openapi_schema is not None  # a first /docs would otherwise hold the event loop ~0.2 s
        built = app.openapi_schema
        assert client.get("/openapi.json").json() == built


def test_openapi_json_is_printed_once_and_lists_a_root_path_as_fastapi_does(monkeypatch):
    from fastapi.testclient import TestClient

    import service.app as app_module

    printed = []
    dumps = app_module.orjson.dumps
    monkeypatch.setattr(app_module.orjson, "dumps", lambda *a, **k: printed.append(a[0]) or dumps(*a, **k))
    app = create_app()
    with TestClient(app) as client:
        first, second = client.get("/openapi.json"), client.get("/openapi.json")
    assert first.headers["content-type"] == "application/json"
    assert first.content == second.content
    assert sum(value is app.openapi() for value in printed) == 1  # printed by the first request only
    assert json.loads(first.content) == app.openapi()
    with TestClient(app, root_path="/scoring") as client:
        document = client.get("/openapi.json").json()
    assert document["servers"] == [{"url": "/scoring"}]
    assert document["paths"] == app.openapi()["paths"] and "servers" not in app.openapi()


def test_every_request_example_in_the_document_is_accepted(client):
    """Issue 21: each operation's request example, posted as the document gives it, gets a 2xx."""
    spec = create_app().openapi()
    paths = spec["paths"]
    # Monitor routes act on a monitor: the document's own PUT example creates it first.
    create = paths["/v1/monitors/{name}"]["put"]["requestBody"]["content"]["application/json"]["example"]
    name = f"example-{uuid.uuid4().hex[:8]}"  # the session's data directory may hold other monitors
    assert client.put(f"/v1/monitors/{name}", json=create).status_code == 201
    posted = 0
    for path, item in paths.items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if method not in ("post", "put") or "application/json" not in content:
                continue
            if path.endswith("/events"):  # CloudEvents: its headers make the request (docs/monitors.md)
                continue
            example = content["application/json"]["example"]
            response = client.request(method.upper(), path.replace("{name}", name), json=example)
            assert 200 <= response.status_code < 300, (path, response.text)
            posted += 1
    assert posted == 18  # 8 scoring endpoints and 4 monitor routes under /v1, 6 models under /v2


def test_the_document_declares_the_api_key_schemes_the_middleware_reads():
    spec = create_app().openapi()
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearer"] == {**schemes["bearer"], "type": "http", "scheme": "bearer"}
    assert (schemes["apiKey"]["in"], schemes["apiKey"]["name"]) == ("header", "X-API-Key")
    for path, item in spec["paths"].items():
        guarded = path.startswith("/v1/") or (path.startswith("/v2") and not path.startswith("/v2/health"))
        for operation in item.values():
            assert ("security" in operation) == guarded, path


def test_the_exactly_one_of_rules_are_in_the_schemas():
    import jsonschema

    spec = create_app().openapi()
    schemas = spec["components"]["schemas"]

    def valid(name, body):
        resolver = {"components": {"schemas": schemas}}
        schema = {**schemas[name], "components": resolver["components"]}
        return jsonschema.Draft202012Validator(schema).is_valid(body)

    logits, labels = [[1.0, 0.0]], [0]
    assert valid("CrossEntropyBody", {"logits": logits, "labels": labels})
    assert not valid("CrossEntropyBody", {})
    assert not valid("CrossEntropyBody", {"logits": logits, "probs": logits, "labels": labels})
    assert valid("CrossEntropyBody", {"logits": logits, "probs": None, "labels": labels})  # null: not sent
    assert not valid("ApplyBody", {"logits": logits})
    assert not valid("ApplyBody", {"logits": logits, "temperature": 1, "labels": labels, "targets": logits})
    assert valid("ApplyBody", {"logits": logits, "temperature": 1, "labels": labels})


def test_binary_bodies_declare_their_header():
    spec = create_app().openapi()
    for path, item in spec["paths"].items():
        post = item.get("post")
        if post is not None and "application/octet-stream" in post.get("requestBody", {}).get("content", {}):
            names = [p["name"] for p in post.get("parameters", []) if p["in"] == "header"]
            assert "Inference-Header-Content-Length" in names, path
            assert set(names) <= {"Inference-Header-Content-Length", "Idempotency-Key"}, path
