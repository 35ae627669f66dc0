"""Alerts as code: deploy/prometheus/alerts.yml, checked and unit-tested by a real promtool
(built from the Go module proxy by deploy/local/tools.py), and the chart's PrometheusRule
rendering the same rules."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_checks import DEPLOY, K8S_VERSION

pytestmark = pytest.mark.slow  # the first run builds promtool (minutes); later runs take seconds

RULES = DEPLOY / "prometheus" / "alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
CHART = DEPLOY / "helm" / "gemini-batch-connector"
CHART_RULES = CHART / "files" / "alerts.yml"
ALERTS = {
    "GeminiBatchConnectorLoopStopped",
    "GeminiBatchConnectorConsumerLagGrowing",
    "GeminiBatchConnectorJobStuck",
    "GeminiBatchConnectorDeadLetters",
    "GeminiBatchConnectorSpendHigh",
    "GeminiBatchConnectorApiKeyRefused",
    "GeminiBatchConnectorResultsTooLarge",
}


def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, timeout=300
    )


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def test_the_alerts_the_operators_asked_for_exist() -> None:
    got = {r["alert"] for r in rules()}
    assert got == ALERTS
    for rule in rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "gemini_batch_connector_" in rule["expr"], rule["alert"]


def test_promtool_check_rules(promtool: Path) -> None:
    result = run(promtool, "check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout + result.stderr


def test_promtool_test_rules(promtool: Path) -> None:
    result = run(promtool, "test", "rules", RULE_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    doc = yaml.safe_load(RULE_TESTS.read_text())
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in doc["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert fires == ALERTS
    assert quiet == ALERTS


def test_promtool_test_rules_can_fail(promtool: Path, tmp_path: Path) -> None:
    """A wrong expectation fails: the unit tests mean something."""
    doc = yaml.safe_load(RULE_TESTS.read_text())
    doc["rule_files"] = [str(RULES)]
    first = doc["tests"][0]["alert_rule_test"]
    first[0]["exp_alerts"], first[1]["exp_alerts"] = first[1]["exp_alerts"], []
    broken = tmp_path / "broken.test.yml"
    broken.write_text(yaml.safe_dump(doc))
    result = run(promtool, "test", "rules", broken)
    assert result.returncode != 0


def test_the_chart_ships_the_same_rules() -> None:
    assert CHART_RULES.read_bytes() == RULES.read_bytes(), (
        "files/alerts.yml in the chart must be a copy of deploy/prometheus/alerts.yml"
    )


def _render(helm: Path, *args: str) -> list[dict[str, Any]]:
    result = run(
        helm, "template", "rel", CHART, "--namespace", "llm", "--kube-version", K8S_VERSION, *args
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def test_the_prometheus_rule_is_opt_in_and_renders_the_rules(helm: Path) -> None:
    assert not [d for d in _render(helm) if d["kind"] == "PrometheusRule"]
    docs = _render(
        helm,
        "--set",
        "prometheusRule.enabled=true",
        "--set",
        "prometheusRule.labels.release=kube-prometheus-stack",
        "--set",
        "prometheusRule.alertLabels.team=orders",
    )
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rendered = [r for g in rule["spec"]["groups"] for r in g["rules"]]
    want = rules()
    assert [r["alert"] for r in rendered] == [r["alert"] for r in want]
    for got, expected in zip(rendered, want, strict=True):
        assert got["expr"] == expected["expr"]
        assert got["annotations"] == expected["annotations"]  # {{ $labels }} kept for Prometheus
        assert got.get("for") == expected.get("for")
        assert got["labels"] == {**expected["labels"], "team": "orders"}


def test_the_rendered_rule_passes_promtool(helm: Path, promtool: Path, tmp_path: Path) -> None:
    docs = _render(helm, "--set", "prometheusRule.enabled=true")
    (rule,) = [d for d in docs if d["kind"] == "PrometheusRule"]
    plain = tmp_path / "rendered.yml"
    plain.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
    result = run(promtool, "check", "rules", plain)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_prometheus_loads_the_alerts(promtool: Path) -> None:
    """deploy/prometheus/prometheus.yml (the compose stack's) is valid and loads alerts.yml."""
    result = run(promtool, "check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout
