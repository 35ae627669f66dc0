"""The three request wire formats, told apart per record by their first bytes (pure).

- **Avro single-object encoding** (`C3 01` + 8-byte fingerprint + body): self-describing,
  no registry; what the sidecar has always read and writes by default.
- **Confluent wire format** (`00` + 4-byte big-endian schema id + Avro body): what
  KafkaAvroSerializer and every Confluent-compatible serializer write; the writer schema is
  fetched from the registry by id (through a lookup the caller injects, cached there).
- **JSON**: the request event's fields as one JSON object (from kcat, a REST proxy or a
  service with no Avro library), validated exactly like the Avro path afterwards.

Mixed producers on one topic work because every record says which it is. Anything else is
undecodable and goes to the dead-letter topic.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import StrEnum
from typing import Any

import msgspec
import orjson

from connector.core.codec import Codec
from connector.core.records import Kind, RequestEvent, ResultEvent
from connector.errors import DecodeError

__all__ = [
    "CONFLUENT_MAGIC",
    "SINGLE_OBJECT_MAGIC",
    "Format",
    "RequestDecoder",
    "ResultEncoder",
    "confluent_frame",
    "confluent_schema_id",
    "decode_json_request",
    "detect",
    "encode_json_result",
    "result_json_object",
]

SINGLE_OBJECT_MAGIC = b"\xc3\x01"
CONFLUENT_MAGIC = 0
_CONFLUENT_HEADER = 5
_WHITESPACE = b" \t\r\n"


class Format(StrEnum):
    SINGLE_OBJECT = "single_object"
    CONFLUENT = "confluent"
    JSON = "json"


def detect(data: bytes) -> Format | None:
    """Which format a record is in, from its first bytes; None when it is none of them."""
    if data[:2] == SINGLE_OBJECT_MAGIC:
        return Format.SINGLE_OBJECT
    if len(data) > _CONFLUENT_HEADER and data[0] == CONFLUENT_MAGIC:
        return Format.CONFLUENT
    stripped = data.lstrip(_WHITESPACE)
    if stripped[:1] == b"{":
        return Format.JSON
    return None


def confluent_schema_id(data: bytes) -> int:
    """The registry schema id of a Confluent-framed record (the 4 bytes after the 00)."""
    if len(data) <= _CONFLUENT_HEADER or data[0] != CONFLUENT_MAGIC:
        raise DecodeError("record is not in the Confluent wire format (00 + 4-byte schema id)")
    (schema_id,) = struct.unpack_from(">I", data, 1)
    return int(schema_id)


def confluent_frame(schema_id: int, body: bytes) -> bytes:
    """`00`, the schema id as 4 big-endian bytes, then the Avro body."""
    return b"\x00" + struct.pack(">I", schema_id) + body


class _JsonRequest(msgspec.Struct, forbid_unknown_fields=True):
    """The request event as JSON: the Avro schema's fields, same names, same defaults."""

    request_id: str
    model: str
    body: str | dict[str, Any]
    """The Gemini REST request: JSON text as in Avro, or the object itself (friendlier)."""
    kind: str = "generate"
    group: str = ""
    priority: int = 0
    deadline_ms: int | None = None
    metadata: dict[str, str] = msgspec.field(default_factory=dict)
    created_ms: int = 0


_JSON_DECODER = msgspec.json.Decoder(_JsonRequest)
_KINDS = {k.value: k for k in Kind}


def decode_json_request(data: bytes) -> RequestEvent:
    """A JSON request record as a `RequestEvent`; `DecodeError` names what is wrong."""
    try:
        raw = _JSON_DECODER.decode(data)
    except msgspec.ValidationError as exc:
        raise DecodeError(f"JSON request event: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise DecodeError(f"record is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise DecodeError("JSON request event is nested too deeply") from exc
    kind = _KINDS.get(raw.kind)
    if kind is None:
        raise DecodeError(
            f"JSON request event: kind must be 'generate' or 'embed', got {raw.kind!r}"
        )
    try:
        body = raw.body if isinstance(raw.body, str) else orjson.dumps(raw.body).decode()
    except (TypeError, RecursionError) as exc:  # orjson refuses nesting past 255 levels
        raise DecodeError(f"JSON request event: body cannot be re-encoded: {exc}") from exc
    return RequestEvent(
        raw.request_id,
        raw.model,
        kind,
        body,
        raw.group,
        raw.priority,
        raw.deadline_ms,
        raw.metadata,
        raw.created_ms,
    )


def result_json_object(r: ResultEvent) -> dict[str, Any]:
    """The result event as a JSON object: the Avro schema's field names and values."""
    err, usage = r.error, r.usage
    return {
        "request_id": r.request_id,
        "status": r.status.value,
        "model": r.model,
        "kind": r.kind.value,
        "response_json": r.response_json,
        "error": None
        if err is None
        else {"code": err.code, "status": err.status, "message": err.message},
        "metadata": r.metadata,
        "batch_job": r.batch_job,
        "attempt": r.attempt,
        "usage": None
        if usage is None
        else {
            "prompt_tokens": usage.prompt_tokens,
            "candidates_tokens": usage.candidates_tokens,
            "total_tokens": usage.total_tokens,
        },
        "request_created_ms": r.request_created_ms,
        "completed_ms": r.completed_ms,
        "source_partition": r.source_partition,
        "source_offset": r.source_offset,
        "cost_usd": r.cost_usd,
    }


def encode_json_result(r: ResultEvent) -> bytes:
    return orjson.dumps(result_json_object(r))


class RequestDecoder:
    """Decodes a request record in whichever of the three formats it is in.

    `schema_by_id` fetches a Confluent writer schema from the registry (cached by the
    caller); it raises `RegistryUnavailable` for an outage (the record must wait, never be
    dead-lettered for a transient error) and `DecodeError` for an unknown id.
    """

    def __init__(self, codec: Codec, schema_by_id: Callable[[int], Any] | None = None) -> None:
        self._codec = codec
        self._schema_by_id = schema_by_id

    def decode(self, data: bytes) -> RequestEvent:
        fmt = detect(data)
        if fmt is Format.SINGLE_OBJECT:
            return self._codec.decode_request(data)
        if fmt is Format.CONFLUENT:
            schema_id = confluent_schema_id(data)
            if self._schema_by_id is None:
                raise DecodeError(
                    f"record is in the Confluent wire format (schema id {schema_id}) but no "
                    "schema registry is configured (CONNECTOR_SCHEMA_REGISTRY_URL)"
                )
            schema = self._schema_by_id(schema_id)
            return self._codec.decode_request_body(data[_CONFLUENT_HEADER:], schema)
        if fmt is Format.JSON:
            return decode_json_request(data)
        head = bytes(data[:2]).hex(" ").upper() or "empty"
        raise DecodeError(
            f"record is in none of the request formats (Avro single-object C3 01, Confluent 00 "
            f"+ schema id, or a JSON object); it starts with {head}"
        )


class ResultEncoder:
    """Encodes results in the configured format (the Confluent id comes from the registry)."""

    def __init__(self, fmt: Format, codec: Codec, schema_id: int | None = None) -> None:
        if fmt is Format.CONFLUENT and schema_id is None:
            raise ValueError("the Confluent result format needs the registered schema id")
        self.format = fmt
        self._codec = codec
        self._schema_id = schema_id

    def encode(self, r: ResultEvent) -> bytes:
        if self.format is Format.SINGLE_OBJECT:
            return self._codec.encode_result(r)
        if self.format is Format.JSON:
            return encode_json_result(r)
        assert self._schema_id is not None
        return confluent_frame(self._schema_id, self._codec.encode_result_body(r))
