"""The google-genai boundary as pure mappings: REST body to SDK request, JSONL, errors.

No network: these build SDK objects and exceptions in memory, the way the SDK does.
"""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest
from google.genai import errors as genai_errors
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st

from connector.errors import InvalidRequest, ProviderRejected, ProviderRetryable
from connector.gemini import (
    JobInput,
    _map_error,
    jsonl_lines,
    parse_output_file,
    to_inlined_request,
)
from connector.records import OutputItem

CONTENTS = [{"role": "user", "parts": [{"text": "Say hi"}]}]
SCHEMA = {"type": "OBJECT", "properties": {"greeting": {"type": "STRING"}}}


def _inline(body: dict[str, Any], metadata: dict[str, str] | None = None) -> types.InlinedRequest:
    return to_inlined_request(JobInput("42", body, metadata or {"key": "42"}))


def _camel() -> dict[str, Any]:
    return {
        "contents": CONTENTS,
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [{"name": "lookup", "description": "find a thing"}]}],
        "toolConfig": {"functionCallingConfig": {"mode": "ANY"}},
        "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cachedContent": "cachedContents/abc",
        "generationConfig": {
            "temperature": 0.25,
            "maxOutputTokens": 64,
            "responseMimeType": "application/json",
            "responseSchema": SCHEMA,
        },
    }


def _snake() -> dict[str, Any]:
    return {
        "contents": CONTENTS,
        "system_instruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"function_declarations": [{"name": "lookup", "description": "find a thing"}]}],
        "tool_config": {"function_calling_config": {"mode": "ANY"}},
        "safety_settings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
        "cached_content": "cachedContents/abc",
        "generation_config": {
            "temperature": 0.25,
            "max_output_tokens": 64,
            "response_mime_type": "application/json",
            "response_schema": SCHEMA,
        },
    }


# -- to_inlined_request ----------------------------------------------------------------


@pytest.mark.parametrize("body", [_camel(), _snake()], ids=["camelCase", "snake_case"])
def test_rest_request_maps_onto_sdk_config(body: dict[str, Any]) -> None:
    """Request-level fields and the generation config both land in GenerateContentConfig."""
    req = _inline(body, {"key": "42", "request_id": "r-1"})
    assert isinstance(req, types.InlinedRequest)
    assert req.metadata == {"key": "42", "request_id": "r-1"}
    assert req.contents is not None
    assert req.contents[0].parts[0].text == "Say hi"
    cfg = req.config
    assert cfg is not None
    assert cfg.system_instruction.parts[0].text == "Be brief."
    assert cfg.tools[0].function_declarations[0].name == "lookup"
    assert cfg.tool_config.function_calling_config.mode == "ANY"
    assert cfg.safety_settings[0].threshold == "BLOCK_NONE"
    assert cfg.cached_content == "cachedContents/abc"
    assert cfg.temperature == 0.25
    assert cfg.max_output_tokens == 64
    assert cfg.response_mime_type == "application/json"
    schema = cfg.response_schema
    dumped = schema if isinstance(schema, dict) else schema.model_dump(exclude_none=True)
    assert dumped["properties"]["greeting"]["type"] == "STRING"


def test_caller_body_is_not_mutated() -> None:
    """Mapping pops fields from a copy: the request can be mapped again after a retry."""
    body = _camel()
    before = orjson.dumps(body)
    _inline(body)
    assert orjson.dumps(body) == before
    assert _inline(body).config == _inline(body).config


def test_contents_only_has_no_config() -> None:
    """A bare request carries no config, and `model` in the body is dropped (the job sets it)."""
    req = _inline({"contents": CONTENTS, "model": "models/other"})
    assert req.config is None
    assert req.model is None


@pytest.mark.parametrize("field", ["foo", "generation_settings", "contentz"])
def test_unknown_top_level_field_is_invalid(field: str) -> None:
    """A field the SDK cannot carry fails this request alone, naming the field."""
    with pytest.raises(InvalidRequest, match=field):
        _inline({"contents": CONTENTS, field: 1})


@pytest.mark.parametrize("key", ["generationConfig", "generation_config"])
@pytest.mark.parametrize("value", ["x", 3, [1], True, [], 0, "", False])
def test_non_object_generation_config_is_invalid(key: str, value: object) -> None:
    """generationConfig must be an object; even an empty list or 0 is not silently dropped."""
    with pytest.raises(InvalidRequest, match="generationConfig"):
        _inline({"contents": CONTENTS, key: value})


def test_null_generation_config_means_none() -> None:
    """JSON null is the same as leaving the field out."""
    assert _inline({"contents": CONTENTS, "generationConfig": None}).config is None


@pytest.mark.parametrize("field", ["temperatur", "responseFormat", "thinking"])
def test_unknown_generation_config_field_is_invalid(field: str) -> None:
    """The SDK forbids extra fields; that becomes InvalidRequest, not a crashed job."""
    with pytest.raises(InvalidRequest, match="SDK"):
        _inline({"contents": CONTENTS, "generationConfig": {field: 1}})


def test_ill_typed_generation_config_value_is_invalid() -> None:
    """A value of the wrong type is rejected by the SDK's model and mapped likewise."""
    with pytest.raises(InvalidRequest):
        _inline({"contents": CONTENTS, "generationConfig": {"temperature": "hot"}})


# -- JSONL input and output ------------------------------------------------------------


