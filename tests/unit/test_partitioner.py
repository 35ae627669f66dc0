"""The sidecar's own placement of keyed records is the one every Kafka client agrees on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from connector.core.partitioner import murmur2, partition_for


@given(st.binary(max_size=64))
def test_murmur2_is_kafka_pythons(data: bytes) -> None:
    assert murmur2(data) == kafka_python_murmur2(data) & 0xFFFFFFFF


@given(st.binary(min_size=1, max_size=40), st.integers(min_value=1, max_value=500))
def test_partition_is_kafka_pythons_default_partitioner(key: bytes, n: int) -> None:
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:
        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, _topic: str) -> set[int]:
            return set(range(n))

        def available_partitions_for_topic(self, _topic: str) -> set[int]:
            return set(range(n))

    expected = DefaultPartitioner().partition("t", key, key, b"v", b"v", Cluster())
    assert partition_for(key, n) == expected


def test_java_reference_values() -> None:
    """Values of Java's Utils.murmur2 (as signed ints, from the Kafka client's own tests)."""
    assert murmur2(b"21") & 0x7FFFFFFF == (-973932308 & 0x7FFFFFFF)
    assert murmur2(b"foobar") & 0x7FFFFFFF == (-790332482 & 0x7FFFFFFF)
    assert murmur2(b"a-little-bit-long-string") & 0x7FFFFFFF == (-985981536 & 0x7FFFFFFF)
    assert murmur2(b"") == 275646681


def test_no_partitions_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one partition"):
        partition_for(b"k", 0)
