"""Where a keyed record goes: murmur2 of the key, as Java's default partitioner places it.

The sidecar computes a result's partition itself and passes it explicitly, so the Kafka
client's own (for kafka-python, pure-Python) partitioner does not run per record. The
placement is the one every Kafka client agrees on for keyed records: Java's
`Utils.murmur2`, kafka-python's `DefaultPartitioner`, librdkafka's `murmur2_random`; the
tests check it against kafka-python's and, on a real broker, against both clients.
"""

from __future__ import annotations

import struct

_M = 0x5BD1E995
_SEED = 0x9747B28C
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Java's `org.apache.kafka.common.utils.Utils.murmur2`, as an unsigned 32-bit int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for (word,) in struct.iter_unpack("<I", data[:whole]):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    rest = length & 3
    if rest:
        if rest == 3:
            h ^= data[whole + 2] << 16
        if rest >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_for(key: bytes, partitions: int) -> int:
    """The partition of a keyed record among `partitions` (Java's `toPositive(murmur2) % n`)."""
    if partitions < 1:
        raise ValueError(f"a topic has at least one partition, not {partitions}")
    return (murmur2(key) & 0x7FFFFFFF) % partitions
