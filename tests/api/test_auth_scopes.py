"""Issue 17: API-key scopes (read, write, admin), keys limited to monitors, keys given hashed."""

import hashlib

import pytest
from pydantic import SecretStr

from service.api.middleware import auth
from service.api.middleware.auth import APIKeys, parse_entry, required_scope

from ..conftest import assert_problem
from .monitoring import monitor_client

FULL = "full-key-0123"  # the keys of before scopes: every scope on every monitor
READ = "dash-key"
WRITE = "producer-key"
ADMIN = "operator-key"
LIMITED = "team-a-key"
HASHED = "stored-hashed-key"
ENTRIES = [
    FULL,
    f"{READ}:read",
    f"{WRITE}:write",
    f"{ADMIN}:admin",
    f"{LIMITED}:read+write:a+a.v2",
    f"sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}:read",
    "colon:key",  # not a scope: the whole entry is the key
    "ends:read:read+write+admin",  # the key `ends:read`, full access written out
]
LOGITS = {"logits": [[0.0, 1.0]], "labels": [1]}
# (method, path, body, the scope it needs: None for any valid key)
ROUTES = [
    ("GET", "/v1/monitors", None, "read"),
    ("GET", "/v1/monitors/a", None, "read"),
    ("GET", "/v1/monitors/a/metrics", None, "read"),
    ("GET", "/v1/monitors/a/drift", None, "read"),
    ("POST", "/v1/monitors/a/observations", LOGITS, "write"),
    ("POST", "/v1/monitors/a/labels", {"ids": ["x"], "labels": [0]}, "write"),
    ("POST", "/v1/monitors/a/temperature", {}, "write"),
    ("POST", "/v1/monitors/a/events", {"events": []}, "write"),
    ("PUT", "/v1/monitors/a", {"n_classes": 2}, "admin"),
    ("DELETE", "/v1/monitors/never-made", None, "admin"),
    ("POST", "/v1/cross-entropy", LOGITS, None),
]
SCOPES_OF = {FULL: {"read", "write", "admin"}, READ: {"read"}, WRITE: {"write"}, ADMIN: {"admin"}}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    keys = SecretStr(",".join(ENTRIES))
    with monitor_client(
        tmp_path_factory.mktemp("scopes"), api_keys=keys, protect_metrics=True
    ) as test_client:
        for name in ("a", "b"):
            created = test_client.put(
                f"/v1/monitors/{name}", json={"n_classes": 2}, headers={"X-API-Key": FULL}
            )
            assert created.status_code in (200, 201), created.text
        yield test_client


