"""The Helm chart deploy/helm/gemini-batch-connector, with a real helm (built by tools.py).

`helm lint --strict`, then `helm template` with a matrix of values (the defaults and each
ci/*-values.yaml: an emulator test install, a secured cluster, a minimal one); every rendered
manifest is validated against the Kubernetes JSON schemas (kubernetes-validate, strict), linted
with yamllint, and its pods keep the same rules as deploy/kubernetes/. The chart's refusals
(values.schema.json, grace period not above the drain budget, no key and no emulator URL) are
rendered too.
"""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_checks import (
    DEPLOY,
    K8S_VERSION,
    ROOT,
    SPOOL_MIN_BYTES,
    Doc,
    api_key_ref,
    check_wiring,
    config_map_env,
    load_all,
    pod_specs,
    spool_bytes,
    spool_volume,
    validate_schema,
)

from connector.config import Settings

pytestmark = pytest.mark.slow  # the first run builds helm (minutes); later runs take seconds

CHART = DEPLOY / "helm" / "gemini-batch-connector"
OVERRIDE = CHART / "ci" / "override-values.yaml"
SECURED = CHART / "ci" / "secured-values.yaml"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
MATRIX = [None, OVERRIDE, SECURED, MINIMAL]
MATRIX_IDS = ["default", "override", "secured", "minimal"]
RELEASE = "rel"


def helm_run(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, check=False, timeout=120
    )


