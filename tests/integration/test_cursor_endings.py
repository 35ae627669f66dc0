"""The delivery cursor against every other path that ends a job, on the real broker (issue 16,
finding 2): one file job is killed mid-delivery (SIGKILL), then its job is cancelled by an
operator, its results file deleted, or the job itself deleted, then a fresh replica takes
over. No request the cursor recorded is answered again: at most the one chunk whose cursor
the kill cut off (duplicate window 1), never the job."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sidecar_harness import ROOT, Collected, Topics, collect, list_jobs, spawn
from waiting import wait_until

from connector.adapters.gemini import Gemini
from connector.client import RequestPublisher, ResultReader
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow

N, CHUNK = 2_000, 20


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def cancel_job(bootstrap: str, topics: Topics, job_id: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "cancel",
            "--job",
            job_id,
            "--reason",
            "after a crash mid-delivery",
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


@pytest.mark.parametrize("event", ["job_cancel", "results_file_gone", "job_deleted"])
def test_an_event_after_a_kill_mid_delivery_answers_no_delivered_request_again(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
    event: str,
) -> None:
    emulator.update_config(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0)
    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS=str(N),
        CONNECTOR_BATCH_MAX_WAIT_S="60",
        CONNECTOR_BATCH_INLINE_MAX_BYTES="1000",  # a file job: results streamed from a file
        CONNECTOR_DELIVERY_CHUNK_REQUESTS=str(CHUNK),
    )
    ids = {f"ce-{i}" for i in range(N)}
    for rid in sorted(ids):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    publisher.flush()
    reader = ResultReader(kafka_bootstrap, topics.results)
    got = Collected()
    log = tmp_path / "sidecar.log"
    first = spawn(env, log)
    try:

        def mid_delivery() -> bool:
            for key, r in reader.poll(0.05):
                got.add(key, r)
            return len(got.by_id) >= 4 * CHUNK

        wait_until(mid_delivery, timeout=120, message="the delivery under way")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    before = set(got.by_id)
    assert len(before) < N, "the delivery ended before the kill: nothing was tested"
    (job,) = list_jobs(emulator.base_url)
    name = job["name"]
    gemini = Gemini("test-key", emulator.base_url, timeout_s=30)
    if event == "job_cancel":
        job_id = job["metadata"]["displayName"].split(":", 1)[1]
        cancel_job(kafka_bootstrap, topics, job_id)
    elif event == "results_file_gone":
        out = gemini.get(name).responses_file
        assert out is not None
        gemini.delete_file(out)
    else:
        gemini.delete_job(name)
    second = spawn(env, log)
    try:
        got = collect(kafka_bootstrap, topics.results, ids, timeout=180, reader=reader, got=got)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
        reader.close()
    twice = {rid for rid, rs in got.by_id.items() if len(rs) > 1}
    assert len(twice) <= CHUNK, f"{len(twice)} answered twice (killed at {len(before)})"
    assert all(len(rs) <= 2 for rs in got.by_id.values())
    statuses = {r.status for rs in got.by_id.values() for r in rs}
    assert statuses == {ResultStatus.OK}, "a delivered request was answered an error"
