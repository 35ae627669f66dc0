"""Metrics, cost and status over the loop on in-memory doubles (no broker)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from connector.core.observe import PartitionView, View, job_view
from connector.core.records import BatchKey, EntryState, JobProgress, Kind, LedgerEntry
from connector.emulator.config import EmulatorConfig
from connector.metrics import PREFIX, SnapshotCollector, Telemetry, metric_names
from connector.runner import Snapshot
from connector.statusview import connect_status, html_page
from connector.testing import TestHarness, harness


def samples(h_or_t: TestHarness | Telemetry) -> dict[tuple[str, frozenset[Any]], float]:
    t = h_or_t.sidecar.metrics if isinstance(h_or_t, TestHarness) else h_or_t
    out = {}
    for fam in text_string_to_metric_families(t.exposition().decode()):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def _lag_labels(partition: int) -> dict[str, str]:
    """kafka_exporter's labels, for the default settings' group and request topic."""
    return {
        "consumergroup": "gemini-batch-connector",
        "topic": "llm.requests",
        "partition": str(partition),
    }


def value(s: dict[tuple[str, frozenset[Any]], float], name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def ran() -> TestHarness:
    """Three good requests, one failing inside the job, one invalid, one undecodable."""
    h = harness(batch_max_wait_s=1.0)
    h.consumer.assign(0)
    for i in range(3):
        h.publish(f"r{i}", created_ms=h.clock.wall_ms())
    h.publish("bad", prompt="EMULATOR_FAIL please")
    h.publish("inv", body={"foo": 1})
    h.kafka.append(h.settings.request_topic, b"garbage", b"g", partition=0)
    h.run_until(lambda: len(h.results()) >= 5, advance_s=1.0)
    h.step()
    return h


def test_results_carry_their_batch_cost(ran: TestHarness) -> None:
    """OK results get cost_usd from usage at half the interactive price; errors get None."""
    by_id = {r.request_id: r for r in ran.result_events()}
    r0 = by_id["r0"]
    assert r0.usage is not None
    out = r0.usage.total_tokens - r0.usage.prompt_tokens
    expected = (r0.usage.prompt_tokens * 0.30 + out * 2.50) / 1e6 / 2
    assert r0.cost_usd == pytest.approx(expected)
    assert by_id["bad"].cost_usd is None
    assert by_id["inv"].cost_usd is None


def test_key_series_after_a_run(ran: TestHarness) -> None:
    s = samples(ran)
    assert value(s, "gemini_batch_connector_requests_consumed_total") == 6
    assert value(s, "gemini_batch_connector_results_total", status="OK", reason="") == 3
    assert (
        value(s, "gemini_batch_connector_results_total", status="ERROR", reason="INVALID_ARGUMENT")
        == 2
    )
    assert value(s, "gemini_batch_connector_requests_invalid_total") == 1
    assert (
        value(s, "gemini_batch_connector_requests_dead_lettered_total", stage="VALUE_CONVERTER")
        == 1
    )
    assert value(s, "gemini_batch_connector_requests_dead_lettered_total", stage="VALIDATION") == 1
    assert value(s, "gemini_batch_connector_request_to_result_seconds_count", status="OK") == 3
    assert value(s, "gemini_batch_connector_job_age_seconds_count", state="SUCCEEDED") == 1
    assert value(s, "gemini_batch_connector_jobs_created_total") == 1
    assert value(s, "gemini_batch_connector_jobs_finished_total") == 1
    assert value(s, "gemini_batch_connector_provider_call_seconds_count", call="create") == 1
    assert value(s, "gemini_batch_connector_loop_pass_seconds_count") > 0
    assert value(s, "gemini_batch_connector_inflight_jobs", state="SUBMITTED") == 0
    assert value(s, "gemini_batch_connector_inflight_requests", state="open") == 0
    assert value(s, "gemini_batch_connector_assigned_partitions") == 1
    assert value(s, "gemini_batch_connector_consumergroup_current_offset", **_lag_labels(0)) == 6
    costs = sum(r.cost_usd or 0 for r in ran.result_events())
    flash = "gemini-2.5-flash"
    assert value(
        s, "gemini_batch_connector_estimated_cost_usd_total", model=flash
    ) == pytest.approx(costs)
    assert value(
        s, "gemini_batch_connector_estimated_savings_usd_total", model=flash
    ) == pytest.approx(costs)
    assert value(s, "gemini_batch_connector_tokens_total", model=flash, type="input") > 0
    assert value(s, "gemini_batch_connector_tokens_total", model=flash, type="output") > 0
    assert not [k for k in s if any("r0" in v or "p0-" in v for _, v in k[1])], "no ids as labels"


def test_throttled_creates_are_counted_and_jobs_wait_as_intents() -> None:
    h = harness(batch_max_wait_s=1.0, emulator_config=EmulatorConfig(rate_limit_rate=1.0))
    h.consumer.assign(0)
    h.publish("r0")
    h.step(n=6, advance_s=1.0)
    s = samples(h)
    assert value(s, "gemini_batch_connector_provider_errors_total", call="create", code="429") >= 1
    assert value(s, "gemini_batch_connector_inflight_jobs", state="INTENT") == 1
    assert value(s, "gemini_batch_connector_inflight_requests", state="INTENT") == 1
    created = value(
        s, "gemini_batch_connector_oldest_job_created_timestamp_seconds", state="INTENT"
    )
    assert 0 < created <= value(s, "gemini_batch_connector_last_pass_timestamp_seconds")
    assert value(s, "gemini_batch_connector_token_budget", model="gemini-2.5-flash") == 3_000_000


def test_expired_jobs_count_as_resubmissions() -> None:
    h = harness(batch_max_wait_s=1.0, max_attempts=2, group_id="emulator-expire-job")
    h.consumer.assign(0)
    h.publish("r0")
    h.publish("r1")
    h.run_until(lambda: len(h.results()) >= 2, advance_s=2.0, max_passes=400)
    s = samples(h)
    assert value(s, "gemini_batch_connector_resubmissions_total", reason="expired") >= 1
    assert value(s, "gemini_batch_connector_job_age_seconds_count", state="EXPIRED") >= 1


def _entry(job_id: str, partition: int, state: EntryState, tokens: int) -> LedgerEntry:
    return LedgerEntry(
        job_id=job_id,
        key=BatchKey(partition, "gemini-2.5-pro", Kind.GENERATE),
        offsets=(1, 2, 3),
        attempt=1,
        display_name=f"g:{job_id}",
        state=state,
        use_file=False,
        est_tokens=tokens,
        created_ms=1_000_000,
        updated_ms=1_000_000,
        provider_job="batches/x" if state is EntryState.SUBMITTED else None,
    )


def _view() -> View:
    progress = JobProgress(total=3, succeeded=1, failed=1, pending=1)
    return View(
        now_ms=1_060_000,
        jobs=(
            job_view(_entry("a", 0, EntryState.SUBMITTED, 500), progress),
            job_view(_entry("b", 1, EntryState.INTENT, 200)),
        ),
        partitions=(PartitionView(0, 10, 25, 1), PartitionView(1, -1, None, 1)),
        open_requests=4,
        max_jobs=50,
        token_caps={"gemini-2.5-pro": 1000},
        enqueued_tokens={"gemini-2.5-pro": 500},
        paused=True,
    )


def test_collector_reads_only_the_snapshot() -> None:
    """Lag, budget, in-flight and progress come from the published view alone."""
    t = Telemetry()
    snap = Snapshot({"consumed": 9, "jobs_created": 2}, 0.0, _view())
    t.registry.register(SnapshotCollector(lambda: snap, t.settings))
    s = samples(t)
    assert value(s, "gemini_batch_connector_requests_consumed_total") == 9
    lag = "gemini_batch_connector_consumergroup_lag"
    assert value(s, lag, **_lag_labels(0)) == 15
    assert (lag, frozenset(_lag_labels(1).items())) not in s
    assert value(s, "gemini_batch_connector_consumergroup_current_offset", **_lag_labels(0)) == 10
    assert value(s, "gemini_batch_connector_inflight_jobs", state="SUBMITTED") == 1
    assert value(s, "gemini_batch_connector_inflight_requests", state="INTENT") == 3
    assert value(s, "gemini_batch_connector_inflight_requests", state="open") == 4
    oldest = "gemini_batch_connector_oldest_job_created_timestamp_seconds"
    assert value(s, oldest, state="INTENT") == 1_000  # created_ms / 1000, not an age
    assert value(s, "gemini_batch_connector_last_pass_timestamp_seconds") == 1_060
    assert value(s, "gemini_batch_connector_provider_auth_failing") == 0
    assert value(s, "gemini_batch_connector_enqueued_tokens", model="gemini-2.5-pro") == 500
    assert value(s, "gemini_batch_connector_token_budget", model="gemini-2.5-pro") == 1000
    assert value(
        s, "gemini_batch_connector_job_progress_ratio", model="gemini-2.5-pro"
    ) == pytest.approx(2 / 3)
    assert value(s, "gemini_batch_connector_consumption_paused") == 1
    assert value(s, "gemini_batch_connector_max_jobs") == 50


def test_status_document_is_shaped_like_kafka_connect() -> None:
    doc = connect_status(
        "grp", "host:8080", {"partitions": [0, 1], "intents": 1}, _view(), True, True, None
    )
    assert doc["name"] == "grp"
    assert doc["connector"] == {"state": "RUNNING", "worker_id": "host:8080"}
    assert [t["id"] for t in doc["tasks"]] == [0, 1]
    assert doc["tasks"][0]["state"] == "PAUSED"
    assert doc["tasks"][0]["lag"] == 15
    assert doc["partitions"] == [0, 1]
    assert doc["intents"] == 1
    assert doc["jobs"][0]["progress"]["fraction"] == pytest.approx(2 / 3)
    assert doc["quota"]["models"]["gemini-2.5-pro"] == {
        "enqueued_tokens": 500,
        "token_budget": 1000,
    }
    assert doc["last_error"] is None
    assert connect_status("g", "w", {}, None, False, True, None)["connector"]["state"] == (
        "UNASSIGNED"
    )
    assert connect_status("g", "w", {}, None, True, False, None)["connector"]["state"] == "FAILED"
    page = html_page(doc)
    assert page.count("class='job'") == 2
    assert "2/3" in page
    assert "<script" not in page
    assert "http://" not in page.replace("http-equiv", "")  # no external assets


def test_readme_metrics_table_lists_exactly_what_is_exported(ran: TestHarness) -> None:
    """The Operations table is what the Grafana dashboard is built from: keep it exact."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Metrics", 1)[1].split("### Logs", 1)[0]
    documented = {
        re.sub(r"_(total|info)$", "", name)
        for name in re.findall(r"^\| `(gemini_batch_connector_[a-z_]+)`", section, re.M)
    }
    exported = {m.name for m in ran.sidecar.metrics.registry.collect()}
    assert documented == exported


