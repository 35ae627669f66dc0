"""Start-up against a real broker: missing data topics, their creation, and client ids."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from dataclasses import replace

from kafka import KafkaAdminClient
from sidecar_harness import ROOT, Topics, sidecar_thread
from waiting import wait_until

from connector.emulator import EmulatorServer


def _describe(admin: KafkaAdminClient, topic: str) -> tuple[int, int] | None:
    """(partitions, replicas of partition 0), or None if the broker has no such topic."""
    (t,) = admin.describe_topics([topic])
    if t.get("error_code"):
        return None
    parts = t["partitions"]
    return len(parts), len(parts[0].get("replica_nodes", parts[0].get("replicas")) or [])


def _member_client_ids(admin: KafkaAdminClient, group: str) -> list[str]:
    """The client.id of each member of `group`, as the group coordinator knows it (none
    while the coordinator of a group this new is not found yet: a retriable error)."""
    from kafka.errors import KafkaError

    try:
        described = admin.describe_groups([group])[group]
    except KafkaError as exc:
        if not getattr(exc, "retriable", False):
            raise
        return []
    return [str(m["client_id"]) for m in described.get("members") or []]


def test_a_missing_request_topic_stops_the_start_naming_it(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, admin: KafkaAdminClient
) -> None:
    """A typo in CONNECTOR_REQUEST_TOPIC exits 2 with the name; no topic is created."""
    typo = f"{topics.requests}-typo"
    env = topics.env(kafka_bootstrap, emulator.base_url, CONNECTOR_REQUEST_TOPIC=typo)
    proc = subprocess.run(
        [sys.executable, "-m", "connector", "run"],
        env=env,
        cwd=str(ROOT),
        capture_output=True,
        timeout=120,
        check=False,
    )
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == 2, err[-2000:]
    assert repr(typo) in err
    assert "CONNECTOR_CREATE_TOPICS" in err
    assert _describe(admin, typo) is None


def test_create_topics_creates_them_with_the_given_partitions_and_names_each_client(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, admin: KafkaAdminClient
) -> None:
    """CONNECTOR_CREATE_TOPICS=true: every missing data topic gets CONNECTOR_TOPIC_PARTITIONS
    partitions and min(3, brokers) replicas; the group member's client.id names the group,
    the replica and its role, as the broker sees it."""
    fresh = uuid.uuid4().hex[:8]
    names = Topics(
        requests=f"created-req-{fresh}",
        results=f"created-res-{fresh}",
        dlq=f"created-dlq-{fresh}",
        group=topics.group,
    )
    s = replace(
        names.settings(kafka_bootstrap, emulator.base_url),
        create_topics=True,
        topic_partitions=3,
    )
    with sidecar_thread(s) as sidecar:
        wait_until(lambda: sidecar.running, timeout=60, message="sidecar never ran")
        for topic in (names.requests, names.results, names.dlq):
            assert _describe(admin, topic) == (3, 1), topic

        wait_until(
            lambda: _member_client_ids(admin, names.group) != [],
            timeout=60,
            message="the sidecar never joined its group",
        )
        assert _member_client_ids(admin, names.group) == [
            f"{names.group}.{socket.gethostname()}.consumer"
        ]


def test_a_consumer_override_reaches_the_broker(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, admin: KafkaAdminClient
) -> None:
    """consumer.override.client_id (CONNECTOR_KAFKA_CONSUMER_OVERRIDE_CLIENT_ID) is what the
    group coordinator sees for the member, over the derived id."""
    s = replace(
        topics.settings(kafka_bootstrap, emulator.base_url),
        kafka_extra={"consumer.override.client_id": "custom-consumer"},
    )
    with sidecar_thread(s) as sidecar:
        wait_until(lambda: sidecar.running, timeout=60, message="sidecar never ran")

        wait_until(
            lambda: _member_client_ids(admin, topics.group) == ["custom-consumer"], timeout=60
        )
