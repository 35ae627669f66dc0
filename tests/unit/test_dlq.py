"""Choosing dead letters to replay and the provenance a replayed record carries."""

from __future__ import annotations

import pytest

from connector.core.dlq import DlqFilter, parse_time_ms, provenance, replay_headers
from connector.core.records import Record
from connector.core.results import dead_letter_headers


def dead_letter(stage: str = "VALIDATION", key: bytes | None = b"k1", ts: int = 1_000) -> Record:
    headers = dead_letter_headers(
        [("trace", b"t-1")], "llm.requests", 3, 41, stage, ValueError("too big"), "group-a"
    )
    return Record("llm.requests.dlq", 0, 7, key, b"\xc3\x01orig", headers, ts)


def test_filter_by_stage_time_and_key() -> None:
    rec = dead_letter()
    assert DlqFilter().matches(rec)
    assert DlqFilter(stages=frozenset({"VALIDATION"})).matches(rec)
    assert not DlqFilter(stages=frozenset({"VALUE_CONVERTER"})).matches(rec)
    assert DlqFilter(since_ms=1_000, until_ms=1_001).matches(rec)
    assert not DlqFilter(since_ms=1_001).matches(rec)
    assert not DlqFilter(until_ms=1_000).matches(rec)  # until is exclusive
    assert DlqFilter(keys=frozenset({b"k1"})).matches(rec)
    assert not DlqFilter(keys=frozenset({b"k2"})).matches(dead_letter(key=None))


def test_replayed_record_keeps_its_headers_drops_errors_and_says_where_it_came_from() -> None:
    headers = dict(replay_headers(dead_letter()))
    assert headers["trace"] == b"t-1"
    assert not any(k.startswith("__connect.errors.") for k in headers)
    assert headers["connector.replay.dlq"] == b"llm.requests.dlq/0@7"
    assert headers["connector.replay.original"] == b"llm.requests/3@41"
    assert headers["connector.replay.reason"] == b"VALIDATION: too big"
    assert provenance(dead_letter()) == "llm.requests/3@41"


def test_time_parsing() -> None:
    assert parse_time_ms("1700000000000") == 1_700_000_000_000
    assert parse_time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless zoned
    assert parse_time_ms("2023-11-14T23:13:20+01:00") == 1_700_000_000_000
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_time_ms("yesterday")
