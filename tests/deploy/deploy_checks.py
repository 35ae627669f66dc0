"""Shared checks of Kubernetes manifests: schema validation and the pod rules every layout keeps.

Schemas: kubernetes-validate (its bundled JSON schemas, strict: unknown fields fail) for every
built-in kind. CRDs have no schema there; ServiceMonitor and PrometheusRule are checked field by
field instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from connector.config import DEFAULTS
from connector.core import policy
from connector.core.spool import input_file_bytes

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# The newest Kubernetes that kubernetes-validate ships schemas for, and the one helm is built
# for (tools.HELM_K8S_MINOR).
K8S_VERSION = "1.37.0"
CONNECTOR_CONTAINER = "gemini-batch-connector"
HEALTH_PORT = 8080
UID = 10001  # the image's user (deploy/Dockerfile)
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}
SPOOL_MIN_BYTES = (
    policy.MAX_UPLOADS
    * input_file_bytes(DEFAULTS["batch_max_bytes"], DEFAULTS["batch_max_requests"])
    + DEFAULTS["spool_results_bytes"]
    + DEFAULTS["spool_reserve_bytes"]
)
"""The spool the defaults need: input files of the largest file job being uploaded at once
(`policy.MAX_UPLOADS`), a results file (2 GB) and the reserve kept free."""
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9}

Doc = dict[str, Any]


def load_all(text: str) -> list[Doc]:
    """Every non-empty YAML document of a multi-document stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def load_files(paths: Iterable[Path]) -> list[Doc]:
    return [d for p in paths for d in load_all(p.read_text())]


def validate_schema(doc: Doc) -> None:
    """Raise unless `doc` is valid against Kubernetes K8S_VERSION (strict) or is a checked CRD."""
    if (doc.get("apiVersion"), doc.get("kind")) in CRD_KINDS:
        if doc["kind"] == "ServiceMonitor":
            check_service_monitor(doc)
        else:
            check_prometheus_rule(doc)
        return
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def check_service_monitor(doc: Doc) -> None:
    """A ServiceMonitor (monitoring.coreos.com/v1) that scrapes /metrics on http-metrics."""
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["kind"] == "ServiceMonitor"
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}
    labels = spec["selector"]["matchLabels"]
    assert labels
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items())
    assert spec["endpoints"]
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}
        assert endpoint["port"] == "http-metrics"
        assert endpoint["path"] == "/metrics"
        assert endpoint["interval"].endswith("s")


