"""Issue 6: /metrics in Prometheus text format, JSON access logs, X-Request-ID."""

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from service.settings import Settings

BODY = {"logits": [[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]], "labels": [0, 1, 0]}


@pytest.fixture
def fresh() -> TestClient:
    return TestClient(create_app(Settings()), raise_server_exceptions=False)


def samples(client: TestClient) -> dict[tuple[str, frozenset], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(table, name, **labels) -> float:
    return table.get((name, frozenset(labels.items())), 0.0)


def test_metrics_count_requests_rows_bytes_and_errors(fresh):
    ok = json.dumps(BODY).encode()
    for _ in range(3):
        assert (
            fresh.post(
                "/v1/cross-entropy", content=ok, headers={"content-type": "application/json"}
            ).status_code
            == 200
        )
    assert fresh.post("/v1/cross-entropy", json={"logits": [[1, 0]], "labels": [5]}).status_code == 422
    assert (
        fresh.post(
            "/v1/cross-entropy", content=b"{", headers={"content-type": "application/json"}
        ).status_code
        == 400
    )
    assert (
        fresh.post("/v1/cross-entropy", content=b"{}", headers={"content-type": "text/csv"}).status_code
        == 415
    )
    assert fresh.get("/random/path/1").status_code == 404
    assert fresh.get("/v1/cross-entropy").status_code == 405
    table = samples(fresh)
    route = "/v1/cross-entropy"
    assert value(table, "xent_http_requests_total", route=route, method="POST", status="200") == 3
    assert value(table, "xent_http_requests_total", route=route, method="POST", status="422") == 1
    assert (
        value(table, "xent_http_request_duration_seconds_count", route=route, method="POST", status="200")
        == 3
    )
    assert (
        value(table, "xent_http_request_duration_seconds_sum", route=route, method="POST", status="200") > 0
    )
    assert value(table, "xent_scored_rows_total", route=route) == 9
    assert value(table, "xent_scored_bytes_total", route=route) == 3 * len(ok)
    assert value(table, "xent_errors_total", route=route, type="invalid_input") == 1
    assert value(table, "xent_errors_total", route=route, type="malformed_body") == 1
    assert value(table, "xent_errors_total", route=route, type="unsupported_media_type") == 1
    assert value(table, "xent_errors_total", route=route, type="method_not_allowed") == 1
    assert value(table, "xent_errors_total", route="unmatched", type="not_found") == 1
    assert value(table, "xent_http_requests_total", route="unmatched", method="GET", status="404") == 1


def test_metric_names_follow_prometheus_conventions(fresh):
    fresh.post("/v1/cross-entropy", json=BODY)
    names = {family.name for family in text_string_to_metric_families(fresh.get("/metrics").text)}
    assert {
        "xent_http_requests",
        "xent_http_request_duration_seconds",
        "xent_scored_rows",
        "xent_scored_bytes",
    } <= names
    text = fresh.get("/metrics").text
    assert "# TYPE xent_http_request_duration_seconds histogram" in text
    assert "# TYPE xent_scored_bytes_total counter" in text


def test_server_error_is_counted_as_internal(fresh):
    def boom() -> None:
        raise RuntimeError("bug")

    fresh.app.add_api_route("/v1/test/boom", boom, methods=["POST"])
    response = fresh.post("/v1/test/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "bug" not in response.text
    assert value(samples(fresh), "xent_errors_total", route="/v1/test/boom", type="internal") == 1


def test_request_id_is_echoed_or_generated(fresh):
    given = fresh.post("/v1/cross-entropy", json=BODY, headers={"X-Request-ID": "batch-42.eval:7"})
    assert given.headers["x-request-id"] == "batch-42.eval:7"
    made = fresh.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    other = fresh.get("/healthz")
    assert other.headers["x-request-id"] != made.headers["x-request-id"]
    problem = fresh.post("/v1/cross-entropy", content=b"[", headers={"X-Request-ID": "r1"})
    assert problem.headers["x-request-id"] == "r1"


@pytest.mark.parametrize("bad", ["x" * 129, "has space", "semi;colon", "é"])
def test_insane_request_id_is_replaced(fresh, bad):
    response = fresh.get("/healthz", headers={"X-Request-ID": bad.encode()})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


def test_access_log_is_one_json_line_without_payload(fresh, caplog):
    caplog.set_level(logging.INFO, logger="xent.access")
    secret_value = 0.123456789
    body = {"logits": [[secret_value, 0.0], [0.0, 1.0]], "labels": [0, 1]}
    content = json.dumps(body).encode()
    headers = {"X-Request-ID": "log-1", "content-type": "application/json"}
    fresh.post("/v1/cross-entropy?token=abc", content=content, headers=headers)
    records = [r for r in caplog.records if r.name == "xent.access"]
    assert len(records) == 1
    line = json.loads(records[0].getMessage())
    assert line["request_id"] == "log-1"
    assert line["route"] == "/v1/cross-entropy"
    assert line["path"] == "/v1/cross-entropy"
    assert line["status"] == 200
    assert line["rows"] == 2
    assert line["bytes_in"] == len(content)
    assert line["duration_ms"] > 0
    assert line["error"] is None
    assert str(secret_value) not in caplog.text and "token" not in caplog.text
    # made without a stack walk, the record still names where it comes from
    assert (records[0].levelno, records[0].funcName) == (logging.INFO, "log_exchange")
    assert records[0].pathname.endswith("access_log.py") and records[0].lineno > 0


def test_access_log_can_be_turned_off(caplog):
    caplog.set_level(logging.INFO, logger="xent.access")
    TestClient(create_app(Settings(access_log=False))).get("/healthz")
    assert not [r for r in caplog.records if r.name == "xent.access"]


def test_generated_request_ids_differ_in_a_forked_worker():
    import os

    from service.api.middleware.request_ids import new_id as _new_id

    parent = [_new_id(), _new_id()]
    assert parent[0][:16] == parent[1][:16] and parent[0] != parent[1]
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in parent)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        os.write(write, _new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read), os.close(write)
    assert len(child) == 32 and child[:16] != parent[0][:16]  # a fork draws its own prefix


def test_generated_request_ids_count_on_across_their_batches():
    from service.api.middleware.request_ids import _Ids

    ids = _Ids()
    made = [ids() for _ in range(3 * _Ids.BATCH + 5)]  # three batches and part of a fourth
    assert len(set(made)) == len(made) and {i[:16] for i in made} == {ids.prefix}
    assert [int(i[16:], 16) for i in made] == list(range(1, len(made) + 1))
    ids.reset()  # as a forked worker does: its own prefix, none of the parent's batch left
    after = ids()
    assert after[:16] != made[0][:16] and int(after[16:], 16) == 1


def test_unmatched_paths_are_labelled_without_building_the_openapi_document(fresh):
    assert fresh.get("/nowhere").status_code == 404
    assert fresh.get("/v1/cross-entropy").status_code == 405  # a known path: labelled by its template
    assert fresh.app.openapi_schema is None  # ~0.2 s of the first such request's event loop, before
    table = samples(fresh)
    assert value(table, "xent_errors_total", route="unmatched", type="not_found") == 1
    assert value(table, "xent_errors_total", route="/v1/cross-entropy", type="method_not_allowed") == 1
    documented = frozenset(fresh.app.openapi()["paths"])
    layer = fresh.app.middleware_stack
    while not hasattr(layer, "known_paths"):
        layer = layer.app
    assert layer.known_paths == documented


TWO_ROWS = {"logits": [[0.5, 0.0], [0.0, 1.0]], "labels": [0, 1]}


def test_serve_gives_the_access_log_its_line_handler():
    from service.api.serving import log_config

    config = log_config("info")
    handler = config["handlers"][config["loggers"]["xent.access"]["handlers"][0]]
    assert handler["class"] == "service.api.middleware.access_log.AccessLineHandler"


def _lines_written(stream, count: int) -> list[str]:
    """The first `count` lines of `stream` once written (at the end of the turn that finished them)."""
    deadline = time.monotonic() + 5
    while len(lines := stream.getvalue().splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return lines[:count]


def test_the_served_access_log_writes_its_lines_straight_to_stdout(monkeypatch):
    import io
    from datetime import UTC, datetime

    from service.api.middleware import access_log

    access = logging.getLogger("xent.access")
    saved = (access.handlers[:], access.level, access.propagate)
    stream = io.StringIO()
    try:
        handler = access_log.AccessLineHandler(stream)  # as `xent serve` sets it up (test above)
        access.handlers[:] = [handler]
        access.setLevel(logging.INFO)
        access.propagate = False
        made = []
        real = access_log._record
        monkeypatch.setattr(access_log, "_record", lambda text: made.append(text) or real(text))
        client = TestClient(create_app(Settings()))
        before = datetime.now(UTC).replace(microsecond=0)
        for i in range(3):
            client.post("/v1/cross-entropy", json=TWO_ROWS, headers={"X-Request-ID": f"direct-{i}"})
        client.post("/v1/cross-entropy", json={"logits": [[0.0, 1.0]]}, headers={"X-Request-ID": "bad"})
        after = datetime.now(UTC)
        lines = [json.loads(line) for line in _lines_written(stream, 4)]
        assert not made
        assert [(x["request_id"], x["status"], x["rows"]) for x in lines] == [
            ("direct-0", 200, 2),
            ("direct-1", 200, 2),
            ("direct-2", 200, 2),
            ("bad", 422, 1),
        ]
        assert lines[3]["error"] == "invalid_input"
        for line in lines:
            ts = datetime.strptime(line["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            assert before <= ts <= after
        # lines that propagate to the root's handlers too: records, through `logging`
        access.propagate = True
        client.post("/v1/cross-entropy", json=TWO_ROWS, headers={"X-Request-ID": "propagated"})
        assert [json.loads(text)["request_id"] for text in made] == ["propagated"]
        access.propagate = False
        # a handler of the user's beside it: every line goes through `logging` as a record
        monkeypatch.undo()
        seen = []
        extra = logging.Handler()
        extra.emit = lambda record: seen.append(record)
        access.addHandler(extra)
        client.post("/v1/cross-entropy", json=TWO_ROWS, headers={"X-Request-ID": "both"})
        assert [json.loads(r.getMessage())["request_id"] for r in seen] == ["both"]
        assert json.loads(_lines_written(stream, 6)[-1])["request_id"] == "both"
        assert seen[0].funcName == "log_exchange" and handler.format(seen[0]) == seen[0].getMessage()
    finally:
        access.handlers[:], access.level, access.propagate = saved


def test_a_turns_access_lines_are_written_together_at_its_end():
    import asyncio

    from service.api.middleware.access_log import AccessLineHandler

    class Counting:
        def __init__(self) -> None:
            self.writes: list[str] = []

        def write(self, text: str) -> None:
            self.writes.append(text)

        def flush(self) -> None: ...

    async def turns(handler: AccessLineHandler, stream: Counting) -> None:
        for n in range(3):
            handler.write_line(f'{{"n": {n}}}')
        assert stream.writes == []  # held until the turn ends
        await asyncio.sleep(0)
        handler.write_line('{"n": 3}')
        handler.close()  # closing writes what is held

    stream = Counting()
    handler = AccessLineHandler(stream)
    asyncio.run(turns(handler, stream))
    assert stream.writes == ['{"n": 0}\n{"n": 1}\n{"n": 2}\n', '{"n": 3}\n']
    handler.write_line('{"n": 4}')  # no event loop in this thread: written at once
    assert stream.writes[-1] == '{"n": 4}\n'
