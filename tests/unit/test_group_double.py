"""The group doubles' own rules (connector.testing_group) that the contract suite cannot
reach on a real broker in a unit test's time: session timeouts, new partitions, outages,
crashes. tests/contract pins the rest against the real broker."""

from __future__ import annotations

import pytest

from connector.errors import BrokerUnavailable, CommitFailed, Fenced, ProduceFailed
from connector.testing import ManualClock, MemoryKafka, ScriptedConsumer, harness
from connector.testing_group import ClusterProducer, GroupConsumer, MemoryCluster, outage_guarded


def world(partitions: int = 2) -> tuple[MemoryCluster, ManualClock]:
    kafka = MemoryKafka()
    kafka.create_topic("req", partitions)
    kafka.create_topic("out", 1)
    return MemoryCluster(kafka, "req", session_timeout_s=10.0), ManualClock()


def test_a_member_silent_past_its_session_is_expelled_and_its_partitions_move() -> None:
    cluster, clock = world()
    a = GroupConsumer(cluster, "req", clock)
    b = GroupConsumer(cluster, "req", clock)
    a.poll(0)
    b.poll(0)
    a.poll(0)
    assert a.assignment() == {0}
    assert b.assignment() == {1}
    clock.advance(11)
    cluster.group.heartbeat(b.member_id or "", clock())  # b's heartbeat thread runs; a is frozen
    assert cluster.group.expire(clock()) == [a.member_id]
    b.poll(0)
    assert b.assignment() == {0, 1}
    # a still believes it owns p0 until it polls: its commit is refused meanwhile.
    assert a.assignment() == {0}
    with pytest.raises(CommitFailed):
        a.commit({0: 1})
    a.poll(0)  # rejoins under a new member id: a rebalance, partitions split again
    assert ("revoked", {0}) in a.rebalance_events()
    b.poll(0)
    assert a.assignment() | b.assignment() == {0, 1}
    assert not a.assignment() & b.assignment()


def test_partitions_added_rebalance_the_group() -> None:
    cluster, clock = world(partitions=1)
    a = GroupConsumer(cluster, "req", clock)
    a.poll(0)
    generation = cluster.group.generation
    cluster.group.add_partitions(3)
    a.poll(0)
    assert a.assignment() == {0, 1, 2}
    assert cluster.group.generation == generation + 1


def test_a_transaction_from_an_expelled_member_is_fenced_and_nothing_becomes_visible() -> None:
    cluster, clock = world()
    a = GroupConsumer(cluster, "req", clock)
    a.poll(0)
    txn = ClusterProducer(cluster, "tx")
    cluster.group.expel(a.member_id or "")
    with pytest.raises(Fenced):
        txn.commit_transaction([txn.send("out", b"v", partition=0)], {0: 1}, a)
    assert cluster.kafka.records("out") == []
    assert cluster.kafka.committed == {}


def test_an_outage_fails_every_call_and_every_ack_until_it_ends() -> None:
    cluster, clock = world()
    a = GroupConsumer(cluster, "req", clock)
    a.poll(0)
    producer = ClusterProducer(cluster)
    reads = outage_guarded(cluster.kafka, cluster, "records")
    cluster.down = True
    with pytest.raises(BrokerUnavailable):
        a.poll(0)
    with pytest.raises(BrokerUnavailable):
        a.commit({0: 1})
    with pytest.raises(BrokerUnavailable):
        reads.records("out")
    with pytest.raises(ProduceFailed):
        producer.flush_and_check([producer.send("out", b"v", partition=0)])
    cluster.down = False
    producer.flush_and_check([producer.send("out", b"w", partition=0)])
    assert [r.value for r in reads.records("out")] == [b"w"]


def test_a_crash_loses_what_was_not_acked() -> None:
    cluster, _ = world()
    txn = ClusterProducer(cluster, "tx")
    txn.send("out", b"in flight", partition=0)
    txn.crash()
    successor = ClusterProducer(cluster, "tx")  # the restart fences its predecessor
    successor.commit_transaction([successor.send("out", b"next", partition=0)], {}, None)
    assert [r.value for r in cluster.kafka.records("out")] == [b"next"]
    assert txn.fenced_by_epoch()


def test_the_scripted_consumer_refuses_a_commit_from_a_member_dropped_from_the_group() -> None:
    kafka = MemoryKafka()
    kafka.create_topic("req", 1)
    c = ScriptedConsumer(kafka, "req")
    c.assign(0)
    c.commit({0: 1})
    c.drop_from_group()
    with pytest.raises(CommitFailed):
        c.commit({0: 2})
    assert kafka.committed[("req", 0)] == 1
    c.assign(0)  # rejoined: a fresh generation
    c.commit({0: 2})
    assert kafka.committed[("req", 0)] == 2


def test_a_zombie_sidecar_commits_nothing_while_dropped() -> None:
    h = harness(batch_max_requests=1)
    h.consumer.assign(0)
    h.step()
    h.publish("r-0")
    h.consumer.drop_from_group()
    h.step()  # the INTENT is written, its offset's commit refused (and logged)
    assert h.committed() == 0
