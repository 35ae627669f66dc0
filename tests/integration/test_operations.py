"""Operating a real sidecar process: /metrics, /status, the HTML page in headless Chromium,
`connector status` from the ledger, and no secret in any log line, page or metric."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sidecar_harness import ROOT, Topics, collect, running, spawn, status_of
from waiting import wait_until

from connector.client import RequestPublisher
from connector.emulator import EmulatorConfig, EmulatorServer

FAKE_KEY = "AIza" + "FAKE-operations-test-key-0123456789"  # built, not a literal key
URL_PASSWORD = "s3cretUrlPass"
SASL_PASSWORD = "s3cretSaslPass"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Jobs stay in flight for a few seconds, long enough to look at them."""
    return EmulatorConfig(queue_delay_s=0.5, processing_delay_s=45.0, per_request_delay_s=0.0)


def _chromium(url: str, tmp: Path, *mode: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp / 'chromium-profile'}",
    ]
    return subprocess.run(
        [CHROMIUM, *flags, *mode, url], capture_output=True, text=True, timeout=90, check=True
    )


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


@pytest.mark.slow
def test_operations_of_a_running_sidecar(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    base_url = emulator.base_url.replace("http://", f"http://ops:{URL_PASSWORD}@")
    env = topics.env(
        kafka_bootstrap,
        base_url,
        GEMINI_API_KEY=FAKE_KEY,
        CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD=SASL_PASSWORD,
        CONNECTOR_LOG_FORMAT="json",
    )
    log_path = tmp_path / "sidecar.log"
    ids = {f"ops-{i}" for i in range(6)}
    for i, rid in enumerate(sorted(ids)):
        text = "EMULATOR_FAIL" if i == 0 else f"question {i}"
        publisher.publish(
            rid,
            "gemini-2.5-flash",
            {"contents": [{"role": "user", "parts": [{"text": text}]}]},
            partition=i % 2,
        )
    publisher.flush()
    proc = spawn(env, log_path)
    port = proc.health_port  # type: ignore[attr-defined]
    base = f"http://127.0.0.1:{port}"
    pages: list[str] = []
    try:
        wait_until(lambda: running(proc), timeout=60, message="sidecar ready")
        wait_until(
            lambda: (
                len([j for j in status_of(proc).get("jobs", []) if j["state"] == "SUBMITTED"]) == 2
            ),
            timeout=30,
            message="two submitted jobs in /status",
        )
        doc = status_of(proc)
        pages.append(json.dumps(doc))
        assert doc["connector"]["state"] == "RUNNING"
        assert doc["connector"]["worker_id"].endswith(f":{port}")
        assert sorted(t["id"] for t in doc["tasks"]) == [0, 1]
        assert doc["partitions"] == [0, 1]
        assert {"open_requests", "intents", "submitted", "consumed"} <= set(doc)

        # The HTML page in headless Chromium: job rows in the DOM, and a screenshot.
        if CHROMIUM is None:
            pytest.fail("chromium is not installed (apt-get install -y chromium)")
        dom = _chromium(base + "/", tmp_path, "--dump-dom").stdout
        pages.append(dom)
        assert dom.count('class="job"') == 2, dom[:2000]
        assert "RUNNING" in dom
        shot = tmp_path / "status.png"
        _chromium(base + "/", tmp_path, f"--screenshot={shot}", "--window-size=1280,900")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        artifacts = os.environ.get("CONNECTOR_TEST_ARTIFACTS")
        if artifacts:
            shutil.copy(shot, Path(artifacts) / "status-page.png")

        # `connector status` reads the ledger topic itself: no sidecar needed.
        cli = subprocess.run(
            [sys.executable, "-m", "connector", "status", "--json"],
            env=env,
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        listed = json.loads(cli.stdout)["jobs"]
        assert sorted(j["partition"] for j in listed) == [0, 1]
        assert all(j["state"] == "SUBMITTED" and j["requests"] == 3 for j in listed)
        assert all(j["progress"] is None for j in listed)  # no --gemini
        with_gemini = subprocess.run(
            [sys.executable, "-m", "connector", "status", "--gemini"],
            env={**env, "COLUMNS": "200"},
            cwd=str(ROOT),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        pages.append(with_gemini.stdout + with_gemini.stderr)
        assert with_gemini.stdout.count("batches/") == 2
        assert with_gemini.stdout.count("/3 (") == 2  # batchStats progress of each job
        # --watch: live refresh with progress bars until interrupted (Ctrl-C exits 0).
        watch = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "connector",
                "status",
                "--watch",
                "--gemini",
                "--interval",
                "0.5",
            ],
            env={**env, "COLUMNS": "200"},
            cwd=str(ROOT),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        chunks: list[str] = []
        assert watch.stdout is not None
        reader = threading.Thread(
            target=lambda: chunks.extend(iter(watch.stdout.readline, "")),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        try:
            # Off a terminal the watch prints every refresh: interrupt it after two.
            wait_until(
                lambda: "".join(chunks).count("in-flight jobs: 2") >= 2,
                timeout=60,
                message=lambda: f"two refreshes; got {''.join(chunks)[-500:]!r}",
            )
            watch.send_signal(signal.SIGINT)
            assert watch.wait(timeout=30) == 0
        finally:
            if watch.poll() is None:
                watch.kill()
        reader.join(timeout=10)
        watched = "".join(chunks)
        pages.append(watched)
        assert "in-flight jobs: 2" in watched
        assert watched.count("batches/") >= 2

        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
        assert got.latest("ops-1").cost_usd is not None
        assert got.latest("ops-1").cost_usd > 0

        def scraped() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return _samples(httpx2.get(base + "/metrics", timeout=5).text)

        wait_until(
            lambda: scraped().get(("gemini_batch_connector_jobs_finished_total", frozenset())) == 2,
            timeout=30,
            message="jobs finished in /metrics",
        )
        text = httpx2.get(base + "/metrics", timeout=5).text
        pages.append(text)
        m = _samples(text)
        ok = frozenset({("status", "OK"), ("reason", "")})
        err = frozenset({("status", "ERROR"), ("reason", "INVALID_ARGUMENT")})
        flash = frozenset({("model", "gemini-2.5-flash")})
        assert m[("gemini_batch_connector_requests_consumed_total", frozenset())] == 6
        assert m[("gemini_batch_connector_results_total", ok)] == 5
        assert m[("gemini_batch_connector_results_total", err)] == 1
        assert m[("gemini_batch_connector_estimated_cost_usd_total", flash)] > 0
        assert m[("gemini_batch_connector_estimated_savings_usd_total", flash)] > 0
        assert (
            m[("gemini_batch_connector_job_age_seconds_count", frozenset({("state", "SUCCEEDED")}))]
            == 2
        )
        assert m[("gemini_batch_connector_inflight_jobs", frozenset({("state", "SUBMITTED")}))] == 0
        assert m[("gemini_batch_connector_assigned_partitions", frozenset())] == 2
        for p in ("0", "1"):
            lag = {"consumergroup": topics.group, "topic": topics.requests, "partition": p}
            assert m[("gemini_batch_connector_consumergroup_lag", frozenset(lag.items()))] == 0
        assert m[("gemini_batch_connector_loop_pass_seconds_count", frozenset())] > 0
        assert (
            m[
                (
                    "gemini_batch_connector_provider_call_seconds_count",
                    frozenset({("call", "create")}),
                )
            ]
            == 2
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0
    log = log_path.read_text()
    lines = [line for line in log.splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON object
    transitions = [p for p in parsed if p.get("event") == "job transition"]
    assert {t["state"] for t in transitions} >= {"INTENT", "SUBMITTED", "SUCCEEDED", "CLOSED"}
    for t in transitions:
        assert {"job_id", "partition", "model", "batch_job", "requests", "attempt"} <= set(t)
    everything = log + "\n".join(pages)
    for secret in (FAKE_KEY, URL_PASSWORD, SASL_PASSWORD):
        assert secret not in everything, f"{secret!r} leaked"
    assert "ops:***@" in log  # the endpoint is logged, its credentials masked