def render_text(helm: Path, *args: str) -> str:
    result = helm_run(
        helm,
        *("template", RELEASE, str(CHART), "--namespace", "llm", "--kube-version", K8S_VERSION),
        *args,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def render(helm: Path, *args: str) -> list[Doc]:
    return load_all(render_text(helm, *args))


def kinds(docs: list[Doc]) -> dict[str, Doc]:
    out = {d["kind"]: d for d in docs}
    assert len(out) == len(docs), "one resource of each kind"
    return out


def connector_container(docs: list[Doc]) -> Doc:
    ((_, spec),) = list(pod_specs(docs))
    (container,) = spec["containers"]
    return container


def test_helm_is_the_pinned_version(helm: Path) -> None:
    sys.path.insert(0, str(DEPLOY / "local"))
    import tools

    result = helm_run(helm, "version", "--template", "{{.Version}}")
    assert result.stdout.strip() == tools.HELM_VERSION


@pytest.mark.parametrize("values", MATRIX, ids=MATRIX_IDS)
def test_helm_lint_strict(helm: Path, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["--values", str(values)] if values else [])
    result = helm_run(helm, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", MATRIX, ids=MATRIX_IDS)
def test_rendered_manifests_are_valid_and_keep_the_pod_rules(
    helm: Path, values: Path | None
) -> None:
    docs = render(helm, *(["--values", str(values)] if values else []))
    assert {"ConfigMap", "Service", "Deployment"} <= set(kinds(docs))
    assert {CHART / "ci" / p.name for p in (CHART / "ci").glob("*.yaml")} == {
        v for v in MATRIX if v
    }, "every ci/ values file is in the matrix"
    for doc in docs:
        validate_schema(doc)
    check_wiring(docs)


@pytest.mark.parametrize("values", MATRIX, ids=MATRIX_IDS)
def test_rendered_manifests_pass_yamllint(helm: Path, values: Path | None) -> None:
    text = render_text(helm, *(["--values", str(values)] if values else []))
    # The repository's rules, except that toYaml writes block sequences unindented.
    config = (
        f"{{extends: {ROOT / '.yamllint'}, "
        "rules: {indentation: {spaces: 2, indent-sequences: whatever}}}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-d", config, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_values(helm: Path) -> None:
    docs = kinds(render(helm))
    assert set(docs) == {  # no Secret, no ServiceMonitor, no PrometheusRule
        "ConfigMap",
        "Service",
        "Deployment",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 60  # drain 20 s + margin 40 s
    container = connector_container([deployment])
    assert container["image"] == "your-registry/gemini-batch-connector:0.1.0"  # appVersion
    assert api_key_ref(container) == {"name": "gemini-batch-connector", "key": "api-key"}
    settings = docs["ConfigMap"]["data"]
    assert settings["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert settings["CONNECTOR_REQUEST_TOPIC"] == "llm.requests"
    assert settings["CONNECTOR_GROUP_ID"] == "gemini-batch-connector"
    assert settings["CONNECTOR_GEMINI_BASE_URL"] == ""
    assert settings["CONNECTOR_DRAIN_TIMEOUT_S"] == "20"
    assert settings["CONNECTOR_HEALTH_PORT"] == "8080"
    assert settings["CONNECTOR_HEALTH_HOST"] == "0.0.0.0"
    assert settings["CONNECTOR_CONTROL_TOPIC"] == ""  # the code's default: <ledger>.control
    # The spool: an emptyDir with a stated limit, big enough for the default big jobs.
    assert settings["CONNECTOR_SPOOL_DIR"] == "/var/spool/gemini-batch-connector"
    assert settings["CONNECTOR_SPOOL_RESULTS_BYTES"] == "2000000000"
    assert settings["CONNECTOR_SPOOL_RESERVE_BYTES"] == "64000000"
    volume = spool_volume(spec, container, settings["CONNECTOR_SPOOL_DIR"])
    assert volume["emptyDir"] == {"sizeLimit": "3Gi"}
    assert spool_bytes(volume) >= SPOOL_MIN_BYTES
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http-metrics"}
    probe = container["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 300  # the startup timeout
    # Its own ServiceAccount, no token; one replica may be down at a time; spread.
    account = docs["ServiceAccount"]
    assert spec["serviceAccountName"] == account["metadata"]["name"]
    assert spec["automountServiceAccountToken"] is False
    assert account["automountServiceAccountToken"] is False
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= spec_labels(deployment).items()
    (spread,) = spec["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"].items() <= spec_labels(deployment).items()
    # The health port, only from the monitoring namespace; egress open.
    policy = docs["NetworkPolicy"]["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= spec_labels(deployment).items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["ports"] == [{"port": "http-metrics", "protocol": "TCP"}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]


def spec_labels(deployment: Doc) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_secured_values(helm: Path) -> None:
    """Certificates and secrets files for a secured cluster, a cloud identity, a claimed
    spool, closed egress and the alerts."""
    docs = render(helm, "--values", str(SECURED))
    by_kind = kinds(docs)
    deployment = by_kind["Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    container = connector_container([deployment])
    settings = config_map_env(docs, container)
    assert settings["CONNECTOR_CONTROL_TOPIC"] == "orders.llm.control"
    assert {"secretRef": {"name": "kafka-sasl"}} in container["envFrom"]
    assert {"name": "CONNECTOR_KAFKA_SSL_CAFILE", "value": "/etc/kafka-ca/ca.crt"} in container[
        "env"
    ]
    assert {"name": "kafka-ca", "mountPath": "/etc/kafka-ca", "readOnly": True} in container[
        "volumeMounts"
    ]
    assert {"name": "kafka-ca", "secret": {"secretName": "kafka-ca"}} in spec["volumes"]
    volume = spool_volume(spec, container, settings["CONNECTOR_SPOOL_DIR"])
    claim = volume["ephemeral"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "8Gi"
    assert claim["storageClassName"] == "premium-rwo"
    assert spec["securityContext"]["fsGroup"] == 10001  # the claimed volume is writable
    account = by_kind["ServiceAccount"]
    assert account["metadata"]["name"] == spec["serviceAccountName"] == "orders-batcher"
    assert account["metadata"]["annotations"] == {
        "iam.gke.io/gcp-service-account": "orders-batcher@example-project.iam.gserviceaccount.com"
    }
    policy = by_kind["NetworkPolicy"]["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert len(policy["egress"]) == 2
    assert len(policy["ingress"][0]["from"]) == 2
    assert [c["topologyKey"] for c in spec["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    ]
    assert by_kind["PrometheusRule"]["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_minimal_values(helm: Path) -> None:
    docs = render(helm, "--values", str(MINIMAL))
    by_kind = kinds(docs)
    assert set(by_kind) == {"ConfigMap", "Service", "Deployment"}
    spec = by_kind["Deployment"]["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "ci-runner"
    assert "topologySpreadConstraints" not in spec
    container = connector_container(docs)
    settings = config_map_env(docs, container)
    assert settings["CONNECTOR_SPOOL_DIR"] == "/spool"
    assert spool_volume(spec, container, "/spool")["emptyDir"] == {"sizeLimit": "500Mi"}


def test_values_yaml_states_the_codes_ledger_and_control_defaults() -> None:
    text = (CHART / "values.yaml").read_text()
    settings = Settings(group_id="G", request_topic="R", gemini_base_url="http://x")
    assert settings.ledger == "G.R.ledger"
    assert "Empty: <groupId>.<requests>.ledger" in text
    assert settings.legacy_ledger == "G.ledger"
    assert "an existing <groupId>.ledger of an earlier release is kept" in text
    assert settings.control == "G.R.ledger.control"
    assert "Empty: <ledger topic>.control." in text


def test_override_values(helm: Path) -> None:
    docs = render(helm, "--values", str(OVERRIDE))
    by_kind = kinds(docs)
    assert set(by_kind) == {
        "Secret",
        "ConfigMap",
        "Service",
        "Deployment",
        "ServiceMonitor",
        "ServiceAccount",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    deployment = by_kind["Deployment"]
    assert deployment["spec"]["replicas"] == 3
    spec = deployment["spec"]["template"]["spec"]
    assert spec["terminationGracePeriodSeconds"] == 86  # ceil(45.5) + 40
    container = connector_container([deployment])
    assert container["image"] == "registry.example.com/gemini-batch-connector:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    secret = by_kind["Secret"]
    assert api_key_ref(container) == {"name": secret["metadata"]["name"], "key": "api-key"}
    assert base64.b64decode(secret["data"]["api-key"]) == b"not-a-real-key"
    assert {"name": "CONNECTOR_BATCH_MAX_WAIT_S", "value": "10"} in container["env"]
    settings = config_map_env(docs, container)
    assert settings["KAFKA_BOOTSTRAP_SERVERS"] == "kafka-0.kafka:9092,kafka-1.kafka:9092"
    assert settings["CONNECTOR_REQUEST_TOPIC"] == "orders.llm.requests"
    assert settings["CONNECTOR_RESULT_TOPIC"] == "orders.llm.results"
    assert settings["CONNECTOR_LEDGER_TOPIC"] == "orders.llm.ledger"
    assert settings["CONNECTOR_GROUP_ID"] == "orders-batcher"
    assert settings["CONNECTOR_GEMINI_BASE_URL"] == "http://gemini-emulator:8765"
    assert settings["CONNECTOR_DRAIN_TIMEOUT_S"] == "45.5"
    monitor = by_kind["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    template = deployment["spec"]["template"]["metadata"]
    assert template["annotations"]["example.com/team"] == "orders"
    assert template["annotations"]["checksum/config"]


def test_emulator_without_a_key(helm: Path) -> None:
    docs = render(
        helm, "--set", "gemini.apiKey.existingSecret=", "--set", "gemini.baseUrl=http://emu:8765"
    )
    container = connector_container(docs)
    assert api_key_ref(container) is None
    assert config_map_env(docs, container)["CONNECTOR_GEMINI_BASE_URL"] == "http://emu:8765"


def test_health_port_and_explicit_grace_period(helm: Path) -> None:
    docs = render(helm, "--set", "healthPort=9000", "--set", "terminationGracePeriodSeconds=300")
    ((_, spec),) = list(pod_specs(docs))
    assert spec["terminationGracePeriodSeconds"] == 300
    container = connector_container(docs)
    assert container["ports"][0]["containerPort"] == 9000
    assert config_map_env(docs, container)["CONNECTOR_HEALTH_PORT"] == "9000"
    assert container["livenessProbe"]["httpGet"]["port"] == "http-metrics"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["terminationGracePeriodSeconds=20"],
            "terminationGracePeriodSeconds (20) must be above drainTimeoutSeconds (20)",
        ),
        (
            ["drainTimeoutSeconds=90", "terminationGracePeriodSeconds=60"],
            "terminationGracePeriodSeconds (60) must be above drainTimeoutSeconds (90)",
        ),
        (["gemini.apiKey.existingSecret="], "the sidecar refuses to start with neither"),
        (["gemini.apiKey.create=true"], "gemini.apiKey.value is empty"),
        # values.schema.json: typos and wrong types fail at install, not in the pod
        (["replicaCont=2"], "additional properties 'replicaCont' not allowed"),
        (["spool.size=lots"], "/spool/size"),
        (["spool.type=hostPath"], "/spool/type"),
        (["logFormat=xml"], "/logFormat"),
        (["healthPort=0"], "/healthPort"),
        (["gemini.baseUrl=emulator:8765"], "/gemini/baseUrl"),
        (["topics.requests="], "/topics/requests"),
        (["topics.results=bad topic"], "/topics/results"),
    ],
)
def test_chart_refuses_unsafe_values(helm: Path, overrides: list[str], message: str) -> None:
    args = [arg for o in overrides for arg in ("--set", o)]
    result = helm_run(helm, "template", RELEASE, str(CHART), *args)
    assert result.returncode != 0
    assert message in result.stderr
