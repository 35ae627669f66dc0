"""The three request formats, told apart per record; results in the configured format."""

from __future__ import annotations

import contextlib
import copy
import io
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.codec import Codec
from connector.core.formats import (
    Format,
    RequestDecoder,
    ResultEncoder,
    confluent_frame,
    confluent_schema_id,
    decode_json_request,
    detect,
)
from connector.core.records import ErrorInfo, Kind, RequestEvent, ResultEvent, ResultStatus
from connector.core.schemas import load_schemas
from connector.emulator.config import EmulatorConfig
from connector.errors import DecodeError, RegistryUnavailable
from connector.testing import harness

CODEC = Codec()
BODY = {"contents": [{"role": "user", "parts": [{"text": "Привет, мир"}]}]}
EVENT = RequestEvent(
    "req-1",
    "gemini-2.5-flash",
    Kind.GENERATE,
    orjson.dumps(BODY).decode(),
    "g",
    2,
    None,
    {"tenant": "acme"},
    123,
)


def request_schema() -> dict[str, Any]:
    return copy.deepcopy(load_schemas("request")[-1])


def avro_body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(schema), record)
    return buf.getvalue()


def record_of(ev: RequestEvent) -> dict[str, Any]:
    return {
        "request_id": ev.request_id,
        "model": ev.model,
        "kind": ev.kind.value,
        "body": ev.body,
        "group": ev.group,
        "priority": ev.priority,
        "deadline_ms": ev.deadline_ms,
        "metadata": ev.metadata,
        "created_ms": ev.created_ms,
    }


# -- detection ----------------------------------------------------------------------------


def test_detect_each_format_by_its_first_bytes() -> None:
    assert detect(CODEC.encode_request(EVENT)) is Format.SINGLE_OBJECT
    assert detect(confluent_frame(7, b"\x02x")) is Format.CONFLUENT
    assert detect(b'{"request_id": "x"}') is Format.JSON
    assert detect(b'  \n{"request_id": "x"}') is Format.JSON
    for junk in (b"", b"\x00", b"\x00\x00\x00\x00\x01", b"hello", b"[1, 2]", b"\xc3"):
        assert detect(junk) is None, junk


# -- JSON ---------------------------------------------------------------------------------


def test_json_request_with_every_field_equals_the_avro_event() -> None:
    raw = orjson.dumps({**record_of(EVENT), "body": BODY})
    assert decode_json_request(raw) == EVENT
    as_text = orjson.dumps(record_of(EVENT))  # body as JSON text, exactly like Avro
    assert decode_json_request(as_text) == EVENT


def test_json_request_defaults_match_the_schema() -> None:
    ev = decode_json_request(b'{"request_id": "a", "model": "m", "body": {"contents": []}}')
    assert (ev.kind, ev.group, ev.priority, ev.deadline_ms, ev.metadata, ev.created_ms) == (
        Kind.GENERATE,
        "",
        0,
        None,
        {},
        0,
    )


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b'{"model": "m", "body": "{}"}', "request_id"),
        (b'{"request_id": "a", "model": "m", "body": "{}", "extra": 1}', "extra"),
        (b'{"request_id": "a", "model": "m", "body": "{}", "kind": "chat"}', "kind"),
        (b'{"request_id": 5, "model": "m", "body": "{}"}', "request_id"),
        (b'{"request_id": "a", "model": "m", "body": "{}", "metadata": {"k": 1}}', "metadata"),
        (b'{"request_id": "a", "model": "m", "body": "{}"', "JSON"),
    ],
)
def test_bad_json_requests_say_what_is_wrong(raw: bytes, words: str) -> None:
    with pytest.raises(DecodeError, match=words):
        decode_json_request(raw)


# -- Confluent ----------------------------------------------------------------------------


def test_confluent_frame_round_trip() -> None:
    framed = confluent_frame(258, b"body")
    assert framed[:5] == b"\x00\x00\x00\x01\x02"
    assert confluent_schema_id(framed) == 258


def test_confluent_request_with_our_schema() -> None:
    schema = request_schema()
    data = confluent_frame(11, avro_body(schema, record_of(EVENT)))
    seen: list[int] = []

    def lookup(schema_id: int) -> Any:
        seen.append(schema_id)
        return schema

    assert RequestDecoder(CODEC, lookup).decode(data) == EVENT
    assert seen == [11]


def test_confluent_request_from_an_older_writer_gets_defaults() -> None:
    """A producer on an older schema (no group/priority/metadata): evolution fills defaults."""
    old = request_schema()
    old["fields"] = [
        f for f in old["fields"] if f["name"] in ("request_id", "model", "kind", "body")
    ]
    rec = {
        k: v for k, v in record_of(EVENT).items() if k in ("request_id", "model", "kind", "body")
    }
    ev = RequestDecoder(CODEC, lambda _: old).decode(confluent_frame(3, avro_body(old, rec)))
    assert (ev.request_id, ev.body, ev.group, ev.priority, ev.metadata) == (
        "req-1",
        EVENT.body,
        "",
        0,
        {},
    )


def test_confluent_request_from_a_newer_writer_drops_unknown_fields() -> None:
    new = request_schema()
    new["fields"].append({"name": "trace_id", "type": "string", "default": ""})
    rec = {**record_of(EVENT), "trace_id": "t-1"}
    ev = RequestDecoder(CODEC, lambda _: new).decode(confluent_frame(4, avro_body(new, rec)))
    assert ev == EVENT


