"""The hand-written ResultEvent writer against fastavro, byte for byte."""

from __future__ import annotations

import dataclasses
import io

import pytest
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import to_parsing_canonical_form
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.codec import Codec, _wire_types
from connector.core.records import ErrorInfo, Kind, ResultEvent, ResultStatus, TokenUsage
from connector.core.result_writer import CANONICAL, write_result
from connector.core.schemas import load_schemas

SCHEMA = load_schemas("result")[-1]
PARSED = parse_schema(_wire_types(SCHEMA))
CODEC = Codec()

LONG = st.integers(-(2**63), 2**63 - 1)
INT = st.integers(-(2**31), 2**31 - 1)
TEXT = st.text(max_size=80)  # long enough for multi-byte length prefixes (>= 64 bytes)

results = st.builds(
    ResultEvent,
    request_id=TEXT,
    status=st.sampled_from(ResultStatus),
    model=TEXT,
    kind=st.sampled_from(Kind),
    response_json=st.none() | st.text(max_size=300),
    error=st.none() | st.builds(ErrorInfo, code=INT, status=TEXT, message=TEXT),
    metadata=st.dictionaries(TEXT, TEXT, max_size=6),
    batch_job=st.none() | TEXT,
    attempt=INT,
    usage=st.none() | st.builds(TokenUsage, LONG, LONG, LONG),
    request_created_ms=LONG,
    completed_ms=LONG,
    cost_usd=st.none() | st.floats(allow_nan=False),
    source_partition=INT,
    source_offset=LONG,
)


def fastavro_body(r: ResultEvent) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, PARSED, Codec._result_record(r))
    return buf.getvalue()


def test_the_writer_is_for_the_current_result_schema() -> None:
    """A new result schema version must come with a new writer (or the codec falls back)."""
    assert to_parsing_canonical_form(SCHEMA) == CANONICAL
    assert CODEC._fast_result


@settings(max_examples=500)
@given(results)
def test_same_bytes_as_fastavro(r: ResultEvent) -> None:
    assert write_result(r) == fastavro_body(r)
    assert CODEC.encode_result(r)[10:] == fastavro_body(r)
    assert CODEC.encode_result_body(r) == fastavro_body(r)


@pytest.mark.parametrize("field", ["attempt", "source_partition"])
def test_int_out_of_range_is_refused(field: str) -> None:
    """fastavro refuses an int field past 32 bits; so does the writer (no silent long)."""
    r = ResultEvent("r", ResultStatus.OK, "m", Kind.GENERATE)
    with pytest.raises(ValueError, match="does not fit an Avro int"):
        write_result(dataclasses.replace(r, **{field: 2**31}))
