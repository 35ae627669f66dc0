"""The Avro contract and its codec: round trips, schema evolution, framing errors."""

from __future__ import annotations

import contextlib
import io
import itertools
import json
from typing import Any

import fastavro
import pytest
from fastavro.utils import generate_many
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.codec import (
    MAGIC,
    Codec,
    offsets_to_ranges,
    ranges_to_offsets,
    schema_fingerprint,
)
from connector.core.records import (
    BatchKey,
    EntryState,
    ErrorInfo,
    Kind,
    LedgerEntry,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.schemas import SCHEMA_NAMES, load_schemas, schema_versions
from connector.errors import DecodeError

CODEC = Codec()  # parsing the schemas once keeps hypothesis runs fast

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=40)
METADATA = st.dictionaries(TEXT, TEXT, max_size=4)

requests = st.builds(
    RequestEvent,
    request_id=TEXT,
    model=TEXT,
    kind=st.sampled_from(Kind),
    body=st.text(max_size=200),
    group=TEXT,
    priority=LONG,
    deadline_ms=st.none() | LONG,
    metadata=METADATA,
    created_ms=LONG,
)
results = st.builds(
    ResultEvent,
    request_id=TEXT,
    status=st.sampled_from(ResultStatus),
    model=TEXT,
    kind=st.sampled_from(Kind),
    response_json=st.none() | st.text(max_size=200),
    error=st.none() | st.builds(ErrorInfo, code=INT, status=TEXT, message=TEXT),
    metadata=METADATA,
    batch_job=st.none() | TEXT,
    attempt=INT,
    usage=st.none() | st.builds(TokenUsage, LONG, LONG, LONG),
    request_created_ms=LONG,
    completed_ms=LONG,
    source_partition=INT,
    source_offset=LONG,
    cost_usd=st.none() | st.floats(allow_nan=False),
)
ledger_entries = st.builds(
    LedgerEntry,
    job_id=TEXT,
    key=st.builds(BatchKey, INT, TEXT, st.sampled_from(Kind), LONG, TEXT),
    offsets=st.lists(st.integers(0, 2**40), max_size=50).map(lambda xs: tuple(sorted(xs))),
    attempt=INT,
    display_name=TEXT,
    state=st.sampled_from(EntryState),
    use_file=st.booleans(),
    est_tokens=LONG,
    created_ms=LONG,
    updated_ms=LONG,
    provider_job=st.none() | TEXT,
    input_file=st.none() | TEXT,
    request_topic=TEXT,
).filter(lambda e: e.attempt != e.job_id.count("/") + 1)  # the legacy 1-based shape

# A request schema as an early producer might have shipped it: no group,
# priority, deadline or metadata. Same record name, so it resolves to v1.
OLD_REQUEST_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "RequestEvent",
    "namespace": "io.github.geminibatch",
    "fields": [
        {"name": "request_id", "type": "string"},
        {"name": "model", "type": "string"},
        {
            "name": "kind",
            "type": {"type": "enum", "name": "Kind", "symbols": ["generate", "embed"]},
        },
        {"name": "body", "type": "string"},
        {"name": "created_ms", "type": "long"},
    ],
}


