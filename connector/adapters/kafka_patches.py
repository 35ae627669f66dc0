"""One fix to kafka-python 3.0.12 (pinned), applied once at import: no answer is dropped at EOF.

Why: `KafkaTCPTransport._sock_recv` reads until the socket would block; when the last read
returns EOF it reports only the disconnect, and the bytes read just before it (a complete
response) are thrown away. A broker that refuses a SASL login sends its answer
(SASL_AUTHENTICATION_FAILED, with the reason) and closes the connection right after, so
whether the client learns *why* depended on timing: on a loaded box it mostly saw "socket
disconnected", retried as an outage, and the sidecar waited out CONNECTOR_STARTUP_TIMEOUT_S
instead of saying "wrong password". The fix hands the bytes over first and the disconnect on
the next read, which comes at once (a closed socket is readable).

Applied only to the exact version it was written against; any other version is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kafka
from kafka.net import transport

PATCHED_VERSION = "3.0.12"
_MARK = "_connector_eof_after_data"


def _deliver_data_before_eof(original: Callable[[Any], tuple[bytes, Any]]) -> Any:
    def _sock_recv(self: Any) -> tuple[bytes, Any]:
        pending = getattr(self, _MARK, None)
        if pending is not None:
            setattr(self, _MARK, None)
            return b"", pending
        data, err = original(self)
        if err is not None and data:
            setattr(self, _MARK, err)
            return data, None
        return data, err

    _sock_recv.__wrapped__ = original  # type: ignore[attr-defined]
    return _sock_recv


def apply() -> bool:
    """Patch the transports (idempotent); False when the kafka-python version differs."""
    if kafka.__version__ != PATCHED_VERSION:
        return False
    for cls in (transport.KafkaTCPTransport, transport.KafkaSSLTransport):
        current = cls.__dict__.get("_sock_recv")
        if current is not None and not hasattr(current, "__wrapped__"):
            cls._sock_recv = _deliver_data_before_eof(current)
    return True


apply()