def call(client, key, method, path, body=None):
    return client.request(method, path, json=body, headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("key", list(SCOPES_OF))
@pytest.mark.parametrize(("method", "path", "body", "needed"), ROUTES)
def test_each_scope_against_each_route_kind(client, key, method, path, body, needed):
    response = call(client, key, method, path, body)
    if needed is None or needed in SCOPES_OF[key]:
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500
    else:
        assert_problem(response, 403, match=f"lacks the `{needed}` scope")


def test_admitted_requests_reach_their_routes(client):
    assert call(client, READ, "GET", "/v1/monitors/a").json()["name"] == "a"
    assert call(client, WRITE, "POST", "/v1/monitors/b/observations", LOGITS).status_code == 200
    assert call(client, ADMIN, "PUT", "/v1/monitors/c", {"n_classes": 3}).status_code == 201
    assert call(client, ADMIN, "DELETE", "/v1/monitors/c").status_code == 204
    assert call(client, READ, "POST", "/v1/cross-entropy", LOGITS).status_code == 200
    assert call(client, WRITE, "POST", "/v1/cross-entropy", LOGITS).status_code == 200


def test_missing_or_wrong_key_stays_401(client):
    assert_problem(client.get("/v1/monitors"), 401, match="an API key is required")
    assert_problem(call(client, "nope", "GET", "/v1/monitors"), 401, match="not valid")
    assert_problem(call(client, "nope", "DELETE", "/v1/monitors/a"), 401, match="not valid")


def test_metrics_behind_protect_metrics_need_read(client):
    assert call(client, READ, "GET", "/metrics").status_code == 200
    assert_problem(call(client, WRITE, "GET", "/metrics"), 403, match="`read`")
    text = call(client, FULL, "GET", "/metrics").text
    assert 'type="forbidden"' in text


def test_a_key_limited_to_monitors_uses_only_those(client):
    assert call(client, LIMITED, "GET", "/v1/monitors/a").status_code == 200
    assert call(client, LIMITED, "POST", "/v1/monitors/a/observations", LOGITS).status_code == 200
    for method, path, body in [
        ("GET", "/v1/monitors/b", None),
        ("GET", "/v1/monitors/b/metrics", None),
        ("POST", "/v1/monitors/b/observations", LOGITS),
    ]:
        assert_problem(call(client, LIMITED, method, path, body), 403, match="may not use monitor `b`")
    assert_problem(call(client, LIMITED, "PUT", "/v1/monitors/a", {"n_classes": 2}), 403, match="`admin`")
    assert call(client, LIMITED, "POST", "/v1/cross-entropy", LOGITS).status_code == 200


def test_a_limited_key_lists_only_its_monitors(client):
    every = [m["name"] for m in call(client, FULL, "GET", "/v1/monitors").json()["monitors"]]
    assert {"a", "b"} <= set(every)
    limited = [m["name"] for m in call(client, LIMITED, "GET", "/v1/monitors").json()["monitors"]]
    assert limited == [name for name in every if name in {"a", "a.v2"}] == ["a"]


def test_a_key_stored_as_its_digest(client):
    assert call(client, HASHED, "GET", "/v1/monitors/a").status_code == 200
    assert_problem(call(client, HASHED, "DELETE", "/v1/monitors/a"), 403, match="`admin`")
    digest_text = f"sha256:{hashlib.sha256(HASHED.encode()).hexdigest()}"
    assert_problem(call(client, digest_text, "GET", "/v1/monitors/a"), 401, match="not valid")


def test_colons_that_are_not_scopes_belong_to_the_key(client):
    assert call(client, "colon:key", "PUT", "/v1/monitors/a", {"n_classes": 2}).status_code == 200
    assert_problem(call(client, "colon", "GET", "/v1/monitors"), 401)
    assert call(client, "ends:read", "PUT", "/v1/monitors/a", {"n_classes": 2}).status_code == 200
    assert_problem(call(client, "ends", "GET", "/v1/monitors"), 401)


@pytest.mark.parametrize(
    ("entry", "key", "scopes", "monitors"),
    [
        ("plain", "plain", {"read", "write", "admin"}, None),
        ("k:read", "k", {"read"}, None),
        ("k:admin+read", "k", {"read", "admin"}, None),
        ("k:write:m1+m.2", "k", {"write"}, {"m1", "m.2"}),
        ("a:b:c", "a:b:c", {"read", "write", "admin"}, None),
        ("a:b:read", "a:b", {"read"}, None),
        ("x:read:y", "x", {"read"}, {"y"}),
        ("x:reader", "x:reader", {"read", "write", "admin"}, None),
        (":read", ":read", {"read", "write", "admin"}, None),
        ("k:read:", "k:read:", {"read", "write", "admin"}, None),
    ],
)
def test_entry_syntax(entry, key, scopes, monitors):
    grant = parse_entry(entry.encode())
    assert grant.digest == hashlib.sha256(key.encode()).digest()
    assert grant.scopes == scopes
    assert grant.monitors == (None if monitors is None else frozenset(monitors))


def test_a_hashed_entry_is_the_digest_itself():
    hexdigest = hashlib.sha256(b"secret").hexdigest()
    assert parse_entry(f"sha256:{hexdigest.upper()}:write".encode()).digest == bytes.fromhex(hexdigest)
    short = f"sha256:{hexdigest[:-1]}"  # not 64 hex digits: an ordinary key
    assert parse_entry(short.encode()).digest == hashlib.sha256(short.encode()).digest()


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("GET", "/v1/monitors", ("read", None)),
        ("HEAD", "/v1/monitors/m", ("read", "m")),
        ("GET", "/v1/monitors/m/drift", ("read", "m")),
        ("POST", "/v1/monitors/m/events", ("write", "m")),
        ("PUT", "/v1/monitors/m", ("admin", "m")),
        ("DELETE", "/v1/monitors/m", ("admin", "m")),
        ("GET", "/metrics", ("read", None)),
        ("POST", "/v1/cross-entropy", (None, None)),
        ("POST", "/v2/models/x/infer", (None, None)),
        ("GET", "/v1/monitorsx", (None, None)),
    ],
)
def test_route_to_scope_mapping(method, path, expected):
    assert required_scope(method, path) == expected


def test_every_digest_is_compared_whatever_the_key(monkeypatch):
    keys = APIKeys([entry.encode() for entry in ENTRIES], protect_metrics=False)
    calls = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(b)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    for presented in (FULL, "ends:read", "wrong"):
        calls.clear()
        keys.match(presented.encode())
        assert calls == keys.digests, presented
    assert keys.match(FULL.encode()) == parse_entry(FULL.encode())
    assert keys.match(b"wrong") is None