def single_object(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    """Encode ``record`` the way any spec-following producer would, independently of Codec."""
    buf = io.BytesIO()
    buf.write(MAGIC + schema_fingerprint(schema))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return buf.getvalue()


def sample_request() -> RequestEvent:
    return RequestEvent(
        request_id="req-1",
        model="gemini-2.5-flash",
        kind=Kind.GENERATE,
        body='{"contents":[{"parts":[{"text":"hi"}]}]}',
        metadata={"tenant": "a"},
        created_ms=1_750_000_000_000,
    )


@given(requests)
def test_request_round_trip(ev: RequestEvent) -> None:
    """Every request event survives encode then decode unchanged, field for field."""
    assert CODEC.decode_request(CODEC.encode_request(ev)) == ev


@given(results)
def test_result_round_trip(r: ResultEvent) -> None:
    """Every result event, with or without error and usage, survives a round trip."""
    assert CODEC.decode_result(CODEC.encode_result(r)) == r


@given(ledger_entries)
def test_ledger_round_trip(e: LedgerEntry) -> None:
    """Every ledger entry survives a round trip, its offsets going through ranges."""
    assert CODEC.decode_ledger(CODEC.encode_ledger(e)) == e


def test_wire_format_is_single_object_encoding() -> None:
    """Records start with C3 01 and the little-endian CRC-64-AVRO of the current schema."""
    data = CODEC.encode_request(sample_request())
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(load_schemas("request")[-1])
    # The body is plain Avro binary that any reader with the schema can read.
    body = fastavro.schemaless_reader(io.BytesIO(data[10:]), load_schemas("request")[-1])
    assert isinstance(body, dict)
    assert body["request_id"] == "req-1"


def test_fingerprint_matches_the_avro_specification() -> None:
    """The spec's test vector: the fingerprint of "null" is 7195948357588979594, little-endian."""
    assert schema_fingerprint("null") == (7195948357588979594).to_bytes(8, "little")


def _rabin_fingerprint64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it, independent of fastavro."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_fingerprints_match_the_spec_algorithm(name: str) -> None:
    """Our header bytes equal the spec's Rabin fingerprint of the canonical form, little-endian."""
    from fastavro.schema import to_parsing_canonical_form

    for schema in load_schemas(name):
        canonical = to_parsing_canonical_form(schema).encode()
        expected = _rabin_fingerprint64(canonical).to_bytes(8, "little")
        assert schema_fingerprint(schema) == expected


def test_schemas_are_found_in_the_checkout_when_not_installed() -> None:
    """From a source checkout the schema folder is the repo's avro/; unknown names are refused."""
    from pathlib import Path

    from connector.core.schemas import schema_root

    assert Path(str(schema_root())) == Path(__file__).resolve().parents[2] / "avro"
    with pytest.raises(ValueError, match="unknown schema"):
        load_schemas("requests")


def test_producer_without_the_codec_is_readable() -> None:
    """A record framed by hand from the shipped schema (as in docs/contract.md) decodes."""
    schema = load_schemas("request")[-1]
    record = {
        "request_id": "r",
        "model": "gemini-2.5-flash",
        "kind": "embed",
        "body": "{}",
        "group": "g",
        "priority": 3,
        "deadline_ms": None,
        "metadata": {},
        "created_ms": 5,
    }
    ev = CODEC.decode_request(single_object(schema, record))
    assert ev == RequestEvent("r", "gemini-2.5-flash", Kind.EMBED, "{}", "g", 3, None, {}, 5)


def test_older_writer_schema_is_read_with_defaults() -> None:
    """A record from an older, registered schema version decodes with the new fields' defaults."""
    codec = Codec()
    data = single_object(
        OLD_REQUEST_SCHEMA,
        {"request_id": "r-old", "model": "m", "kind": "generate", "body": "{}", "created_ms": 7},
    )
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint"):
        codec.decode_request(data)
    codec.register(OLD_REQUEST_SCHEMA)
    ev = codec.decode_request(data)
    assert ev == RequestEvent("r-old", "m", Kind.GENERATE, "{}", created_ms=7)
    assert (ev.group, ev.priority, ev.deadline_ms, ev.metadata) == ("", 0, None, {})


def test_result_v1_record_reads_as_current_with_null_cost() -> None:
    """Backward: a result written with v1 (no cost_usd) decodes with cost_usd None."""
    v1 = schema_versions("result")[0][1]
    record = {
        "request_id": "r1",
        "status": "OK",
        "model": "gemini-2.5-flash",
        "kind": "generate",
        "response_json": "{}",
        "usage": {"prompt_tokens": 10, "candidates_tokens": 5, "total_tokens": 15},
    }
    r = CODEC.decode_result(single_object(v1, record))
    assert r.usage == TokenUsage(10, 5, 15)
    assert r.cost_usd is None


def test_result_v2_record_reads_with_the_v1_schema() -> None:
    """Forward: a consumer still on v1 reads a v2 result (cost_usd is skipped)."""
    versions = dict(schema_versions("result"))
    assert "cost_usd" not in {f["name"] for f in versions[1]["fields"]}
    assert "cost_usd" in {f["name"] for f in versions[2]["fields"]}
    data = CODEC.encode_result(
        ResultEvent(
            "r2",
            ResultStatus.OK,
            "gemini-2.5-flash",
            Kind.GENERATE,
            response_json="{}",
            usage=TokenUsage(10, 5, 15),
            cost_usd=0.0125,
        )
    )
    assert data[2:10] == schema_fingerprint(versions[2])
    buf = io.BytesIO(data[10:])
    old = fastavro.schemaless_reader(
        buf, fastavro.parse_schema(versions[2]), fastavro.parse_schema(versions[1])
    )
    assert old["request_id"] == "r2"
    assert old["usage"]["total_tokens"] == 15
    assert "cost_usd" not in old
    assert CODEC.decode_result(data).cost_usd == 0.0125


def _ledger_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "job_id": "p0-0-abc",
        "partition": 0,
        "model": "gemini-2.5-flash",
        "kind": "generate",
        "priority": 0,
        "group": "",
        "offsets": [{"start": 4, "end": 6}],
        "attempt": 1,
        "display_name": "g:p0-0-abc",
        "state": "SUBMITTED",
        "use_file": False,
        "est_tokens": 9,
        "created_ms": 1,
        "updated_ms": 2,
        "provider_job": "batches/x",
        "input_file": None,
    }
    record.update(changes)
    return record