def test_every_series_carries_the_application_prefix(ran: TestHarness) -> None:
    names = metric_names(ran.sidecar.metrics.registry)
    assert len(names) > 20
    assert [n for n in names if not n.startswith(PREFIX)] == []


def test_dashboard_queries_use_only_exported_metrics(ran: TestHarness) -> None:
    """Every series the Grafana dashboard queries is one the code exports."""
    import json
    import re
    from pathlib import Path

    path = (
        Path(__file__).resolve().parents[2]
        / "deploy/grafana/dashboards/gemini-batch-connector.json"
    )
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for e in exprs
        for name in re.findall(r"\bgemini_batch_connector_[a-z_]+", e)
    }
    exported = {m.name for m in ran.sidecar.metrics.registry.collect()}
    assert used, "the dashboard queries no sidecar metric"
    assert used <= exported, f"not exported: {sorted(used - exported)}"
    # The panels a platform team asked for: spend and saving, stuck jobs, lag, loop health.
    for needed in (
        "gemini_batch_connector_estimated_cost_usd",
        "gemini_batch_connector_estimated_savings_usd",
        "gemini_batch_connector_oldest_job_created_timestamp_seconds",
        "gemini_batch_connector_consumergroup_lag",
        "gemini_batch_connector_loop_pass_seconds",
    ):
        assert needed in used, needed