@given(
    st.lists(
        st.tuples(
            st.integers(0, 10**12).map(str),
            st.dictionaries(st.text(max_size=8), st.text(max_size=20), max_size=3),
        ),
        max_size=10,
    )
)
def test_jsonl_lines_one_object_per_line(items: list[tuple[str, dict[str, str]]]) -> None:
    """Each input becomes one newline-terminated `{"key", "request"}` object, in order."""
    inputs = [JobInput(k, {"contents": [], **b}, {"key": k}) for k, b in items]
    lines = list(jsonl_lines(inputs))
    assert len(lines) == len(inputs)
    for line, item in zip(lines, inputs, strict=True):
        assert line.endswith(b"\n")
        assert line.count(b"\n") == 1  # JSON string escapes keep the record on one line
        assert orjson.loads(line) == {"key": item.key, "request": item.body}


def test_parse_output_file_reads_responses_errors_and_statuses() -> None:
    """Successful, `error` and `status` lines all become items keyed as written."""
    data = b"\n".join(
        [
            b'{"key": "1", "response": {"candidates": []}}',
            b'{"key": "2", "error": {"code": 400, "message": "bad"}}',
            b'{"key": 3, "status": {"code": 429, "message": "later"}}',
        ]
    )
    assert list(parse_output_file(data)) == [
        OutputItem("1", {"candidates": []}, None),
        OutputItem("2", None, {"code": 400, "message": "bad"}),
        OutputItem("3", None, {"code": 429, "message": "later"}),
    ]


def test_parse_output_file_skips_blank_garbage_and_keyless_lines() -> None:
    """Lines that cannot be correlated are skipped rather than failing the whole job."""
    data = b"\n".join(
        [
            b"",
            b"   ",
            b"{not json",
            b"[1, 2]",
            b'"just a string"',
            b'{"response": {"candidates": []}}',
            b'{"key": "9", "response": {"candidates": []}}',
            b"\xff\xfe",
        ]
    )
    assert list(parse_output_file(data)) == [OutputItem("9", {"candidates": []}, None)]


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
_line = st.fixed_dictionaries(
    {},
    optional={"key": _json, "response": _json, "error": _json, "status": _json},
).map(orjson.dumps)


@given(st.lists(_line | _json.map(orjson.dumps) | st.binary(max_size=20), max_size=8))
def test_parse_output_file_never_raises_and_keeps_types(lines: list[bytes]) -> None:
    """Whatever the file holds, parsing yields only well-typed items, one per keyed line."""
    items = list(parse_output_file(b"\n".join(lines)))
    for item in items:
        assert isinstance(item.key, str)
        assert item.response is None or isinstance(item.response, dict)
        assert item.error is None or isinstance(item.error, dict)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"key": "1", "response": "oops"}', OutputItem("1", None, None)),
        (b'{"key": "1", "error": "boom"}', OutputItem("1", None, {"message": "boom"})),
        (b'{"key": "1", "response": [1]}', OutputItem("1", None, None)),
        (b'{"key": "1", "response": {}, "status": ""}', OutputItem("1", {}, None)),
        (b'{"key": "1", "response": {}, "error": {}}', OutputItem("1", {}, None)),
    ],
)
def test_parse_output_file_normalises_non_object_payloads(
    line: bytes, expected: OutputItem
) -> None:
    """A non-object response or error must not reach the result builder (it calls .get).

    An empty error or status ("" or {}) is no error, so the response still counts.
    """
    assert list(parse_output_file(line)) == [expected]


# -- error mapping ---------------------------------------------------------------------


def _api_error(cls: type[genai_errors.APIError], code: int, status: str | None) -> Exception:
    """Built as the SDK does: the status code plus the parsed JSON error body."""
    body: dict[str, Any] = {"code": code, "message": f"msg {code}"}
    if status is not None:
        body["status"] = status
    return cls(code, {"error": body})


@pytest.mark.parametrize(
    ("cls", "code", "status", "want"),
    [
        (genai_errors.ClientError, 400, "INVALID_ARGUMENT", ProviderRejected),
        (genai_errors.ClientError, 404, "NOT_FOUND", ProviderRejected),
        (genai_errors.ClientError, 403, "PERMISSION_DENIED", ProviderRejected),
        (genai_errors.ClientError, 408, None, ProviderRetryable),
        (genai_errors.ClientError, 429, "RESOURCE_EXHAUSTED", ProviderRetryable),
        (genai_errors.ServerError, 500, "INTERNAL", ProviderRetryable),
        (genai_errors.ServerError, 503, "UNAVAILABLE", ProviderRetryable),
        (genai_errors.ServerError, 503, None, ProviderRetryable),
    ],
)
def test_sdk_errors_map_to_the_tree(
    cls: type[genai_errors.APIError], code: int, status: str | None, want: type[Exception]
) -> None:
    """429, 408 and 5xx are worth retrying; other 4xx never are."""
    mapped = _map_error(_api_error(cls, code, status))
    assert type(mapped) is want
    assert isinstance(mapped, ProviderRetryable | ProviderRejected)
    assert mapped.code == code
    assert mapped.status == (status or "UNKNOWN")
    assert f"msg {code}" in str(mapped)
    assert str(code) in str(mapped)


@pytest.mark.parametrize(
    "exc",
    [
        httpx2.ConnectError("connection refused"),
        httpx2.ReadTimeout("read timed out"),
        httpx2.ConnectTimeout("connect timed out"),
        httpx2.RemoteProtocolError("peer closed"),
        httpx2.ReadError("reset"),
        TimeoutError("slow"),
        ConnectionResetError("reset"),
    ],
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    """Network trouble is transient: retry with backoff, reported as 503 UNAVAILABLE."""
    mapped = _map_error(exc)
    assert isinstance(mapped, ProviderRetryable)
    assert (mapped.code, mapped.status) == (503, "UNAVAILABLE")
    assert type(exc).__name__ in str(mapped)


def test_other_errors_pass_through_unchanged() -> None:
    """A bug in our code (say a KeyError) must not be disguised as a provider error."""
    exc = KeyError("x")
    assert _map_error(exc) is exc
