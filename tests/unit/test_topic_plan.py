"""Missing data topics: refused by default, created only when asked, with explicit sizes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from connector.core.topics import plan_topics


def test_nothing_missing_means_nothing_to_do() -> None:
    plan = plan_topics([], create=False, partitions=6, replication=0, brokers=1)
    assert plan.error is None
    assert plan.create == ()


def test_a_missing_topic_is_refused_by_name() -> None:
    plan = plan_topics(["llm.reqests"], create=False, partitions=6, replication=0, brokers=3)
    assert plan.error is not None
    assert "'llm.reqests'" in plan.error
    assert "CONNECTOR_CREATE_TOPICS=true" in plan.error
    assert plan.create == ()


def test_every_missing_topic_is_named() -> None:
    plan = plan_topics(["a", "b"], create=False, partitions=6, replication=0, brokers=3)
    assert plan.error is not None
    assert "'a', 'b'" in plan.error


@given(
    missing=st.lists(st.sampled_from(["r", "res", "dlq"]), min_size=1, max_size=3, unique=True),
    partitions=st.integers(1, 50),
    brokers=st.integers(1, 9),
)
def test_creation_uses_the_given_partitions_and_at_most_three_replicas(
    missing: list[str], partitions: int, brokers: int
) -> None:
    plan = plan_topics(missing, create=True, partitions=partitions, replication=0, brokers=brokers)
    assert plan.error is None
    assert plan.create == tuple(missing)
    assert plan.partitions == partitions
    assert plan.replication == min(3, brokers)


def test_explicit_replication_is_used_or_refused_when_too_high() -> None:
    ok = plan_topics(["r"], create=True, partitions=3, replication=2, brokers=2)
    assert (ok.error, ok.replication) == (None, 2)
    bad = plan_topics(["r"], create=True, partitions=3, replication=3, brokers=2)
    assert bad.error is not None
    assert "CONNECTOR_TOPIC_REPLICATION=3" in bad.error
    assert bad.create == ()
