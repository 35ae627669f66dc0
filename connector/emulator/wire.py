"""Wire helpers: Google-style errors, lenient JSON, proto3 field casing and RFC 3339 times."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import orjson

JsonObj = dict[str, Any]

HTTP_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

# gRPC codes used in Operation.error and per-request errors of file outputs.
GRPC_CODE = {
    "CANCELLED": 1,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
}


class ApiError(Exception):
    """An error answered as Google's `{"error": {"code", "message", "status"}}` body."""

    def __init__(
        self,
        code: int,
        message: str,
        status: str | None = None,
        details: list[JsonObj] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or HTTP_STATUS.get(code, "UNKNOWN")
        self.details = details

    def body(self) -> JsonObj:
        """The JSON error envelope."""
        err: JsonObj = {"code": self.code, "message": self.message, "status": self.status}
        if self.details:
            err["details"] = self.details
        return {"error": err}


_CAMEL_RE = re.compile(r"([A-Z])")


_SNAKE: dict[str, str] = {}


def snake(name: str) -> str:
    """`fileName` -> `file_name` (memoized: field names are few and read per request)."""
    out = _SNAKE.get(name)
    if out is None:
        out = _SNAKE[name] = _CAMEL_RE.sub(lambda m: "_" + m.group(1).lower(), name)
    return out


def field(obj: Any, camel: str, default: Any = None) -> Any:
    """Read a proto3 JSON field under its camelCase or snake_case name, as protobuf does."""
    if not isinstance(obj, dict):
        return default
    if camel in obj:
        return obj[camel]
    alt = snake(camel)
    if alt in obj:
        return obj[alt]
    return default


def loads_lenient(data: bytes) -> Any:
    """Parse JSON, also accepting the single-quoted pseudo-JSON of the REST samples.

    Google's front end parses request bodies leniently; `curl -d "{'batch': ...}"` works there.
    """
    if not data.strip():
        return {}
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return orjson.loads(_requote(data.decode("utf-8")))
    except (orjson.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"Invalid JSON payload received. {exc}") from None


def _requote(text: str) -> str:
    """Rewrite single-quoted strings as double-quoted JSON strings."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "'\"":
            j = i + 1
            buf: list[str] = []
            while j < n and text[j] != ch:
                if text[j] == "\\" and j + 1 < n:
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            raw = "".join(buf)
            if ch == "'":
                raw = raw.replace("\\'", "'").replace('"', '\\"')
            out.append('"' + raw + '"')
            i = j + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def rfc3339(ts: float) -> str:
    """Epoch seconds as a Z-normalized RFC 3339 string with 6 fractional digits."""
    moment = dt.datetime.fromtimestamp(ts, tz=dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def dumps(obj: Any) -> bytes:
    """Serialize a response body."""
    return orjson.dumps(obj)
