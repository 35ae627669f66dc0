"""A results file that takes a minute to come in does not hold the loop, nor a shutdown.

The download runs on a background thread (`Ports.background`): meanwhile the replica takes
new requests in and answers them, and SIGTERM ends it within its drain timeout, not when the
download ends. The next process delivers the big job from its ledger entry.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from sidecar_harness import Topics, collect, emulator_stats, spawn, status_of
from waiting import wait_until

from connector.client import RequestPublisher, ResultReader
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow

RATE = 100_000
"""Bytes per second of the emulated download: the 40 x 100 KB results file takes ~40 s."""


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def test_a_slow_results_download_holds_neither_the_loop_nor_a_shutdown(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    emulator.update_config(
        queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0, download_bytes_per_s=RATE
    )
    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="40",
        CONNECTOR_BATCH_INLINE_MAX_BYTES="1000",  # every batch a file job
        CONNECTOR_DRAIN_TIMEOUT_S="5",
    )
    big = {f"big-{i}" for i in range(40)}
    for rid in sorted(big):
        publisher.publish(
            rid, "gemini-2.5-flash", prompt(f"EMULATOR_BIG_100000 {rid}"), partition=0
        )
    publisher.flush()
    reader = ResultReader(kafka_bootstrap, topics.results)
    log = tmp_path / "sidecar.log"
    first = spawn(env, log)
    try:
        wait_until(
            lambda: emulator.stats()["in_flight"].get("files.download", 0) > 0,
            timeout=120,
            message="the big job's results file downloading",
        )
        # While it downloads: a new request is taken in, batched, created and answered.
        publisher.publish("small-0", "gemini-2.5-flash", prompt("small"), partition=1)
        publisher.flush()
        got = collect(kafka_bootstrap, topics.results, {"small-0"}, timeout=60, reader=reader)
        assert emulator.stats()["in_flight"].get("files.download", 0) > 0, "download ended early"
        assert not big & set(got.by_id)
        st = status_of(first)
        assert st["pass_s"]["max"] < 5.0, st["pass_s"]  # no pass waited for the download
        # SIGTERM mid-download: drained and gone long before the download would end.
        stopped = time.monotonic()
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert time.monotonic() - stopped < 20
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    emulator.update_config(download_bytes_per_s=0)
    second = spawn(env, log)
    try:
        got = collect(
            kafka_bootstrap, topics.results, big | {"small-0"}, timeout=120, reader=reader, got=got
        )
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=60) == 0, log.read_text()[-3000:]
        reader.close()
    assert {r.status for rs in got.by_id.values() for r in rs} == {ResultStatus.OK}
    assert all(len(rs) == 1 for rs in got.by_id.values()), "a result was produced twice"
    created = emulator_stats(emulator.base_url)["batches"]["by_display_name"]
    assert set(created.values()) == {1}, f"jobs created twice: {created}"
