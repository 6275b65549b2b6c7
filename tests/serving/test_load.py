"""Issue 6, the short CI version of ``python -m benchmarks.load``: 2 workers, 64 clients, mixed sizes."""

from benchmarks.load import run_load


def test_short_load_has_no_server_errors_and_no_dropped_connections():
    report = run_load(workers=2, clients=64, duration=8.0, max_requests=3_000)
    assert report.requests > 0
    assert report.server_errors == 0, report
    assert report.dropped == 0, report
    assert set(report.statuses) == {"200"}, report
    assert set(report.by_kind) == {"small-ce", "small-div", "medium-ce", "large-ce"} or report.requests < 100
