"""deploy/docker-compose.yml and what it mounts: Prometheus, Grafana and the sample producer.

The compose file is validated against the official Compose Specification JSON schema, as
vendored by the check-jsonschema package (`--builtin-schema vendor.compose-spec`, the
compose-spec project's schema/compose-spec.json). There is no Docker engine and no `docker
compose` plugin here, so `docker compose config` cannot run; the schema is the same one the
Compose tools validate against. What a schema cannot see (a service named in depends_on that
does not exist, a mounted file that is missing, a scrape target on the wrong port) is checked
by hand below.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DRAIN_DEFAULT_S = 20.0  # CONNECTOR_DRAIN_TIMEOUT_S default (connector/config.py)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def check_jsonschema(path: Path) -> subprocess.CompletedProcess[str]:
    """check-jsonschema's CLI with its vendored copy of the compose-spec schema."""
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", path],
        capture_output=True,
        text=True,
        check=False,
    )


def test_compose_file_is_valid_against_the_compose_spec_schema() -> None:
    result = check_jsonschema(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    """The same check fails on a typo, so a pass above means something."""
    broken = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text().replace("stop_grace_period:", "stop_grace_periods:", 1)
    broken.write_text(text)
    result = check_jsonschema(broken)
    assert result.returncode == 1
    assert "stop_grace_periods" in result.stdout + result.stderr


def test_services_of_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {
        "kafka",
        "emulator",
        "sidecar",
        "sample-producer",
        "prometheus",
        "grafana",
    }
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for name, service in services.items():
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"
        assert "container_name" not in service  # would stop two stacks side by side


def test_connector_services_use_the_image_from_deploy_dockerfile(compose: dict[str, Any]) -> None:
    for name in ("emulator", "sidecar", "sample-producer"):
        service = compose["services"][name]
        build = service["build"]
        assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == (
            DEPLOY / "Dockerfile"
        )
        # As in Kubernetes: read-only root, /tmp writable, no capabilities.
        assert service["read_only"] is True
        assert service["tmpfs"] == ["/tmp"]
        assert service["cap_drop"] == ["ALL"]
    emulator = compose["services"]["emulator"]
    assert emulator["command"] == ["emulator", "--host", "0.0.0.0", "--port", "8765"]


def test_sidecar_points_at_the_emulator_and_serves_health_on_8080(compose: dict[str, Any]) -> None:
    sidecar = compose["services"]["sidecar"]
    env = sidecar["environment"]
    assert env["CONNECTOR_GEMINI_BASE_URL"] == "http://emulator:8765"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert env["CONNECTOR_HEALTH_PORT"] == "8080"
    # The sidecar listens on loopback by default; Prometheus scrapes from its own container.
    assert env["CONNECTOR_HEALTH_HOST"] == "0.0.0.0"
    # Never a literal key: only what the user's shell passes in.
    assert env["GEMINI_API_KEY"] == "${GEMINI_API_KEY:-}"
    assert sidecar["command"] == ["run"]
    assert "8080:8080" in sidecar["ports"]
    assert "/readyz" in sidecar["healthcheck"]["test"][-1]
    seconds = re.fullmatch(r"(\d+)s", sidecar["stop_grace_period"])
    assert seconds is not None
    grace = int(seconds.group(1))
    assert grace > float(env["CONNECTOR_DRAIN_TIMEOUT_S"]) >= DRAIN_DEFAULT_S
    assert sidecar["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert sidecar["depends_on"]["emulator"]["condition"] == "service_healthy"
    # The broker advertises kafka:19092 to containers.
    advertised = compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert "//kafka:19092" in advertised


def test_sample_producer_runs_the_mounted_module(compose: dict[str, Any]) -> None:
    producer = compose["services"]["sample-producer"]
    assert producer["entrypoint"] == ["python", "-m", "sample_producer"]
    assert producer["restart"] == "no"
    (mount,) = producer["volumes"]
    source, target, mode = mount.split(":")
    assert (COMPOSE.parent / source).resolve() == DEPLOY / "sample_producer.py"
    assert target == f"{producer['working_dir']}/sample_producer.py"
    assert mode == "ro"
    sidecar_env = compose["services"]["sidecar"]["environment"]
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "CONNECTOR_REQUEST_TOPIC", "CONNECTOR_RESULT_TOPIC"):
        assert producer["environment"][name] == sidecar_env[name]
    assert producer["depends_on"]["sidecar"]["condition"] == "service_healthy"


def test_sample_producer_sends_what_the_sidecar_accepts() -> None:
    """Every sample passes the sidecar's own intake validation, but the one meant to fail."""
    sys.path.insert(0, str(DEPLOY))
    try:
        import sample_producer
    finally:
        sys.path.remove(str(DEPLOY))
    from connector.core.records import RequestEvent
    from connector.core.validation import validate_request
    from connector.errors import InvalidRequest

    rejected = []
    batch = sample_producer.samples("t", 4)
    for request_id, model, kind, body in batch:
        event = RequestEvent(
            request_id=request_id, model=model, kind=kind, body=json.dumps(body), created_ms=1
        )
        try:
            validate_request(event, max_request_bytes=10_000_000)
        except InvalidRequest:
            rejected.append(request_id)
    assert rejected == ["t-invalid-0"]
    assert {kind.value for _, _, kind, _ in batch} == {"generate", "embed"}


def test_bind_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source} is missing"


def test_prometheus_scrapes_the_sidecar_metrics_on_the_health_port(
    compose: dict[str, Any],
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "gemini-batch-connector"]
    assert job["metrics_path"] == "/metrics"
    (target,) = [t for sc in job["static_configs"] for t in sc["targets"]]
    host, port = target.split(":")
    assert host in compose["services"]
    assert port == compose["services"][host]["environment"]["CONNECTOR_HEALTH_PORT"]
    prometheus = compose["services"]["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus:")
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_is_provisioned_with_the_datasource_and_dashboard_folder(
    compose: dict[str, Any],
) -> None:
    grafana_dir = DEPLOY / "grafana"
    datasources = yaml.safe_load(
        (grafana_dir / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (grafana_dir / "provisioning" / "dashboards" / "dashboards.yml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["folder"]
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = list((grafana_dir / "dashboards").glob("*.json"))
    assert dashboards
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        assert dashboard["uid"]
        assert dashboard["title"]
        # The data source is a variable over the Prometheus sources, so the provisioned one
        # (whatever its uid) and any other installation's are picked up.
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["datasource"]["query"] == source["type"]
        for panel in dashboard["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}"
            for target in panel["targets"]:
                assert target["expr"]
                assert target["datasource"]["uid"] == "${datasource}"
