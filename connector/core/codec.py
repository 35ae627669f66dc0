"""Avro single-object encoding for request events, result events and ledger entries.

Wire format (Avro specification, "single-object encoding"): the two bytes
``C3 01``, the 8-byte little-endian CRC-64-AVRO fingerprint of the writer
schema's Parsing Canonical Form, then the Avro binary body. A record therefore
names its own writer schema without a schema registry; the codec knows every
released version (``connector.core.schemas``) and resolves old writers to the
current reader schema, filling defaults. See docs/contract.md.

Schemas are parsed once per ``Codec``; encode and decode are a dict build plus
one fastavro call, so a codec belongs on the hot path.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from connector.core.ledger_writer import LedgerWriter
from connector.core.offsets import Offsets
from connector.core.records import (
    BatchKey,
    DeliveryCursor,
    EntryState,
    ErrorInfo,
    Kind,
    LedgerEntry,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.result_writer import CANONICAL as _FAST_RESULT_SCHEMA
from connector.core.result_writer import write_result
from connector.core.schemas import load_schemas
from connector.errors import DecodeError

__all__ = [
    "MAGIC",
    "MAX_LEDGER_OFFSETS",
    "Codec",
    "offsets_to_ranges",
    "ranges_to_offsets",
    "schema_fingerprint",
]

MAGIC = b"\xc3\x01"
"""The two marker bytes that open every single-object-encoded record."""

_HEADER_LEN = 10  # magic (2) + fingerprint (8)

MAX_LEDGER_OFFSETS = 10_000_000
"""Sanity bound on the offsets one ledger entry may expand to; more means a corrupt record."""

_NAMESPACE = "io.github.geminibatch"
_REQUEST = f"{_NAMESPACE}.RequestEvent"
_RESULT = f"{_NAMESPACE}.ResultEvent"
_LEDGER = f"{_NAMESPACE}.LedgerEntry"
_SCHEMA_FOR = {"request": _REQUEST, "result": _RESULT, "ledger": _LEDGER}

# Enum lookups by wire symbol: a dict hit is cheaper than calling the enum class.
_KINDS = {k.value: k for k in Kind}
_STATUSES = {s.value: s for s in ResultStatus}
_STATES = {s.value: s for s in EntryState}


def schema_fingerprint(schema: dict[str, Any] | list[Any] | str) -> bytes:
    """Return the 8 bytes that identify ``schema`` on the wire (CRC-64-AVRO of its canonical form).

    fastavro renders the 64-bit value as little-endian hex, which is exactly the
    byte order the single-object encoding uses.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _wire_types(schema: Any) -> Any:
    """Return a copy of ``schema`` without ``logicalType`` annotations.

    Our records carry epoch milliseconds as ints; without this, fastavro would
    turn timestamp-millis into datetimes on read (slower, and the wrong type).
    The canonical form, and so the fingerprint, ignores logical types anyway.
    """
    if isinstance(schema, dict):
        return {k: _wire_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [_wire_types(item) for item in schema]
    return schema


@dataclass(frozen=True, slots=True)
class _Reader:
    """How to read one known writer schema: its record name, parsed writer and reader."""

    name: str
    writer: Any
    reader: Any
    """The current parsed schema to resolve into, or None when the writer is current."""


@dataclass(frozen=True, slots=True)
class _Writer:
    header: bytes
    schema: Any


def _attempt(job_id: str, stored: int) -> int:
    """A ledger entry's attempt, 0-based as the schema says, whoever wrote it.

    Sidecar 0.1.0 wrote a fresh job as attempt 1. Every split or retry appends one
    `/` step to the job id and adds one to the attempt, so a 0-based attempt always equals
    the id's depth; a stored value of depth + 1 is such an old entry and is read as depth.
    """
    depth = job_id.count("/")
    return depth if stored == depth + 1 else stored


def offsets_to_ranges(offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Compact offsets into inclusive ``(start, end)`` runs of consecutive values.

    Order is kept (a run only grows by ``end + 1``), so ``ranges_to_offsets``
    restores any sequence exactly; ascending offsets give the fewest runs. An ``Offsets``
    already is runs: they are returned without expanding it.
    """
    if isinstance(offsets, Offsets):
        return list(offsets.ranges())
    ranges: list[tuple[int, int]] = []
    it = iter(offsets)
    try:
        start = end = next(it)
    except StopIteration:
        return ranges
    for offset in it:
        if offset == end + 1:
            end = offset
        else:
            ranges.append((start, end))
            start = end = offset
    ranges.append((start, end))
    return ranges


def ranges_to_offsets(ranges: Iterable[tuple[int, int]]) -> tuple[int, ...]:
    """Expand inclusive ``(start, end)`` runs back into offsets; ``ValueError`` if end < start."""
    out: list[int] = []
    for start, end in ranges:
        if end < start:
            raise ValueError(f"offset range ends before it starts: {start}..{end}")
        out.extend(range(start, end + 1))
    return tuple(out)


class Codec:
    """Encodes and decodes the three records in the Avro single-object encoding.

    Thread-safe after construction as long as ``register`` is not called
    concurrently with decoding (it only adds dictionary entries).
    """

    def __init__(self) -> None:
        self._readers: dict[bytes, _Reader] = {}
        self._current: dict[str, Any] = {}
        self._foreign: dict[str, Any] = {}
        writers: dict[str, _Writer] = {}
        for short, name in _SCHEMA_FOR.items():
            versions = load_schemas(short)
            current = versions[-1]
            parsed_current: Any = parse_schema(_wire_types(current))
            if not isinstance(parsed_current, dict) or parsed_current.get("name") != name:
                raise ValueError(f"avro/{short}: the current schema is not a {name} record")
            self._current[name] = parsed_current
            writers[name] = _Writer(MAGIC + schema_fingerprint(current), parsed_current)
            for schema in versions:
                self.register(schema)
        self._request = writers[_REQUEST]
        self._result = writers[_RESULT]
        self._ledger = writers[_LEDGER]
        # A delivery rewrites its entry per chunk: the offsets array is encoded once per job.
        self._ledger_writer = LedgerWriter(load_schemas("ledger")[-1], self._ledger.header)
        # Results are the per-request hot path: a writer made for the schema, ~2x fastavro.
        self._fast_result = (
            to_parsing_canonical_form(load_schemas("result")[-1]) == _FAST_RESULT_SCHEMA
        )

    def register(self, schema: dict[str, Any]) -> None:
        """Teach the codec one more writer schema of a known record, e.g. an older version.

        Raises ``ValueError`` when the schema is not one of the three records.
        """
        parsed: Any = parse_schema(_wire_types(schema))
        name = parsed.get("name") if isinstance(parsed, dict) else None
        current = self._current.get(name) if isinstance(name, str) else None
        if current is None or not isinstance(name, str):
            known = ", ".join(sorted(self._current))
            raise ValueError(f"cannot register schema {name!r}: not one of {known}")
        fp = schema_fingerprint(schema)
        same = to_parsing_canonical_form(schema) == to_parsing_canonical_form(current)
        self._readers[fp] = _Reader(name, parsed, None if same else current)

    # -- requests ----------------------------------------------------------

    def encode_request(self, ev: RequestEvent) -> bytes:
        """Encode a request event with the current request schema."""
        return self._encode(
            self._request,
            {
                "request_id": ev.request_id,
                "model": ev.model,
                "kind": ev.kind,
                "body": ev.body,
                "group": ev.group,
                "priority": ev.priority,
                "deadline_ms": ev.deadline_ms,
                "metadata": ev.metadata,
                "created_ms": ev.created_ms,
            },
        )

    def decode_request(self, data: bytes) -> RequestEvent:
        """Decode a request event written with any known request schema, else ``DecodeError``."""
        return self._request_event(self._decode(data, _REQUEST))

    def decode_request_body(self, body: bytes, writer_schema: Any) -> RequestEvent:
        """Decode an Avro body written with `writer_schema` (e.g. from a schema registry).

        The writer is resolved against the current request schema, so an older or newer
        compatible writer fills defaults and drops unknown fields; an incompatible or
        foreign schema is a ``DecodeError``. Parsed writers are cached by canonical form.
        """
        parsed = self._foreign_writer(writer_schema)
        buf = BytesIO(body)
        try:
            record: Any = schemaless_reader(buf, parsed, self._current[_REQUEST])
        except Exception as exc:  # fastavro raises many types on bad bytes or schemas
            raise DecodeError(
                f"cannot read RequestEvent body with the registry's writer schema: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if buf.tell() != len(body):
            raise DecodeError(f"{len(body) - buf.tell()} trailing bytes after the Avro record")
        if not isinstance(record, dict):
            raise DecodeError("request body did not decode to a record")
        return self._request_event(record)

    def _foreign_writer(self, schema: Any) -> Any:
        key = to_parsing_canonical_form(schema)
        parsed = self._foreign.get(key)
        if parsed is None:
            try:
                parsed = parse_schema(_wire_types(schema))
            except Exception as exc:
                raise DecodeError(f"the registry's writer schema is not valid Avro: {exc}") from exc
            name = parsed.get("name") if isinstance(parsed, dict) else None
            if name != _REQUEST and (
                not isinstance(name, str) or name.rsplit(".", 1)[-1] != "RequestEvent"
            ):
                raise DecodeError(f"the writer schema is a {name!r}, not a RequestEvent")
            self._foreign[key] = parsed
        return parsed

    def current_schema(self, short: str) -> Any:
        """The current schema of `request`, `result` or `ledger` as JSON (for a registry)."""
        return load_schemas(short)[-1]

    def _request_event(self, d: dict[str, Any]) -> RequestEvent:
        try:
            # Positional: a frozen dataclass's keyword __init__ costs ~1.5 us more on 3.11.
            # Field order is records.py's; the round-trip tests catch any drift.
            return RequestEvent(
                d["request_id"],
                d["model"],
                _KINDS[d["kind"]],
                d["body"],
                d["group"],
                d["priority"],
                d["deadline_ms"],
                d["metadata"],
                d["created_ms"],
            )
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"request event is missing or mistypes a field: {exc!r}") from exc

    # -- results -----------------------------------------------------------

    def encode_result(self, r: ResultEvent) -> bytes:
        """Encode a result event with the current result schema."""
        if self._fast_result:
            return self._result.header + write_result(r)
        return self._encode(self._result, self._result_record(r))

    def encode_result_body(self, r: ResultEvent) -> bytes:
        """The Avro body alone (no single-object header), for the Confluent wire format."""
        if self._fast_result:
            return write_result(r)
        buf = BytesIO()
        schemaless_writer(buf, self._result.schema, self._result_record(r))
        return buf.getvalue()

    @staticmethod
    def _result_record(r: ResultEvent) -> dict[str, Any]:
        err = r.error
        usage = r.usage
        return {
            "request_id": r.request_id,
            "status": r.status,
            "model": r.model,
            "kind": r.kind,
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

    def decode_result(self, data: bytes) -> ResultEvent:
        """Decode a result event written with any known result schema; ``DecodeError`` otherwise."""
        return self._result_event(self._decode(data, _RESULT))

    def decode_result_body(self, body: bytes, writer_schema: Any) -> ResultEvent:
        """A Confluent-framed result's Avro body, written with `writer_schema` (registry)."""
        try:
            parsed = parse_schema(_wire_types(writer_schema))
            record: Any = schemaless_reader(BytesIO(body), parsed, self._current[_RESULT])
        except Exception as exc:  # fastavro raises many types on bad bytes or schemas
            raise DecodeError(f"cannot read ResultEvent body: {type(exc).__name__}: {exc}") from exc
        return self._result_event(record)

    def _result_event(self, d: dict[str, Any]) -> ResultEvent:
        try:
            err = d["error"]
            usage = d["usage"]
            return ResultEvent(
                d["request_id"],
                _STATUSES[d["status"]],
                d["model"],
                _KINDS[d["kind"]],
                d["response_json"],
                None if err is None else ErrorInfo(err["code"], err["status"], err["message"]),
                d["metadata"],
                d["batch_job"],
                d["attempt"],
                None
                if usage is None
                else TokenUsage(
                    usage["prompt_tokens"], usage["candidates_tokens"], usage["total_tokens"]
                ),
                d["request_created_ms"],
                d["completed_ms"],
                d["source_partition"],
                d["source_offset"],
                d["cost_usd"],
            )
        except (KeyError, TypeError) as exc:
            raise DecodeError(f"result event is missing or mistypes a field: {exc!r}") from exc

    # -- ledger ------------------------------------------------------------

    def encode_ledger(self, e: LedgerEntry) -> bytes:
        """Encode a ledger entry with the current ledger schema; offsets go out as ranges
        (encoded once per `Offsets` object: `core.ledger_writer`)."""
        key = e.key
        return self._ledger_writer.write(
            {
                "job_id": e.job_id,
                "partition": key.partition,
                "model": key.model,
                "kind": key.kind,
                "priority": key.priority,
                "group": key.group,
                "attempt": e.attempt,
                "display_name": e.display_name,
                "state": e.state,
                "use_file": e.use_file,
                "est_tokens": e.est_tokens,
                "created_ms": e.created_ms,
                "updated_ms": e.updated_ms,
                "provider_job": e.provider_job,
                "input_file": e.input_file,
                "request_topic": e.request_topic,
                "delivered": None
                if e.delivered is None
                else {
                    "items": e.delivered.items,
                    "scanned": e.delivered.scanned,
                    "last_key": e.delivered.last_key,
                },
            },
            e.offsets,
        )

    def decode_ledger(self, data: bytes) -> LedgerEntry:
        """Decode a ledger entry written with any known ledger schema; ``DecodeError`` otherwise."""
        d = self._decode(data, _LEDGER)
        try:
            runs = d["offsets"]
            total = 0
            for run in runs:  # check before expanding: a corrupt record must not eat memory
                start, end = run["start"], run["end"]
                if end < start:
                    raise DecodeError(f"ledger offset range ends before it starts: {start}..{end}")
                total += end - start + 1
            if total > MAX_LEDGER_OFFSETS:
                raise DecodeError(
                    f"ledger entry expands to {total} offsets (limit {MAX_LEDGER_OFFSETS})"
                )
            return LedgerEntry(
                job_id=d["job_id"],
                key=BatchKey(
                    partition=d["partition"],
                    model=d["model"],
                    kind=_KINDS[d["kind"]],
                    priority=d["priority"],
                    group=d["group"],
                ),
                offsets=Offsets.from_ranges((run["start"], run["end"]) for run in runs),
                attempt=_attempt(d["job_id"], d["attempt"]),
                display_name=d["display_name"],
                state=_STATES[d["state"]],
                use_file=d["use_file"],
                est_tokens=d["est_tokens"],
                created_ms=d["created_ms"],
                updated_ms=d["updated_ms"],
                provider_job=d["provider_job"],
                input_file=d["input_file"],
                request_topic=d["request_topic"],
                delivered=None
                if (c := d["delivered"]) is None
                else DeliveryCursor(c["items"], c["scanned"], c["last_key"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"ledger entry is corrupt: {exc}") from exc

    # -- framing -----------------------------------------------------------

    @staticmethod
    def _encode(writer: _Writer, record: dict[str, Any]) -> bytes:
        buf = BytesIO()
        buf.write(writer.header)
        schemaless_writer(buf, writer.schema, record)
        return buf.getvalue()

    def _decode(self, data: bytes, expected: str) -> dict[str, Any]:
        """Check the header, find the writer schema and read the body into a dict."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"expected bytes, got {type(data).__name__}")
        size = len(data)
        if size < _HEADER_LEN:
            raise DecodeError(
                f"record is {size} bytes, shorter than the 10-byte single-object header"
            )
        if data[:2] != MAGIC:
            raise DecodeError(
                f"record does not start with the Avro single-object marker C3 01 "
                f"(got {bytes(data[:2]).hex(' ').upper()}); is it JSON or Confluent-framed?"
            )
        fp = bytes(data[2:_HEADER_LEN])
        reader = self._readers.get(fp)
        if reader is None:
            raise DecodeError(
                f"unknown writer schema fingerprint {fp.hex()}: written with a schema this "
                f"sidecar does not ship (newer producer? upgrade the sidecar first)"
            )
        if reader.name != expected:
            raise DecodeError(
                f"record is a {reader.name.rsplit('.', 1)[-1]}, "
                f"expected a {expected.rsplit('.', 1)[-1]}"
            )
        buf = BytesIO(data)
        buf.seek(_HEADER_LEN)
        try:
            record: Any = schemaless_reader(buf, reader.writer, reader.reader)
        except Exception as exc:  # fastavro raises many types on bad bytes; one error leaves here
            raise DecodeError(
                f"cannot read {expected.rsplit('.', 1)[-1]} body: {type(exc).__name__}: {exc}"
            ) from exc
        if buf.tell() != size:
            raise DecodeError(f"{size - buf.tell()} trailing bytes after the Avro record")
        if not isinstance(record, dict):
            raise DecodeError(f"{expected} body did not decode to a record")
        return record
