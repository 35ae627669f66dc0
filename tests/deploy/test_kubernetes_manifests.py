"""deploy/kubernetes/: every manifest valid against the Kubernetes JSON schemas, and both layouts
(standalone Deployment, sidecar next to an application) keep the same pod rules.

Schemas come from kubernetes-validate (strict: unknown fields fail) for Kubernetes
deploy_checks.K8S_VERSION; the ServiceMonitor is a CRD with no schema there and is checked
field by field.
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest
from deploy_checks import (
    CONNECTOR_CONTAINER,
    DEPLOY,
    K8S_VERSION,
    SPOOL_MIN_BYTES,
    Doc,
    api_key_ref,
    check_pod,
    check_wiring,
    config_map_env,
    load_files,
    pod_specs,
    spool_bytes,
    spool_volume,
    validate_schema,
)

MANIFESTS = DEPLOY / "kubernetes"
ALL_FILES = sorted(MANIFESTS.rglob("*.yaml"))
CONFIGMAP = MANIFESTS / "configmap.yaml"
SECRET = MANIFESTS / "secret.example.yaml"
LAYOUTS = ("standalone", "sidecar")


def layout(name: str) -> list[Doc]:
    """One layout's manifests with the shared ConfigMap and the example Secret."""
    return load_files([CONFIGMAP, SECRET, *sorted((MANIFESTS / name).glob("*.yaml"))])


def test_the_expected_files_exist() -> None:
    names = {str(p.relative_to(MANIFESTS)) for p in ALL_FILES}
    assert names == {
        "configmap.yaml",
        "secret.example.yaml",
        *(f"{lay}/{kind}.yaml" for lay in LAYOUTS for kind in ("deployment", "service")),
        *(f"{lay}/servicemonitor.yaml" for lay in LAYOUTS),
    }


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(MANIFESTS)))
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path) -> None:
    docs = load_files([path])
    assert docs
    for doc in docs:
        validate_schema(doc)


def test_the_schema_check_rejects_a_misspelt_field() -> None:
    """Strict validation is in force: a typo in a pod spec fails, so a pass means something."""
    (deployment,) = load_files([MANIFESTS / "standalone" / "deployment.yaml"])
    broken = copy.deepcopy(deployment)
    spec = broken["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("name", LAYOUTS)
def test_layout_is_wired_and_keeps_the_pod_rules(name: str) -> None:
    """Service selects the pods, ServiceMonitor the Service; probes, security, resources."""
    check_wiring(layout(name))


@pytest.mark.parametrize("name", LAYOUTS)
def test_api_key_comes_from_the_example_secret(name: str) -> None:
    docs = layout(name)
    (secret,) = [d for d in docs if d["kind"] == "Secret"]
    for _, spec in pod_specs(docs):
        connector = next(c for c in spec["containers"] if c["name"] == CONNECTOR_CONTAINER)
        ref = api_key_ref(connector)
        assert ref == {"name": secret["metadata"]["name"], "key": "api-key"}
        assert ref["key"] in secret["stringData"]


def test_grace_period_is_above_the_drain_budget() -> None:
    for name in LAYOUTS:
        docs = layout(name)
        for _, spec in pod_specs(docs):
            connector = next(c for c in spec["containers"] if c["name"] == CONNECTOR_CONTAINER)
            drain = float(config_map_env(docs, connector)["CONNECTOR_DRAIN_TIMEOUT_S"])
            assert drain == 20.0
            assert spec["terminationGracePeriodSeconds"] == 60
            check_pod(spec, drain)


def test_sidecar_layout_runs_next_to_an_application() -> None:
    ((deployment, spec),) = list(pod_specs(layout("sidecar")))
    names = [c["name"] for c in spec["containers"]]
    assert names == ["app", "gemini-batch-connector"]
    assert deployment["metadata"]["name"] != "gemini-batch-connector"


def test_example_secret_holds_a_placeholder_only() -> None:
    (secret,) = load_files([SECRET])
    assert secret["stringData"] == {"api-key": "replace-me"}
    assert "kubectl create secret" in SECRET.read_text()


def test_resources_carry_the_benchmark_note() -> None:
    for name in LAYOUTS:
        text = (MANIFESTS / name / "deployment.yaml").read_text()
        assert "From the benchmark (bench/README.md)" in text


@pytest.mark.parametrize(
    "breakage",
    ["writable root", "capability kept", "grace below drain", "no /tmp volume"],
)
def test_the_pod_rules_catch_a_weakened_pod(breakage: str) -> None:
    """check_pod fails on each weakening, so its pass on the real manifests means something."""
    ((_, spec),) = list(pod_specs(layout("standalone")))
    spec = copy.deepcopy(spec)
    container = spec["containers"][0]
    if breakage == "writable root":
        container["securityContext"]["readOnlyRootFilesystem"] = False
    elif breakage == "capability kept":
        container["securityContext"]["capabilities"] = {"drop": ["NET_RAW"]}
    elif breakage == "grace below drain":
        spec["terminationGracePeriodSeconds"] = 20
    else:
        container["volumeMounts"] = []
    with pytest.raises(AssertionError):
        check_pod(spec, drain_timeout_s=20.0)


@pytest.mark.parametrize("name", LAYOUTS)
def test_health_listens_on_the_pod_address(name: str) -> None:
    """The sidecar listens on 127.0.0.1 unless configured; the kubelet's probes and
    Prometheus come to the pod's IP, so the manifests say 0.0.0.0 explicitly."""
    docs = layout(name)
    for _, spec in pod_specs(docs):
        connector = next(c for c in spec["containers"] if c["name"] == CONNECTOR_CONTAINER)
        assert config_map_env(docs, connector)["CONNECTOR_HEALTH_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", LAYOUTS)
def test_the_spool_volume_holds_the_default_big_jobs(name: str) -> None:
    """Input files up to CONNECTOR_BATCH_MAX_BYTES and results files up to 2 GB go to
    CONNECTOR_SPOOL_DIR, a volume of its own, not the small /tmp."""
    docs = layout(name)
    for _, spec in pod_specs(docs):
        connector = next(c for c in spec["containers"] if c["name"] == "gemini-batch-connector")
        settings = config_map_env(docs, connector)
        volume = spool_volume(spec, connector, settings["CONNECTOR_SPOOL_DIR"])
        assert spool_bytes(volume) >= SPOOL_MIN_BYTES
        assert "startupProbe" in connector


def test_the_wiring_check_catches_a_missing_spool_or_loopback_health() -> None:
    for breakage in ("spool", "health host"):
        docs = copy.deepcopy(layout("standalone"))
        if breakage == "spool":
            for _, spec in pod_specs(docs):
                spec["containers"][0]["volumeMounts"] = [
                    m for m in spec["containers"][0]["volumeMounts"] if m["name"] != "spool"
                ]
        else:
            (cm,) = [d for d in docs if d["kind"] == "ConfigMap"]
            cm["data"]["CONNECTOR_HEALTH_HOST"] = "127.0.0.1"
        with pytest.raises(AssertionError):
            check_wiring(docs)
