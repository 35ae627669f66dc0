"""Kafka compression codecs: every one a producer elsewhere may use must be readable here.

Other teams' producers choose the codec, not us: franz-go compresses with snappy by default,
Java and Kafka Connect shops set lz4 or zstd. kafka-python decodes them only when their
libraries import (`python-snappy`, `lz4`, `zstandard`); without them one compressed batch
makes every poll of the partition raise, so the replica would back off and answer nothing.
The package depends on all three, and start-up checks they import, so a broken install is a
clear error before any record is read, not a silent stall.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kafka import codec as _codec

from connector.errors import ConfigError

CODECS: dict[str, Callable[[], bool]] = {
    "gzip": _codec.has_gzip,
    "snappy": _codec.has_snappy,
    "lz4": _codec.has_lz4,
    "zstd": _codec.has_zstd,
}
"""Kafka's compression codecs and kafka-python's check that each one's library imports."""

_NONE = ("", "none")
"""How Java and librdkafka spell "no compression" (`compression.type=none`)."""


def missing(available: Mapping[str, Callable[[], bool]] = CODECS) -> list[str]:
    """The codecs whose libraries do not import."""
    return [name for name, has in available.items() if not has()]


def check(
    extra: Mapping[str, Any], available: Mapping[str, Callable[[], bool]] = CODECS
) -> dict[str, Any]:
    """The pass-through Kafka settings with `compression_type` checked and normalised.

    Raises ConfigError when a codec's library is missing (records compressed with it could
    not be read) or `compression_type` names no codec. `none` becomes kafka-python's None.
    """
    gone = missing(available)
    if gone:
        raise ConfigError(
            f"Kafka compression codecs {gone} are not available: records compressed with them "
            "by other producers could not be read. Reinstall gemini-batch-connector with its "
            "dependencies (python-snappy, lz4, zstandard)"
        )
    out = dict(extra)
    if "compression_type" not in out:
        return out
    raw = out["compression_type"]
    value = None if raw is None else str(raw).strip().lower()
    if value in _NONE:
        value = None
    if value is not None and value not in available:
        raise ConfigError(
            f"CONNECTOR_KAFKA_COMPRESSION_TYPE={raw!r} is not a Kafka codec: use one of "
            f"none, {', '.join(available)}"
        )
    out["compression_type"] = value
    return out