def test_ledger_v1_entries_read_as_v2_with_no_request_topic() -> None:
    """An old ledger stays readable: a v1 entry decodes with request_topic "" (ours)."""
    v1 = schema_versions("ledger")[0][1]
    entry = CODEC.decode_ledger(single_object(v1, _ledger_record()))
    assert entry.state is EntryState.SUBMITTED
    assert entry.request_topic == ""
    assert entry.offsets == (4, 5, 6)


def test_ledger_v2_entries_resolve_to_v1_unless_done() -> None:
    """The other way: a v2 INTENT/SUBMITTED body resolves into the v1 reader schema (the
    new field is dropped); DONE has no v1 symbol, so a v1 reader refuses it. That is why
    a sidecar that has written DONE entries cannot be rolled back to a v1-only release."""
    (_, v1), (_, v2) = schema_versions("ledger")[:2]
    body = _ledger_record(request_topic="llm.requests")
    for state in ("INTENT", "SUBMITTED"):
        data = single_object(v2, {**body, "state": state})
        old = fastavro.schemaless_reader(
            io.BytesIO(data[10:]), fastavro.parse_schema(v2), fastavro.parse_schema(v1)
        )
        assert isinstance(old, dict)
        assert old["state"] == state
        assert "request_topic" not in old
    done = single_object(v2, {**body, "state": "DONE"})
    with pytest.raises(Exception, match="DONE"):
        fastavro.schemaless_reader(
            io.BytesIO(done[10:]), fastavro.parse_schema(v2), fastavro.parse_schema(v1)
        )
    entry = CODEC.decode_ledger(done)
    assert (entry.state, entry.request_topic) == (EntryState.DONE, "llm.requests")


def test_register_rejects_foreign_records() -> None:
    """Registering a schema that is none of our three records is a programming error."""
    with pytest.raises(ValueError, match="cannot register"):
        Codec().register({"type": "record", "name": "Other", "fields": []})


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_shipped_schemas_parse_and_document_every_field(name: str) -> None:
    """Every released version parses; every record, enum and field has a doc for downstream."""

    def walk(schema: Any, where: str) -> None:
        if isinstance(schema, list):
            for branch in schema:
                walk(branch, where)
        elif isinstance(schema, dict):
            if schema.get("type") in ("record", "enum"):
                assert schema.get("doc"), f"{where}: {schema['name']} has no doc"
            for field in schema.get("fields", []):
                assert field.get("doc"), f"{where}: field {field['name']} has no doc"
                walk(field["type"], f"{where}.{field['name']}")
            for key in ("items", "values"):
                walk(schema.get(key), where)

    versions = schema_versions(name)
    assert [v for v, _ in versions] == list(range(1, len(versions) + 1)), "versions are v1..vN"
    for version, schema in versions:
        fastavro.parse_schema(schema)
        walk(schema, f"{name}/v{version}")


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_shipped_version_is_readable_by_the_current_codec(name: str) -> None:
    """Records written with any released version decode through the current reader schema."""
    decode = {
        "request": CODEC.decode_request,
        "result": CODEC.decode_result,
        "ledger": CODEC.decode_ledger,
    }[name]
    for _, schema in schema_versions(name):
        wire_schema = json.loads(json.dumps(schema).replace('"logicalType"', '"_logical"'))
        for record in generate_many(wire_schema, 20):
            if name == "ledger":  # random ranges would expand to billions of offsets
                record["offsets"] = [{"start": 1, "end": 3}]
            decode(single_object(wire_schema, record))


def test_record_of_another_type_is_refused() -> None:
    """Result bytes fed to the request decoder fail clearly instead of misreading."""
    data = CODEC.encode_result(ResultEvent("r", ResultStatus.OK, "m", Kind.GENERATE))
    with pytest.raises(DecodeError, match="is a ResultEvent, expected a RequestEvent"):
        CODEC.decode_request(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the 10-byte"),
        (b"\xc3\x01\x00", "shorter than the 10-byte"),
        (b'{"request_id": "x", "body": "{}"}', "marker C3 01"),
        (b"\x00\x00\x00\x00\x01" + b"\x00" * 20, "Confluent"),
        (MAGIC + b"\xff" * 8 + b"\x00", "unknown writer schema fingerprint"),
    ],
)
def test_bad_framing_raises_decode_error(data: bytes, message: str) -> None:
    """Empty, short, JSON, Confluent-framed and unknown-schema records get a clear DecodeError."""
    with pytest.raises(DecodeError, match=message):
        CODEC.decode_request(data)


def test_truncated_records_raise_decode_error() -> None:
    """Every strict prefix of a valid record is refused with DecodeError."""
    data = CODEC.encode_request(sample_request())
    for cut in range(len(data)):
        with pytest.raises(DecodeError):
            CODEC.decode_request(data[:cut])


