"""The Grafana dashboard shows data: every panel's query selects series that a running
sidecar's /metrics exports, under the labels the chart's ServiceMonitor gives them.

A sidecar runs on the in-process harness (in-memory Kafka, the real SDK against the
emulator) until every kind of series exists: finished and running jobs, a throttled create,
a dead letter. Its exposition (what /metrics serves) is parsed with prometheus_client's
parser; each series gets the target labels the Prometheus Operator attaches for the chart's
ServiceMonitor (job = the Service's name, namespace = the release's). Each panel expression
is taken apart into selectors (metric name and label matchers, with the dashboard's
variables set as Grafana would) and `by (...)` label lists; every selector must match an
exported series and every grouping label must be on it. The alert rules get the same check.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_checks import DEPLOY, K8S_VERSION
from prometheus_client.parser import text_string_to_metric_families

from connector.core.records import EntryState
from connector.emulator.config import EmulatorConfig
from connector.testing import harness

pytestmark = pytest.mark.slow  # renders the chart with helm

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "gemini-batch-connector.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
CHART = DEPLOY / "helm" / "gemini-batch-connector"
NAMESPACE = "llm"
PREFIX = "gemini_batch_connector_"
Series = tuple[str, dict[str, str]]

SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?")
MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*,?')
LABEL_VALUES = re.compile(r"label_values\((.*),\s*([a-zA-Z_]+)\)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Everything in an expression that is not a metric name: functions, keywords, units.
PROMQL_WORDS = {
    "sum", "avg", "min", "max", "count", "rate", "increase", "deriv", "time", "by",
    "without", "histogram_quantile", "and", "or", "unless", "le",
}  # fmt: skip


def target_labels(helm: Path) -> dict[str, str]:
    """The labels the Prometheus Operator gives the chart's scrape targets."""
    result = subprocess.run(
        [str(helm), "template", "rel", str(CHART), "--namespace", NAMESPACE,
         "--kube-version", K8S_VERSION, "--set", "serviceMonitor.enabled=true"],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = {d["kind"]: d for d in yaml.safe_load_all(result.stdout) if d}
    monitor, service = docs["ServiceMonitor"], docs["Service"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert "jobLabel" not in monitor["spec"]  # so the job label is the Service's name
    return {
        "job": service["metadata"]["name"],
        "namespace": NAMESPACE,
        "service": service["metadata"]["name"],
        "endpoint": endpoint["port"],
        "pod": "rel-gemini-batch-connector-0",
        "container": "gemini-batch-connector",
        "instance": "10.0.0.1:8080",
    }


@pytest.fixture(scope="module")
def exported() -> str:
    """A running sidecar's /metrics with every kind of series present."""
    h = harness(
        batch_max_wait_s=1.0,
        emulator_config=EmulatorConfig(
            queue_delay_s=0, processing_delay_s=120, per_request_delay_s=0, rate_limit_rate=0.5
        ),
    )
    h.consumer.assign(0)
    for i in range(3):
        h.publish(f"done-{i}", created_ms=h.clock.wall_ms())
    h.publish("inv", body={"foo": 1})
    h.kafka.append(h.settings.request_topic, b"garbage", b"g", partition=0)
    h.run_until(lambda: len(h.results()) >= 4, advance_s=30.0)
    h.publish("running-0")
    h.run_until(lambda: h.sidecar.stats.jobs_created >= 2, advance_s=1.0)
    h.run_until(lambda: h.sidecar.metrics.progress, advance_s=5.0)  # polled, still running
    h.step(advance_s=1.0)
    assert h.sidecar.owned.count(EntryState.SUBMITTED) == 1
    return h.sidecar.metrics.exposition().decode()


def scraped(exposition: str, labels: dict[str, str]) -> list[Series]:
    return [
        (s.name, {**s.labels, **labels})
        for fam in text_string_to_metric_families(exposition)
        for s in fam.samples
    ]


def selectors(expr: str, variables: dict[str, str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(metric name, {label: (op, value)}) of every selector in `expr`."""
    body = re.sub(r"\[[^\]]*\]", "", expr)  # range durations: [5m], [$__rate_interval]
    body = GROUPING.sub("", body)  # label lists: by (namespace, job)
    body = re.sub(r'"[^"]*"(?![^{]*\})', "", body)  # string literals outside selectors
    for name, matchers in SELECTOR.findall(body):
        if name in PROMQL_WORDS:
            continue
        parsed: dict[str, Any] = {}
        inner = (matchers or "{}")[1:-1]
        for m in MATCHER.finditer(inner):
            value = m.group(3)
            for var, val in variables.items():
                value = value.replace(f"${var}", val)
            parsed[m.group(1)] = (m.group(2), value)
        assert MATCHER.sub("", inner).strip() == "", f"unparsed matchers in {matchers!r}"
        yield name, parsed


def matches(series: Series, name: str, matchers: dict[str, Any]) -> bool:
    s_name, labels = series
    if s_name != name:
        return False
    for label, (op, value) in matchers.items():
        got = labels.get(label, "")
        ok = {
            "=": got == value,
            "!=": got != value,
            "=~": re.fullmatch(value, got) is not None,
            "!~": re.fullmatch(value, got) is None,
        }[op]
        if not ok:
            return False
    return True


def check_expr(expr: str, series: list[Series], variables: dict[str, str]) -> None:
    found = list(selectors(expr, variables))
    assert found, f"no selector in {expr!r}"
    selected: list[Series] = []
    for name, matchers in found:
        assert name.startswith(PREFIX), f"{name} in {expr!r} is no series of the sidecar's"
        hit = [s for s in series if matches(s, name, matchers)]
        assert hit, f"{name}{matchers} in {expr!r} selects nothing /metrics exports"
        selected += hit
    for group in GROUPING.findall(expr):
        for label in (x.strip() for x in group.split(",") if x.strip()):
            assert any(label in labels for _, labels in selected), (
                f"`by ({group})` in {expr!r}: no selected series has {label!r}"
            )


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def test_datasource_job_and_namespace_are_template_variables() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"  # the plugin: any such source
    for name in ("job", "namespace"):
        assert variables[name]["type"] == "query"
        assert variables[name]["allValue"] == ".*"  # "All" also matches a missing label
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
            for name, matchers in selectors(target["expr"], {}):
                assert matchers.get("job") == ("=~", "$job"), (panel["title"], name)
                assert matchers.get("namespace") == ("=~", "$namespace"), (panel["title"], name)


def test_spend_panels_use_increase_or_rate() -> None:
    """Raw counters reset on restart: a spend panel shows increase() or rate() of them."""
    spend = [
        t["expr"] for p in dashboard()["panels"] for t in p["targets"] if "_usd_total" in t["expr"]
    ]
    assert len(spend) >= 3
    for expr in spend:
        assert re.search(r"\b(increase|rate)\(", expr), expr


@pytest.mark.parametrize(
    "variables",
    [{"job": ".*", "namespace": ".*"}, {"job": "JOB", "namespace": NAMESPACE}],
    ids=["all", "selected"],
)
def test_every_panel_selects_exported_series(
    helm: Path, exported: str, variables: dict[str, str]
) -> None:
    labels = target_labels(helm)
    variables = {k: labels["job"] if v == "JOB" else v for k, v in variables.items()}
    series = scraped(exported, labels)
    for panel in dashboard()["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            check_expr(target["expr"], series, variables)
    for var in dashboard()["templating"]["list"]:
        if var["type"] == "query":  # label_values(selector, label): Grafana's, not PromQL
            inner, label = LABEL_VALUES.fullmatch(var["query"]["query"]).groups()  # type: ignore[union-attr]
            check_expr(f"max by ({label}) ({inner})", series, variables)


def test_a_panel_on_the_old_job_label_would_fail(helm: Path, exported: str) -> None:
    """The check finds what made the old dashboard empty: another job label, an old name."""
    series = scraped(exported, target_labels(helm))
    with pytest.raises(AssertionError, match="selects nothing"):
        check_expr(
            'sum(gemini_batch_connector_results_total{job="gemini-batch-connector"})', series, {}
        )
    with pytest.raises(AssertionError, match="no series of the sidecar"):
        check_expr("sum(connector_results_total)", series, {})
    with pytest.raises(AssertionError, match="no selected series has"):
        check_expr("sum by (partition) (gemini_batch_connector_results_total)", series, {})


def test_every_alert_selects_exported_series(helm: Path, exported: str) -> None:
    series = scraped(exported, target_labels(helm))
    doc = yaml.safe_load(ALERTS.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            check_expr(rule["expr"], series, {})
