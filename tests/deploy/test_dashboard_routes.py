"""Issue 21: the dashboard's request panels count the scoring routes, not probes, scrapes or /docs."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCORING = 'route=~"/v1/.+"'


def test_every_request_query_selects_the_scoring_routes():
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/xent.json").read_text())
    queries = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    selectors = [
        match for expr in queries for match in re.findall(r"xent_http_request[a-z_]*(\{[^}]*\})?\[", expr)
    ]
    assert len(selectors) >= 10
    assert all(SCORING in selector for selector in selectors), selectors
    assert re.fullmatch("/v1/.+", "/v1/cross-entropy") and not re.fullmatch("/v1/.+", "/metrics")
