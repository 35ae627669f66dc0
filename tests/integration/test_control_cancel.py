"""`connector cancel` against the real broker: a running sidecar answers 499 and cancels."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from sidecar_harness import ROOT, Topics, collect, sidecar_thread
from waiting import wait_until

from connector.client import RequestPublisher
from connector.core.records import ResultStatus
from connector.emulator import EmulatorConfig, EmulatorServer
from connector.runner import Sidecar


@pytest.fixture
def emulator_config() -> EmulatorConfig:
    """Jobs that stay RUNNING long enough to be cancelled."""
    return EmulatorConfig(queue_delay_s=0.1, processing_delay_s=3600.0, per_request_delay_s=0.0)


def prompt(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def cancel(bootstrap: str, topics: Topics, *target: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "cancel",
            *target,
            "--reason",
            "operator test",
            "--bootstrap-servers",
            bootstrap,
            "--group-id",
            topics.group,
            "--request-topic",
            topics.requests,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def submitted_jobs(sidecar: Sidecar) -> dict[int, Any]:
    view = sidecar.snapshot.view
    jobs = list(view.jobs) if view is not None else []
    return {j.partition: j for j in jobs if j.state == "SUBMITTED"}


def test_cancel_a_job_and_a_request_of_a_running_sidecar(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    for i in range(3):
        publisher.publish(f"a-{i}", "gemini-2.5-flash", prompt(f"a {i}"), partition=0)
        publisher.publish(f"b-{i}", "gemini-2.5-flash", prompt(f"b {i}"), partition=1)
    publisher.flush()
    settings = topics.settings(kafka_bootstrap, emulator.base_url)
    with sidecar_thread(settings) as sidecar:
        jobs = wait_until(
            lambda: (found := submitted_jobs(sidecar)) and len(found) == 2 and found,
            timeout=60,
            message="two SUBMITTED jobs",
        )
        job_a, job_b = jobs[0], jobs[1]

        out = cancel(kafka_bootstrap, topics, "--job", job_a.job_id)
        assert f"job:{job_a.job_id}" in out
        cancel(kafka_bootstrap, topics, "--request", "b-1")
        wait_until(lambda: sidecar.stats.commands_applied == 2, timeout=60, message="applied")
        # Both cancelled: the successor of the request cancel (the rest of b) may now finish.
        emulator.update_config(processing_delay_s=0.3)
        every = {"a-0", "a-1", "a-2", "b-0", "b-1", "b-2"}
        got = collect(kafka_bootstrap, topics.results, every, 90)

    for rid in ("a-0", "a-1", "a-2", "b-1"):
        (r,) = got.by_id[rid]
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert (r.error.code, r.error.status) == (499, "CANCELLED")
        assert r.error.message.startswith("cancelled by an operator [")
        assert "operator test" not in r.error.message  # the reason is logged, not answered
    for rid in ("b-0", "b-2"):
        assert [r.status for r in got.by_id[rid]] == [ResultStatus.OK]
    for job in (job_a, job_b):
        assert job.provider_job is not None
        state = emulator.service.jobs.get(job.provider_job.removeprefix("batches/")).state
        assert state == "CANCELLED"
    created = emulator.service.call_counts()
    assert created.get("batches.create") == 3  # a, b and b's successor (b/c1): none twice
