"""Results from finished jobs and refused requests: correlated by key, one per request."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core.records import (
    BatchKey,
    EntryState,
    ErrorInfo,
    Kind,
    LedgerEntry,
    OutputItem,
    RequestEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.results import (
    NO_OUTPUT,
    Original,
    correlation_key,
    dead_letter_headers,
    error_results,
    provider_error,
    refused,
    result_headers,
    success_results,
    usage_of,
)

PARTITION = 2
KEY = BatchKey(PARTITION, "gemini-2.5-flash", Kind.GENERATE)
NOW = 1_700_000_000_000
JOB = "batches/abc123"


def entry(offsets: tuple[int, ...], attempt: int = 1) -> LedgerEntry:
    return LedgerEntry(
        job_id="p2-job",
        key=KEY,
        offsets=offsets,
        attempt=attempt,
        display_name="grp-p2-job",
        state=EntryState.SUBMITTED,
        use_file=False,
        est_tokens=10,
        created_ms=1,
        updated_ms=2,
        provider_job=JOB,
    )


def event(offset: int) -> RequestEvent:
    return RequestEvent(
        request_id=f"req-{offset}",
        model=KEY.model,
        kind=Kind.GENERATE,
        body='{"contents": []}',
        metadata={"tenant": "acme", "n": str(offset)},
        created_ms=1000 + offset,
    )


def originals(offsets: tuple[int, ...]) -> dict[int, Original]:
    return {o: Original(PARTITION, o, f"k{o}".encode(), event(o)) for o in offsets}


def response(offset: int) -> dict[str, object]:
    """A response that names its own offset, so a mix-up is visible in the result."""
    return {
        "candidates": [{"content": {"parts": [{"text": f"answer {offset}"}]}}],
        "usageMetadata": {
            "promptTokenCount": offset,
            "candidatesTokenCount": 2 * offset,
            "totalTokenCount": 3 * offset,
        },
    }


def ok(offset: int) -> OutputItem:
    return OutputItem(correlation_key(offset), response(offset), None)


offsets_st = st.lists(st.integers(0, 10**12), min_size=1, max_size=30, unique=True).map(
    lambda xs: tuple(sorted(xs))
)


# -- success_results -------------------------------------------------------------------


@given(st.data())
def test_success_results_correlate_by_key_not_position(data: st.DataObject) -> None:
    """However the provider orders its outputs, each request gets its own response."""
    offsets = data.draw(offsets_st)
    outputs = data.draw(st.permutations([ok(o) for o in offsets]))
    out = success_results(entry(offsets), originals(offsets), outputs, JOB, NOW)
    assert [r.result.source_offset for r in out] == list(offsets)
    for o, r in zip(offsets, out, strict=True):
        res = r.result
        assert r.kafka_key == f"k{o}".encode()
        assert res.status is ResultStatus.OK
        assert res.error is None
        assert res.request_id == f"req-{o}"
        assert res.response_json is not None
        assert orjson.loads(res.response_json) == response(o)
        assert res.usage == TokenUsage(o, 2 * o, 3 * o)
        assert res.metadata == {"tenant": "acme", "n": str(o)}
        assert res.batch_job == JOB
        assert res.attempt == 1
        assert res.source_partition == PARTITION
        assert res.request_created_ms == 1000 + o
        assert res.completed_ms == NOW
        assert res.cost_usd is None  # no `price`: the sink prices it when it sends


def test_success_results_are_priced_as_they_are_built() -> None:
    offsets = (0, 3, 7)
    seen: list[tuple[str, TokenUsage]] = []

    def price(model: str, usage: TokenUsage) -> float | None:
        seen.append((model, usage))
        return None if usage.prompt_tokens == 0 else usage.total_tokens / 1e6

    outputs = [ok(o) for o in offsets]
    out = success_results(entry(offsets), originals(offsets), outputs, JOB, NOW, price=price)
    assert [r.result.cost_usd for r in out] == [None, 9 / 1e6, 21 / 1e6]
    assert seen == [(KEY.model, TokenUsage(o, 2 * o, 3 * o)) for o in offsets]


@given(st.data())
def test_every_offset_gets_exactly_one_result(data: st.DataObject) -> None:
    """Missing, duplicated or foreign outputs never add, drop or misplace a result."""
    offsets = data.draw(offsets_st)
    present = data.draw(st.lists(st.sampled_from(offsets), unique=True))
    foreign = data.draw(st.lists(st.integers(-100, -1), max_size=3, unique=True))
    items = [ok(o) for o in present] + [ok(f) for f in foreign]
    outputs = data.draw(st.permutations(items))
    out = success_results(entry(offsets), originals(offsets), outputs, JOB, NOW)
    assert sorted(r.result.source_offset for r in out) == list(offsets)
    for r in out:
        o = r.result.source_offset
        if o in present:
            assert r.result.status is ResultStatus.OK
            assert orjson.loads(r.result.response_json or "null") == response(o)
        else:
            assert r.result.status is ResultStatus.ERROR
            assert r.result.error == NO_OUTPUT
            assert r.result.response_json is None


def test_missing_output_is_an_error_not_silence() -> None:
    """A short output file yields NO_OUTPUT for the requests it left out."""
    out = success_results(entry((5, 6)), originals((5, 6)), [ok(6)], JOB, NOW)
    assert out[0].result.status is ResultStatus.ERROR
    assert out[0].result.error == NO_OUTPUT
    assert out[0].result.request_id == "req-5"
    assert out[1].result.status is ResultStatus.OK


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"code": 429, "message": "quota"},
            ErrorInfo(429, "RESOURCE_EXHAUSTED", "quota"),
        ),
        (
            {"code": 400, "status": "FAILED_PRECONDITION", "message": "m"},
            ErrorInfo(400, "FAILED_PRECONDITION", "m"),
        ),
        ({"code": "503", "message": "busy"}, ErrorInfo(503, "UNAVAILABLE", "busy")),
        ({"code": 404}, ErrorInfo(404, "NOT_FOUND", "request failed in the batch job")),
        ({"code": 418, "message": "?"}, ErrorInfo(418, "UNKNOWN", "?")),
        ({"code": "x", "message": "m"}, ErrorInfo(500, "INTERNAL", "m")),
        ({}, ErrorInfo(500, "INTERNAL", "request failed in the batch job")),
    ],
)
def test_provider_error_derives_status(raw: dict[str, object], expected: ErrorInfo) -> None:
    """A per-request error gets a code, a google.rpc status (derived if absent) and a message."""
    assert provider_error(raw) == expected


def test_per_request_error_becomes_error_result() -> None:
    """An output line with an error yields ERROR with its code and status, no response."""
    outputs = [
        OutputItem("7", None, {"code": 429, "message": "slow down"}),
        OutputItem("8", None, {"code": 400, "status": "INVALID_ARGUMENT", "message": "bad"}),
    ]
    out = success_results(entry((7, 8)), originals((7, 8)), outputs, JOB, NOW)
    r7, r8 = (o.result for o in out)
    assert r7.status is ResultStatus.ERROR
    assert r7.error == ErrorInfo(429, "RESOURCE_EXHAUSTED", "slow down")
    assert r7.response_json is None
    assert r7.usage is None
    assert r8.error == ErrorInfo(400, "INVALID_ARGUMENT", "bad")
    assert r8.request_id == "req-8"


def test_output_with_both_response_and_error_is_an_error() -> None:
    """An ambiguous output is never delivered as a success."""
    outputs = [OutputItem("7", response(7), {"code": 500, "message": "partial"})]
    [r] = success_results(entry((7,)), originals((7,)), outputs, JOB, NOW)
    assert r.result.status is ResultStatus.ERROR
    assert r.result.error == ErrorInfo(500, "INTERNAL", "partial")


def test_output_with_neither_response_nor_error_is_an_error() -> None:
    """An empty output line means the request failed, not that it succeeded with nothing."""
    [r] = success_results(entry((7,)), originals((7,)), [OutputItem("7", None, None)], JOB, NOW)
    assert r.result.status is ResultStatus.ERROR
    assert r.result.error is not None
    assert r.result.error.code == 500


@pytest.mark.parametrize("gone", ["absent", "undecodable"])
def test_missing_original_is_data_loss_with_source_offset(gone: str) -> None:
    """A request that can no longer be read still gets a result naming where it was."""
    origs = originals((3, 4))
    if gone == "absent":
        del origs[3]
    else:
        origs[3] = Original(PARTITION, 3, b"k3", None)
    for results in (
        success_results(entry((3, 4)), origs, [ok(3), ok(4)], JOB, NOW),
        error_results(entry((3, 4)), origs, NO_OUTPUT, JOB, NOW),
    ):
        lost = results[0]
        assert lost.kafka_key == (None if gone == "absent" else b"k3")
        assert lost.result.status is ResultStatus.ERROR
        assert lost.result.error is not None
        assert lost.result.error.status == "DATA_LOSS"
        assert "offset 3" in lost.result.error.message
        assert lost.result.source_offset == 3
        assert lost.result.source_partition == PARTITION
        assert lost.result.model == KEY.model
        assert lost.result.batch_job == JOB
        assert results[1].result.request_id == "req-4"


# -- usage -----------------------------------------------------------------------------


def test_usage_parsed_in_either_casing() -> None:
    """usageMetadata (REST) and usage_metadata (SDK dumps) both give token counts."""
    camel = {
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "totalTokenCount": 7}
    }
    snake = {
        "usage_metadata": {
            "prompt_token_count": 3,
            "candidates_token_count": 4,
            "total_token_count": 7,
        }
    }
    assert usage_of(camel) == TokenUsage(3, 4, 7)
    assert usage_of(snake) == TokenUsage(3, 4, 7)


def test_usage_absent_or_partial() -> None:
    """No metadata means no usage; missing or non-integer counts read as zero."""
    assert usage_of({"candidates": []}) is None
    assert usage_of({"usageMetadata": "nope"}) is None
    assert usage_of({"usageMetadata": {"promptTokenCount": 5, "totalTokenCount": "9"}}) == (
        TokenUsage(5, 0, 0)
    )


# -- error_results and refused ---------------------------------------------------------


@given(offsets_st)
def test_error_results_one_per_offset_with_the_error(offsets: tuple[int, ...]) -> None:
    """A job that cannot succeed yields the same clear error for each of its requests."""
    err = ErrorInfo(504, "DEADLINE_EXCEEDED", "job expired")
    out = error_results(entry(offsets, attempt=3), originals(offsets), err, JOB, NOW)
    assert [r.result.source_offset for r in out] == list(offsets)
    for o, r in zip(offsets, out, strict=True):
        assert r.kafka_key == f"k{o}".encode()
        assert r.result.status is ResultStatus.ERROR
        assert r.result.error == err
        assert r.result.request_id == f"req-{o}"
        assert r.result.attempt == 3
        assert r.result.response_json is None


def test_refused_result() -> None:
    """A request that never reaches a job gets an error result with its provenance."""
    ev = event(9)
    err = ErrorInfo(400, "INVALID_ARGUMENT", "contents is required")
    r = refused(ev, 4, 9, err, NOW)
    assert r.status is ResultStatus.ERROR
    assert r.error == err
    assert r.request_id == "req-9"
    assert r.model == ev.model
    assert r.kind is ev.kind
    assert r.metadata == ev.metadata
    assert r.metadata is not ev.metadata  # a copy: results never alias request state
    assert r.attempt == 0
    assert r.batch_job is None
    assert (r.source_partition, r.source_offset) == (4, 9)
    assert (r.request_created_ms, r.completed_ms) == (ev.created_ms, NOW)


# -- headers ---------------------------------------------------------------------------


def test_result_headers() -> None:
    """Consumers can route on request id, status and source without decoding Avro."""
    [r] = success_results(entry((12,)), originals((12,)), [ok(12)], JOB, NOW)
    headers = result_headers(r.result, "llm.requests")
    assert headers == [
        ("request_id", b"req-12"),
        ("connector.status", b"OK"),
        ("connector.source", f"llm.requests/{PARTITION}/12".encode()),
        ("connector.batch_job", JOB.encode()),
    ]
    no_job = refused(event(1), 0, 1, NO_OUTPUT, NOW)
    assert dict(result_headers(no_job, "t"))["connector.status"] == b"ERROR"
    assert "connector.batch_job" not in dict(result_headers(no_job, "t"))


class _Boom(ValueError):
    pass


@given(
    original=st.lists(st.tuples(st.text(max_size=10), st.binary(max_size=10)), max_size=4),
    topic=st.text(min_size=1, max_size=20),
    partition=st.integers(0, 10_000),
    offset=st.integers(0, 2**62),
    message=st.text(max_size=40),
)
def test_dead_letter_headers(
    original: list[tuple[str, bytes]], topic: str, partition: int, offset: int, message: str
) -> None:
    """Kafka Connect's DLQ convention: original headers first, then provenance, all bytes."""
    headers = dead_letter_headers(
        original, topic, partition, offset, "VALUE_CONVERTER", _Boom(message), "my-connector"
    )
    assert headers[: len(original)] == original
    added = dict(headers[len(original) :])
    p = "__connect.errors."
    assert added[p + "topic"] == topic.encode()
    assert added[p + "partition"] == str(partition).encode()
    assert added[p + "offset"] == str(offset).encode()
    assert added[p + "stage"] == b"VALUE_CONVERTER"
    assert added[p + "connector.name"] == b"my-connector"
    assert added[p + "exception.class.name"] == f"{__name__}._Boom".encode()
    assert added[p + "exception.message"] == message.encode()
    assert p + "class.name" in added
    for name, value in headers:
        assert isinstance(name, str)
        assert isinstance(value, bytes)
