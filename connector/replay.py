"""Re-read requests from the request topic by offset.

The ledger holds offsets, not payloads, so a job's requests are read back when
it is (re)submitted after a restart and when its results are produced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connector.codec import Codec
from connector.errors import DecodeError
from connector.kafka_io import read_partition
from connector.outcomes import Original


def reread(
    topic: str,
    partition: int,
    offsets: Iterable[int],
    codec: Codec,
    bootstrap: str,
    kafka_extra: Mapping[str, Any],
) -> dict[int, Original]:
    """Originals for the wanted offsets; offsets no longer retained are simply absent."""
    wanted = set(offsets)
    if not wanted:
        return {}
    found: dict[int, Original] = {}
    records = read_partition(
        topic, partition, bootstrap, kafka_extra, start=min(wanted), stop=max(wanted) + 1
    )
    for rec in records:
        if rec.offset not in wanted:
            continue
        try:
            event = codec.decode_request(rec.value or b"")
        except DecodeError:
            event = None
        found[rec.offset] = Original(partition, rec.offset, rec.key, event)
    return found
