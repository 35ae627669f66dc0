"""Transport-neutral request and response objects between the HTTP layer and the service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from .wire import JsonObj, dumps

JSON_TYPE = "application/json; charset=UTF-8"
_CHUNK = 1 << 20


class Body:
    """A request body read at most once, from a stream of known length."""

    def __init__(self, stream: BinaryIO, length: int) -> None:
        self._stream = stream
        self.length = length
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        """Read up to `size` bytes (all remaining when negative)."""
        if self.remaining <= 0:
            return b""
        size = self.remaining if size < 0 else min(size, self.remaining)
        data = self._stream.read(size)
        self.remaining -= len(data)
        if not data:
            self.remaining = 0
        return data

    def read_all(self) -> bytes:
        """The whole body."""
        return self.read(-1)

    def drain(self) -> None:
        """Discard what was not read, so a keep-alive connection stays in sync."""
        while self.remaining > 0 and self.read(_CHUNK):
            pass


@dataclass
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: Body
    origin: str

    def header(self, name: str, default: str = "") -> str:
        """Case-insensitive header lookup."""
        value = self.headers.get(name)
        return default if value is None else value


@dataclass
class Response:
    """What to send back; `file` streams bytes from disk instead of `body`."""

    status: int = 200
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    file: Path | None = None

    @classmethod
    def json(
        cls, obj: JsonObj, status: int = 200, headers: dict[str, str] | None = None
    ) -> Response:
        """A JSON response."""
        return cls(status=status, body=dumps(obj), headers=dict(headers or {}))
