"""The ledger against the real broker and the emulator: rewinds below finished jobs, two
deployments on one group id, entries near max.message.bytes, growth and replication."""

from __future__ import annotations

import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from sidecar_harness import Collected, Topics, collect, emulator_stats, sidecar_thread, spawn
from waiting import wait_until

from connector.client import RequestPublisher
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def assert_each_request_in_one_job(got: Collected) -> None:
    """No request id appears in the results of two different batch jobs."""
    jobs = {rid: {r.batch_job for r in rs} for rid, rs in got.by_id.items()}
    twice = {rid: j for rid, j in jobs.items() if len(j) > 1}
    assert not twice, f"requests answered by two jobs (paid twice): {twice}"


def assert_no_display_name_twice(base_url: str) -> None:
    created = Counter(emulator_stats(base_url)["batches"]["by_display_name"])
    assert created, "no job was created at all"
    assert not {n: c for n, c in created.items() if c > 1}


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=60)


def test_finished_job_is_not_batched_again_after_a_crash_and_restart(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    tmp_path: Path,
) -> None:
    """Offset 0 sits in an open batch (its own key) while offsets 1-2 become a job that
    finishes; the commit cannot pass offset 0. SIGKILL, restart: the new process reads from
    offset 0 again. Offsets 1-2 are covered by the DONE entry: skipped, never a second job."""
    publisher.publish("slow-0", "gemini-2.5-flash", prompt("slow"), group="slow", partition=0)
    publisher.publish("fast-1", "gemini-2.5-flash", prompt("f1"), group="fast", partition=0)
    publisher.publish("fast-2", "gemini-2.5-flash", prompt("f2"), group="fast", partition=0)
    publisher.flush()
    log = tmp_path / "sidecar.log"
    env = topics.env(
        kafka_bootstrap,
        emulator.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="2",
        CONNECTOR_BATCH_MAX_WAIT_S="3600",
    )
    first = spawn(env, log)
    try:
        got = collect(kafka_bootstrap, topics.results, {"fast-1", "fast-2"}, timeout=60)
    finally:
        first.kill()  # no drain: the slow batch's offset 0 was never committed
        first.wait(timeout=30)
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 1
    second = spawn(topics.env(kafka_bootstrap, emulator.base_url), log)
    try:
        got = collect(kafka_bootstrap, topics.results, {"fast-1", "fast-2", "slow-0"}, timeout=90)
    finally:
        assert stop(second) == 0, log.read_text()[-3000:]
    assert emulator_stats(emulator.base_url)["batches"]["created_total"] == 2, "paid twice"
    assert_no_display_name_twice(emulator.base_url)
    assert_each_request_in_one_job(got)


@pytest.mark.parametrize("ledger", ["default", "shared"])
def test_two_deployments_on_one_group_id_answer_only_their_own_requests(
    kafka_bootstrap: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    emulator: EmulatorServer,
    ledger: str,
) -> None:
    """Two request topics, one group id. B's jobs are live in the ledger when A joins (and
    rebalances B). Default names give each its own ledger; an explicitly shared ledger is
    safe too, because A skips B's entries. Each result topic holds only its own requests."""
    emulator.update_config(queue_delay_s=3.0)  # B's jobs stay live while A starts
    group = group_factory()
    shared = topic_factory(partitions=2, compact=True) if ledger == "shared" else ""
    deploys = {
        name: Topics(
            requests=topic_factory(partitions=2),
            results=topic_factory(partitions=2),
            dlq=topic_factory(partitions=2),
            group=group,
        )
        for name in ("a", "b")
    }
    settings = {
        name: t.settings(
            kafka_bootstrap, emulator.base_url, batch_max_requests=3, ledger_topic=shared
        )
        for name, t in deploys.items()
    }
    ids: dict[str, set[str]] = defaultdict(set)

    def publish(name: str, n: int) -> None:
        pub = RequestPublisher(kafka_bootstrap, deploys[name].requests)
        try:
            for i in range(n):
                rid = f"{name}-{i}"
                pub.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
                ids[name].add(rid)
            pub.flush()
        finally:
            pub.close()

    publish("b", 6)
    with sidecar_thread(settings["b"]) as b:
        wait_until(lambda: b.stats.jobs_created >= 2, timeout=60, message="B's jobs created")
        publish("a", 6)
        with sidecar_thread(settings["a"]) as a:
            got_a = collect(kafka_bootstrap, deploys["a"].results, ids["a"], timeout=90)
            got_b = collect(kafka_bootstrap, deploys["b"].results, ids["b"], timeout=90)
            foreign = a.stats.ledger_foreign_entries + b.stats.ledger_foreign_entries
        assert {a.s.ledger, b.s.ledger} == (
            {shared} if shared else {f"{group}.{deploys[n].requests}.ledger" for n in ("a", "b")}
        )
    assert set(got_a.by_id) == ids["a"], "A answered requests it does not own"
    assert set(got_b.by_id) == ids["b"], "B answered requests it does not own"
    for got in (got_a, got_b):
        assert all(r.status.value == "OK" for rs in got.by_id.values() for r in rs)
        assert_each_request_in_one_job(got)
    assert_no_display_name_twice(emulator.base_url)
    if shared:
        assert foreign > 0, "the shared ledger held the other deployment's live entries"


