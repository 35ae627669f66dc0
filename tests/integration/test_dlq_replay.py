"""`connector dlq replay` against the real broker: after a fix, dead letters are answered."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

from kafka import KafkaConsumer
from sidecar_harness import ROOT, Topics, collect, sidecar_thread
from waiting import wait_until

from connector.client import RequestPublisher, ResultReader
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer


def prompt(n: int) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": "x" * n}]}]}


def replay(bootstrap: str, topics: Topics, *extra: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "connector",
            "dlq",
            "replay",
            "--bootstrap-servers",
            bootstrap,
            "--dlq-topic",
            topics.dlq,
            "--request-topic",
            topics.requests,
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_replay_after_a_fix_answers_the_dead_lettered_requests(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, publisher: RequestPublisher
) -> None:
    # Too big for the first deployment's limit: dead-lettered (VALIDATION) with an error result.
    for i in range(3):
        publisher.publish(f"big-{i}", "gemini-2.5-flash", prompt(3000), partition=0)
    publisher.publish("ok-0", "gemini-2.5-flash", prompt(10), partition=0)
    publisher.publish_raw(b"\x01 not a request", b"junk", partition=1)  # VALUE_CONVERTER
    publisher.flush()
    strict = topics.settings(kafka_bootstrap, emulator.base_url, max_request_bytes=1000)
    with sidecar_thread(strict) as sidecar:
        got = collect(kafka_bootstrap, topics.results, {"big-0", "big-1", "big-2", "ok-0"}, 90)
        wait_until(lambda: sidecar.stats.dead_lettered == 4, timeout=30, message="4 dead letters")
    assert all(got.latest(f"big-{i}").status is ResultStatus.ERROR for i in range(3))

    # A dry run sends nothing and names what it would replay.
    out = replay(kafka_bootstrap, topics, "--stage", "VALIDATION", "--dry-run")
    assert out.count("would replay") == 3 + 1  # three lines and the summary
    assert f"original={topics.requests}/0@" in out
    before = _count(kafka_bootstrap, topics.requests)
    assert before == 5

    # The fix: a larger limit. Replay only the VALIDATION dead letters, not the junk record.
    out = replay(kafka_bootstrap, topics, "--stage", "VALIDATION")
    assert "replayed 3" in out
    assert _count(kafka_bootstrap, topics.requests) == before + 3
    fixed = topics.settings(kafka_bootstrap, emulator.base_url, max_request_bytes=100_000)
    big = {"big-0", "big-1", "big-2"}
    ok: dict[str, Any] = {}
    reader = ResultReader(kafka_bootstrap, topics.results)
    try:
        with sidecar_thread(fixed):

            def answered() -> bool:
                for _, r in reader.poll(0.5):
                    if r.request_id in big and r.status is ResultStatus.OK:
                        ok[r.request_id] = r
                return set(ok) == big

            wait_until(answered, timeout=90, message=lambda: f"OK answers, have {sorted(ok)}")
    finally:
        reader.close()
    # Provenance: the replayed records say where they came from.
    replayed = [
        r
        for r in _records(kafka_bootstrap, topics.requests)
        if any(k == "connector.replay.original" for k, _ in r.headers)
    ]
    assert sorted(r.key for r in replayed) == [b"big-0", b"big-1", b"big-2"]
    for rec in replayed:
        headers = dict(rec.headers)
        assert headers["connector.replay.original"].startswith(f"{topics.requests}/0@".encode())
        assert headers["connector.replay.dlq"].startswith(topics.dlq.encode())
        assert not any(k.startswith("__connect.errors.") for k in headers)


def _records(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    try:
        from kafka import TopicPartition

        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        end = consumer.end_offsets(tps)
        out: list[Any] = []
        wait_until(
            lambda: (
                out.extend(r for rs in consumer.poll(300).values() for r in rs)
                or all(consumer.position(tp) >= end[tp] for tp in tps)
            ),
            timeout=30,
            message="read to the end",
        )
        return sorted(out, key=lambda r: (r.partition != 0, r.partition, r.offset))
    finally:
        consumer.close()


def _count(bootstrap: str, topic: str) -> int:
    return len(_records(bootstrap, topic))
