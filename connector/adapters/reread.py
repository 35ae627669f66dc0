"""Re-read requests from the request topic by offset.

The ledger holds offsets, not payloads, so a job's requests are read back when
it is (re)submitted after a restart and when its results are produced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from connector.adapters.kafka import read_partition
from connector.core.records import RequestEvent
from connector.core.results import Original
from connector.errors import DecodeError


def reread(
    topic: str,
    partition: int,
    offsets: Iterable[int],
    decode: Callable[[bytes], RequestEvent],
    bootstrap: str,
    kafka_extra: Mapping[str, Any],
) -> dict[int, Original]:
    """Originals for the wanted offsets; offsets no longer retained are simply absent.

    `decode` is the intake's decoder (any request format); a `RegistryUnavailable` from it
    propagates, so the caller retries later instead of answering with DATA_LOSS.
    """
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
            event = decode(rec.value or b"")
        except DecodeError:
            event = None
        found[rec.offset] = Original(partition, rec.offset, rec.key, event)
    return found


class RequestReader:
    """`RequestReaderPort` over the request topic, one short-lived consumer per read."""

    def __init__(
        self,
        topic: str,
        decode: Callable[[bytes], RequestEvent],
        bootstrap: str,
        kafka_extra: Mapping[str, Any],
    ) -> None:
        self._topic = topic
        self._decode = decode
        self._bootstrap = bootstrap
        self._extra = kafka_extra

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        return reread(self._topic, partition, offsets, self._decode, self._bootstrap, self._extra)