def test_interleaved_keys_near_the_ledger_message_limit_never_crash_loop(
    kafka_bootstrap: str,
    topics: Topics,
    topic_factory: Callable[..., str],
    emulator: EmulatorServer,
    publisher: RequestPublisher,
) -> None:
    """Two keys alternate on one partition, so every offset is its own range. The ledger
    takes at most 3,000-byte records; batches seal before their entry could outgrow that."""
    ledger = topic_factory(partitions=2, compact=True, configs={"max.message.bytes": "3000"})
    ids = set()
    for i in range(2400):
        rid = f"il-{i}"
        group = "even" if i % 2 == 0 else "odd"
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), group=group, partition=0)
        ids.add(rid)
    publisher.flush()
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, ledger_topic=ledger, batch_max_wait_s=2.0
    )
    with sidecar_thread(settings) as sidecar:  # asserts on exit that it never crashed
        got = collect(kafka_bootstrap, topics.results, ids, timeout=180)
        created = sidecar.stats.jobs_created
    assert ids <= set(got.by_id)
    assert created > 2
    assert_each_request_in_one_job(got)


def test_ledger_grows_with_the_request_topic_and_is_created_replicated(
    kafka_bootstrap: str,
    admin: Any,
    topic_factory: Callable[..., str],
    group_factory: Callable[[], str],
    emulator: EmulatorServer,
) -> None:
    """A new ledger gets RF min(3, brokers) and min.insync.replicas min(2, RF) (1 and 1 on
    this single-node broker). Partitions added to the request topic: on restart the ledger
    grows to match, and requests on the new partitions are answered."""
    from kafka.admin import ConfigResource, ConfigResourceType

    t = Topics(
        requests=topic_factory(partitions=1),
        results=topic_factory(partitions=1),
        dlq=topic_factory(partitions=1),
        group=group_factory(),
    )
    settings = t.settings(kafka_bootstrap, emulator.base_url)
    pub = RequestPublisher(kafka_bootstrap, t.requests)
    try:
        pub.publish("before-0", "gemini-2.5-flash", prompt("x"), partition=0)
        pub.flush()
        with sidecar_thread(settings):
            collect(kafka_bootstrap, t.results, {"before-0"}, timeout=60)
        ledger = settings.ledger
        (desc,) = admin.describe_topics([ledger])
        assert len(desc["partitions"]) == 1
        assert len(desc["partitions"][0]["replica_nodes"]) == 1
        cfg = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, ledger)])
        values = {k: v.get("value") for k, v in cfg["topic"][ledger].items()}
        assert values["min.insync.replicas"] == "1"
        assert values["cleanup.policy"] == "compact"

        admin.create_partitions({t.requests: 3})
        pub.close()
        pub = RequestPublisher(kafka_bootstrap, t.requests)  # fresh metadata: 3 partitions
        ids = {f"after-{p}" for p in range(3)}
        for p in range(3):
            pub.publish(f"after-{p}", "gemini-2.5-flash", prompt("y"), partition=p)
        pub.flush()
        # The request topic grows again while the sidecar runs (metadata refreshed often).
        running = replace(settings, kafka_extra={"metadata_max_age_ms": 1000})
        with sidecar_thread(running):
            got = collect(kafka_bootstrap, t.results, ids, timeout=90)
            (desc,) = admin.describe_topics([ledger])
            assert len(desc["partitions"]) == 3
            admin.create_partitions({t.requests: 4})
            pub.close()
            pub = RequestPublisher(kafka_bootstrap, t.requests)
            pub.publish("live-3", "gemini-2.5-flash", prompt("z"), partition=3)
            pub.flush()
            got = collect(kafka_bootstrap, t.results, ids | {"live-3"}, timeout=90)
        assert ids | {"live-3"} <= set(got.by_id)
        (desc,) = admin.describe_topics([ledger])
        assert len(desc["partitions"]) == 4
    finally:
        pub.close()