def check_prometheus_rule(doc: Doc) -> None:
    """A PrometheusRule (monitoring.coreos.com/v1): named groups of alerting rules."""
    assert set(doc) <= {"apiVersion", "kind", "metadata", "spec"}
    assert doc["metadata"]["name"]
    assert set(doc["spec"]) == {"groups"}
    for group in doc["spec"]["groups"]:
        assert set(group) <= {"name", "interval", "rules"}
        assert group["name"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
            assert rule["alert"]
            assert isinstance(rule["expr"], str)
            assert rule["expr"]
            assert all(isinstance(v, str) for v in rule.get("labels", {}).values())


def quantity_bytes(q: str) -> int:
    """Bytes in a Kubernetes quantity such as 3Gi or 500M."""
    for unit, factor in _UNITS.items():
        if q.endswith(unit):
            return int(float(q[: -len(unit)]) * factor)
    return int(q)


def spool_volume(spec: Doc, container: Doc, spool_dir: str) -> Doc:
    """The volume mounted at CONNECTOR_SPOOL_DIR, with a stated size: an emptyDir with a
    sizeLimit or a generic ephemeral volume with a storage request."""
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert spool_dir in mounts, f"CONNECTOR_SPOOL_DIR {spool_dir!r} is not a mounted volume"
    (volume,) = [v for v in spec["volumes"] if v["name"] == mounts[spool_dir]]
    if "emptyDir" in volume:
        assert quantity_bytes(volume["emptyDir"]["sizeLimit"]) > 0
    else:
        claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
        assert quantity_bytes(claim["resources"]["requests"]["storage"]) > 0
    return volume


def spool_bytes(volume: Doc) -> int:
    if "emptyDir" in volume:
        return quantity_bytes(volume["emptyDir"]["sizeLimit"])
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    return quantity_bytes(claim["resources"]["requests"]["storage"])


def pod_specs(docs: Iterable[Doc]) -> Iterator[tuple[Doc, Doc]]:
    """(workload, pod spec) of every Deployment."""
    for doc in docs:
        if doc.get("kind") == "Deployment":
            yield doc, doc["spec"]["template"]["spec"]


def check_pod(spec: Doc, drain_timeout_s: float) -> Doc:
    """The rules every pod with the connector keeps; returns the connector container."""
    assert spec["terminationGracePeriodSeconds"] > drain_timeout_s
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == UID
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp_volumes = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    for container in spec["containers"]:
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True, container["name"]
        assert sc["readOnlyRootFilesystem"] is True, container["name"]
        assert sc["allowPrivilegeEscalation"] is False, container["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], container["name"]
        assert "add" not in sc["capabilities"], container["name"]
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        assert mounts.get("/tmp") in tmp_volumes, f"{container['name']}: /tmp is no emptyDir"
    (connector,) = [c for c in spec["containers"] if c["name"] == CONNECTOR_CONTAINER]
    assert connector["args"] == ["run"]
    (port,) = connector["ports"]
    assert (port["name"], port["containerPort"]) == ("http-metrics", HEALTH_PORT)
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = connector[probe]["httpGet"]
        assert get["path"] == path
        assert get["port"] in (HEALTH_PORT, "http-metrics")
    # The numbers come from the benchmark (bench/README.md); no CPU limit on purpose.
    assert connector["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    return connector


def api_key_ref(container: Doc) -> Doc | None:
    """The secretKeyRef of GEMINI_API_KEY, None if the container has no key; never a literal."""
    for env in container.get("env", []):
        if env["name"] == "GEMINI_API_KEY":
            assert "value" not in env, "the API key must come from a Secret"
            ref: Doc = env["valueFrom"]["secretKeyRef"]
            return ref
    return None


def config_map_env(docs: Iterable[Doc], container: Doc) -> dict[str, str]:
    """The settings the container gets from ConfigMaps (envFrom) among `docs`."""
    maps = {d["metadata"]["name"]: d for d in docs if d.get("kind") == "ConfigMap"}
    out: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:  # secretRef: secrets of the user's, not settings here
            out.update(maps[source["configMapRef"]["name"]]["data"])
    return out


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_wiring(docs: list[Doc]) -> None:
    """Service -> pods, ServiceMonitor -> Service, settings -> probes all line up."""
    deployments = [d for d in docs if d.get("kind") == "Deployment"]
    services = [d for d in docs if d.get("kind") == "Service"]
    monitors = [d for d in docs if d.get("kind") == "ServiceMonitor"]
    assert deployments
    assert services
    for service in services:
        (port,) = service["spec"]["ports"]
        assert (port["name"], port["port"]) == ("http-metrics", HEALTH_PORT)
        assert port["targetPort"] in ("http-metrics", HEALTH_PORT)
        assert any(
            selects(service["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
            for d in deployments
        ), f"service {service['metadata']['name']} selects no pod"
    for monitor in monitors:
        assert any(
            selects(monitor["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])
            for s in services
        ), f"servicemonitor {monitor['metadata']['name']} selects no service"
    for _, spec in pod_specs(docs):
        connector = next(c for c in spec["containers"] if c["name"] == CONNECTOR_CONTAINER)
        settings = config_map_env(docs, connector)
        assert settings["CONNECTOR_HEALTH_PORT"] == str(HEALTH_PORT)
        # Explicit: the sidecar's own default is loopback, which probes cannot reach.
        assert settings["CONNECTOR_HEALTH_HOST"] == "0.0.0.0"
        spool_volume(spec, connector, settings["CONNECTOR_SPOOL_DIR"])
        drain = float(settings["CONNECTOR_DRAIN_TIMEOUT_S"])
        check_pod(spec, drain)