def test_trailing_bytes_raise_decode_error() -> None:
    """Extra bytes after the record mean a framing bug upstream; they are not silently dropped."""
    with pytest.raises(DecodeError, match="trailing"):
        CODEC.decode_request(CODEC.encode_request(sample_request()) + b"\x00")


def test_non_bytes_input_raises_decode_error() -> None:
    """A None value (a Kafka tombstone) or a str is a DecodeError, not a TypeError."""
    with pytest.raises(DecodeError):
        CODEC.decode_request(None)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        CODEC.decode_request("c3 01")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("job_id", "stored", "read"),
    [
        ("p0-5-abc", 1, 0),  # written before attempts counted from 0: a fresh job
        ("p0-5-abc/a", 2, 1),
        ("p0-5-abc/a/r3", 3, 2),
        ("p0-5-abc", 0, 0),  # written now
        ("p0-5-abc/b/r2", 2, 2),
    ],
)
def test_ledger_attempt_read_zero_based_whoever_wrote_it(
    job_id: str, stored: int, read: int
) -> None:
    """The schema says 0 = first job; entries of older sidecars (1 = first) are read that way."""
    e = LedgerEntry(
        job_id=job_id,
        key=BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
        offsets=(5,),
        attempt=stored,
        display_name="g:" + job_id,
        state=EntryState.INTENT,
        use_file=False,
        est_tokens=1,
        created_ms=1,
        updated_ms=1,
    )
    assert Codec().decode_ledger(Codec().encode_ledger(e)).attempt == read


def test_corrupt_ledger_range_raises_decode_error() -> None:
    """A ledger range that ends before it starts, or expands absurdly, is corrupt."""
    schema = load_schemas("ledger")[-1]
    record = {
        "job_id": "j",
        "partition": 0,
        "model": "m",
        "kind": "generate",
        "priority": 0,
        "group": "",
        "offsets": [{"start": 5, "end": 4}],
        "attempt": 0,
        "display_name": "d",
        "state": "INTENT",
        "use_file": False,
        "est_tokens": 0,
        "created_ms": 0,
        "updated_ms": 0,
        "provider_job": None,
        "input_file": None,
    }
    with pytest.raises(DecodeError, match="ends before it starts"):
        CODEC.decode_ledger(single_object(schema, record))
    record["offsets"] = [{"start": 0, "end": 2**62}]
    with pytest.raises(DecodeError, match="expands to"):
        CODEC.decode_ledger(single_object(schema, record))


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_only_raise_decode_error(data: bytes) -> None:
    """Garbage never escapes as another exception type, for any of the three decoders."""
    for decode in (CODEC.decode_request, CODEC.decode_result, CODEC.decode_ledger):
        with contextlib.suppress(DecodeError):
            decode(data)


@settings(max_examples=300)
@given(st.binary(max_size=64), st.sampled_from(SCHEMA_NAMES))
def test_garbage_behind_a_valid_header_only_raises_decode_error(data: bytes, name: str) -> None:
    """A known fingerprint followed by random bytes still only yields DecodeError."""
    header = MAGIC + schema_fingerprint(load_schemas(name)[-1])
    for decode in (CODEC.decode_request, CODEC.decode_result, CODEC.decode_ledger):
        with contextlib.suppress(DecodeError):
            decode(header + data)


@given(st.lists(st.integers(-(2**40), 2**40), max_size=60))
def test_ranges_round_trip_any_sequence(offsets: list[int]) -> None:
    """Ranges restore any offset sequence exactly, order and duplicates included."""
    ranges = offsets_to_ranges(offsets)
    assert ranges_to_offsets(ranges) == tuple(offsets)
    assert all(start <= end for start, end in ranges)


@given(st.lists(st.integers(0, 10_000), unique=True).map(sorted))
def test_ranges_are_maximal_for_ascending_offsets(offsets: list[int]) -> None:
    """Ascending offsets compact into the fewest runs: consecutive runs never touch."""
    ranges = offsets_to_ranges(offsets)
    assert all(a_end + 1 < b_start for (_, a_end), (b_start, _) in itertools.pairwise(ranges))


def test_ranges_examples() -> None:
    """A contiguous batch is one range; gaps split it."""
    assert offsets_to_ranges([]) == []
    assert offsets_to_ranges([7]) == [(7, 7)]
    assert offsets_to_ranges([1, 2, 3, 5, 6, 9]) == [(1, 3), (5, 6), (9, 9)]
    assert ranges_to_offsets([(1, 3), (9, 9)]) == (1, 2, 3, 9)
    with pytest.raises(ValueError, match="ends before"):
        ranges_to_offsets([(3, 1)])