def test_confluent_record_of_another_schema_is_a_decode_error() -> None:
    other = {"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}
    data = confluent_frame(5, avro_body(other, {"id": "x"}))
    with pytest.raises(DecodeError, match="not a RequestEvent"):
        RequestDecoder(CODEC, lambda _: other).decode(data)


def test_confluent_without_a_registry_is_a_clear_decode_error() -> None:
    data = confluent_frame(9, avro_body(request_schema(), record_of(EVENT)))
    with pytest.raises(DecodeError, match="no schema registry is configured"):
        RequestDecoder(CODEC).decode(data)


def test_registry_outage_is_not_a_decode_error() -> None:
    """Transient: it must reach the loop as RegistryUnavailable, never become a dead letter."""

    def down(_: int) -> Any:
        raise RegistryUnavailable("connection refused")

    data = confluent_frame(9, avro_body(request_schema(), record_of(EVENT)))
    with pytest.raises(RegistryUnavailable):
        RequestDecoder(CODEC, down).decode(data)


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    decoder = RequestDecoder(CODEC, lambda _: request_schema())
    with contextlib.suppress(DecodeError):
        decoder.decode(data)


# -- results ------------------------------------------------------------------------------

RESULT = ResultEvent(
    "req-1",
    ResultStatus.ERROR,
    "gemini-2.5-flash",
    Kind.GENERATE,
    None,
    ErrorInfo(400, "INVALID_ARGUMENT", "bad"),
    {"tenant": "acme"},
    "batches/1",
    0,
)


def test_results_in_each_format() -> None:
    assert CODEC.decode_result(ResultEncoder(Format.SINGLE_OBJECT, CODEC).encode(RESULT)) == RESULT
    as_json = orjson.loads(ResultEncoder(Format.JSON, CODEC).encode(RESULT))
    assert as_json["request_id"] == "req-1"
    assert as_json["error"] == {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad"}
    framed = ResultEncoder(Format.CONFLUENT, CODEC, schema_id=42).encode(RESULT)
    assert confluent_schema_id(framed) == 42
    schema = parse_schema(load_schemas("result")[-1])
    rec = schemaless_reader(io.BytesIO(framed[5:]), schema, None)
    assert rec["request_id"] == "req-1"
    assert rec["error"]["status"] == "INVALID_ARGUMENT"
    with pytest.raises(ValueError, match="schema id"):
        ResultEncoder(Format.CONFLUENT, CODEC)


# -- through the loop ---------------------------------------------------------------------

FAST = EmulatorConfig(queue_delay_s=0, processing_delay_s=0, per_request_delay_s=0)


def test_mixed_formats_on_one_partition_all_answered() -> None:
    schema = request_schema()
    h = harness(emulator_config=FAST, schema_by_id=lambda _: schema, batch_max_wait_s=1.0)
    h.publish("avro-1")
    h.publish_raw(orjson.dumps({**record_of(EVENT), "request_id": "json-1"}), b"json-1")
    rec = {**record_of(EVENT), "request_id": "conf-1"}
    h.publish_raw(confluent_frame(1, avro_body(schema, rec)), b"conf-1")
    h.publish_raw(b"\x07garbage", b"junk")
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) == 3)
    assert {r.request_id for r in h.result_events()} == {"avro-1", "json-1", "conf-1"}
    assert all(r.status is ResultStatus.OK for r in h.result_events())
    (dead,) = h.dead_letters()
    assert dead.value == b"\x07garbage"  # byte-for-byte copy
    assert h.committed(0) == 4


def test_registry_outage_holds_the_partition_then_answers() -> None:
    schema = request_schema()
    up = {"ok": False}

    def lookup(_: int) -> Any:
        if not up["ok"]:
            raise RegistryUnavailable("connection refused")
        return schema

    h = harness(emulator_config=FAST, schema_by_id=lookup, batch_max_wait_s=1.0)
    h.publish_raw(confluent_frame(1, avro_body(schema, record_of(EVENT))), b"req-1")
    h.publish("after")
    h.consumer.assign(0)
    h.step(5, advance_s=0.1)
    assert h.dead_letters() == []
    assert h.results() == []
    assert h.committed(0) == 0  # nothing passes the held record
    assert 0 in h.consumer.paused
    up["ok"] = True
    h.run_until(lambda: len(h.results()) == 2)
    assert {r.request_id for r in h.result_events()} == {"req-1", "after"}
    assert h.dead_letters() == []


def test_results_go_out_in_the_configured_format() -> None:
    h = harness(emulator_config=FAST, result_format="json", batch_max_wait_s=1.0)
    h.publish("r-json")
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) == 1)
    body = orjson.loads(h.results()[0].value or b"")
    assert body["request_id"] == "r-json"
    assert body["status"] == "OK"


@pytest.mark.parametrize("depth", [300, 1000, 5000])
def test_deeply_nested_json_requests_are_decode_errors(depth: int) -> None:
    """Found by the chaos fuzzer: orjson's TypeError and RecursionError escaped before."""
    body = '{"contents": ' + "[" * depth + "]" * depth + "}"
    raw = '{"request_id": "a", "model": "m", "body": ' + body + "}"
    with pytest.raises(DecodeError):
        decode_json_request(raw.encode())
