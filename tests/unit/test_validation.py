"""Hot-path request validation: accepted shapes, each rejection reason, size and tokens."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.core.records import Kind, RequestEvent
from connector.core.validation import (
    ENVELOPE_BYTES,
    MAX_METADATA_BYTES,
    MEDIA_PART_TOKENS,
    escaped_size,
    validate_request,
)
from connector.errors import InvalidRequest

LIMIT = 1_000_000
TEXT_PART = {"parts": [{"text": "hello"}], "role": "user"}


def gen(body: Any, model: str = "gemini-2.5-flash", **fields: Any) -> RequestEvent:
    """A generate request whose body is ``body`` (JSON-encoded unless already a str)."""
    text = body if isinstance(body, str) else json.dumps(body)
    return RequestEvent("req-1", model, Kind.GENERATE, text, **fields)


def embed(body: Any, model: str = "text-embedding-004") -> RequestEvent:
    """An embed request whose body is ``body``."""
    text = body if isinstance(body, str) else json.dumps(body)
    return RequestEvent("req-1", model, Kind.EMBED, text)


def reason(ev: RequestEvent, limit: int = LIMIT) -> str:
    """The user-facing reason ``ev`` is rejected with (fails the test if it is accepted)."""
    with pytest.raises(InvalidRequest) as info:
        validate_request(ev, limit)
    assert info.value.code == 400
    assert info.value.status == "INVALID_ARGUMENT"
    return info.value.reason


# -- accepted shapes -------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"contents": [TEXT_PART]},
        {"contents": [{"parts": [{"text": "hi"}]}]},
        {
            "contents": [TEXT_PART, {"role": "model", "parts": [{"text": "hi"}]}, TEXT_PART],
            "systemInstruction": {"parts": [{"text": "be brief"}], "role": "user"},
            "generationConfig": {
                "temperature": 0.2,
                "responseMimeType": "application/json",
                "thinkingConfig": {"thinking_budget": 0},
            },
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK"}],
            "tools": [{"functionDeclarations": [{"name": "f"}]}],
            "toolConfig": {"functionCallingConfig": {"mode": "AUTO"}},
            "cachedContent": "cachedContents/abc",
            "model": "models/gemini-2.5-flash",
        },
        {
            "contents": [TEXT_PART],
            "system_instruction": {"parts": [{"text": "be brief"}]},
            "generation_config": {"response_mime_type": "text/plain", "max_output_tokens": 5},
            "safety_settings": [],
            "tool_config": {},
            "cached_content": "cachedContents/abc",
            "model": "gemini-2.5-flash",
        },
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                        {"inline_data": {"mime_type": "image/png", "data": "iVBORw0KGgo="}},
                        {"fileData": {"fileUri": "https://x/files/1", "mimeType": "video/mp4"}},
                        {"file_data": {"file_uri": "https://x/files/1"}},
                    ],
                },
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"function_response": {"name": "f", "response": {}}}]},
                {"role": "model", "parts": [{"executableCode": {"code": "1"}}]},
                {"role": "model", "parts": [{"codeExecutionResult": {"outcome": "OK"}}]},
                {"role": "model", "parts": [{"thought": True, "thoughtSignature": "c2ln"}]},
            ]
        },
    ],
    ids=["minimal", "no-role", "camelCase-full", "snake_case", "media-and-tools"],
)
def test_generate_shapes_are_accepted(body: dict[str, Any]) -> None:
    """Real GenerateContentRequest shapes, in camelCase and snake_case, pass validation (the
    full ones name a cachedContent: allowed once project resources are, see below)."""
    size, tokens = validate_request(gen(body), LIMIT, True)
    assert size > 0
    assert tokens >= 1


@pytest.mark.parametrize(
    "body",
    [
        {"content": {"parts": [{"text": "alpha"}]}},
        {
            "content": {"parts": [{"text": "a"}], "role": "user"},
            "taskType": "RETRIEVAL_DOCUMENT",
            "title": "t",
            "outputDimensionality": 4,
            "model": "models/text-embedding-004",
        },
        {
            "content": {"parts": [{"text": "a"}]},
            "task_type": "CLUSTERING",
            "output_dimensionality": 8,
        },
    ],
    ids=["minimal", "camelCase", "snake_case"],
)
def test_embed_shapes_are_accepted(body: dict[str, Any]) -> None:
    """EmbedContentRequest shapes in both spellings pass validation."""
    validate_request(embed(body), LIMIT)


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "models/gemini-2.5-pro", "tunedModels/x_1"])
def test_plausible_model_names_are_accepted(model: str) -> None:
    """Bare, models/ and tunedModels/ names pass (tuned models once project resources are
    allowed: see the tests at the end)."""
    validate_request(gen({"contents": [TEXT_PART]}, model=model), LIMIT, True)


# -- size and token estimate -------------------------------------------------------


def test_size_is_the_body_as_sent_plus_envelope() -> None:
    """size_bytes counts the body as the SDK sends it (non-ASCII as \\uXXXX), plus id and
    envelope: "héllo €" is 10 UTF-8 bytes but 17 on the wire."""
    body = json.dumps({"contents": [{"parts": [{"text": "héllo €"}]}]}, ensure_ascii=False)
    size, _ = validate_request(gen(body), LIMIT)
    sent = json.dumps(json.loads(body))  # as the SDK sends it
    assert size == len(sent) + len("req-1") + ENVELOPE_BYTES
    assert size == len(body.encode()) + 7 + len("req-1") + ENVELOPE_BYTES


def test_over_the_size_limit_is_rejected_with_the_limit_named() -> None:
    """A request one byte over max_request_bytes is refused and the reason names the limit."""
    ev = gen({"contents": [TEXT_PART]})
    size, _ = validate_request(ev, LIMIT)
    validate_request(ev, size)  # exactly at the limit is fine
    why = reason(ev, size - 1)
    assert str(size - 1) in why
    assert "limit" in why


def test_token_estimate_is_a_quarter_of_the_text() -> None:
    """est_tokens is about body bytes / 4 for text-only requests."""
    text = "x" * 4000
    _, tokens = validate_request(gen({"contents": [{"parts": [{"text": text}]}]}), LIMIT)
    assert 1000 <= tokens <= 1020


def test_inline_media_does_not_inflate_the_token_estimate() -> None:
    """Base64 media counts as MEDIA_PART_TOKENS, not as a quarter of its encoded size."""
    blob = {"inlineData": {"mimeType": "image/png", "data": "A" * 400_000}}
    _, tokens = validate_request(gen({"contents": [{"parts": [blob]}]}), LIMIT)
    assert MEDIA_PART_TOKENS <= tokens < MEDIA_PART_TOKENS + 50


# -- rejections -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ev", "expected"),
    [
        (dataclasses.replace(gen({"contents": [TEXT_PART]}), request_id=""), "request_id is empty"),
        (
            dataclasses.replace(gen({"contents": [TEXT_PART]}), request_id="x" * 257),
            "over the limit of 256",
        ),
        (gen({"contents": [TEXT_PART]}, model=""), "model is empty"),
        (gen({"contents": [TEXT_PART]}, model="models/../secrets"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, model="gemini..x"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, model="gemini?key=1"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, model="a&b"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, model="models/"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, model="publishers/google/m"), "not a valid model name"),
        (gen({"contents": [TEXT_PART]}, group="g" * 300), "group must be"),
        (
            gen({"contents": [TEXT_PART]}, metadata={"k": "v" * MAX_METADATA_BYTES}),
            "metadata is",
        ),
        (gen("not json"), "not valid JSON"),
        (gen("[1, 2]"), "Expected `object`, got `array`"),
        (gen({}), "missing required field `contents`"),
        (gen({"contents": []}), "contents is empty"),
        (gen({"contents": {"parts": []}}), "Expected `array`"),
        (gen({"contents": [{"parts": []}]}), "contents[0].parts is empty"),
        (gen({"contents": [{"role": "user"}]}), "missing required field `parts`"),
        (gen({"contents": [{"parts": [{}]}]}), "contents[0].parts[0] has no content"),
        (gen({"contents": [{"parts": [{"videoMetadata": {}}]}]}), "has no content"),
        (gen({"contents": [{"parts": ["hi"]}]}), "Expected `object`, got `str`"),
        (gen({"contents": [{"parts": [{"text": 5}]}]}), "Expected `str`, got `int`"),
        (gen({"contents": [{"role": "bot", "parts": [{"text": "x"}]}]}), "'user' or 'model'"),
        (gen({"contents": [{"parts": [{"text": "x"}], "extra": 1}]}), "unknown field `extra`"),
        (
            gen({"contents": [{"parts": [{"inlineData": {"data": "AA=="}}]}]}),
            "inlineData needs a mimeType",
        ),
        (
            gen({"contents": [{"parts": [{"fileData": {"mimeType": "video/mp4"}}]}]}),
            "fileData needs a fileUri",
        ),
        (
            gen({"contents": [{"parts": [{"inlineData": {}, "inline_data": {}}]}]}),
            "missing required field `data`",
        ),
        (
            gen(
                {
                    "contents": [
                        {
                            "parts": [
                                {
                                    "inlineData": {"mimeType": "a/b", "data": ""},
                                    "inline_data": {"mimeType": "a/b", "data": ""},
                                }
                            ]
                        }
                    ]
                }
            ),
            "sets both 'inlineData' and 'inline_data'",
        ),
        (gen({"contents": [TEXT_PART], "temperature": 0.2}), "unknown field 'temperature'"),
        (gen({"contents": [TEXT_PART], "systemInstruction": "be brief"}), "Expected `object`"),
        (
            gen({"contents": [TEXT_PART], "systemInstruction": {"parts": []}}),
            "systemInstruction.parts is empty",
        ),
        (
            gen(
                {
                    "contents": [TEXT_PART],
                    "systemInstruction": TEXT_PART,
                    "system_instruction": TEXT_PART,
                }
            ),
            "sets both 'systemInstruction' and 'system_instruction'",
        ),
        (
            gen({"contents": [TEXT_PART], "generationConfig": {"responseMimeType": 1}}),
            "responseMimeType",
        ),
        (gen({"contents": [TEXT_PART], "generationConfig": []}), "Expected `object`"),
        (gen({"contents": [TEXT_PART], "tools": {}}), "Expected `array`"),
        (gen({"contents": [TEXT_PART], "safetySettings": [1]}), "Expected `object`"),
        (gen({"contents": [TEXT_PART], "cachedContent": 3}), "Expected `str`"),
        (gen({"contents": [TEXT_PART], "model": "models/gemini-2.5-pro"}), "must match"),
        (embed({"contents": [TEXT_PART]}), "unknown field 'contents'"),
        (embed({}), "missing required field `content`"),
        (embed({"content": {"parts": []}}), "content.parts is empty"),
        (embed({"content": TEXT_PART, "outputDimensionality": 0}), "`int` >= 1"),
        (embed({"content": TEXT_PART, "outputDimensionality": 1.5}), "Expected `int`"),
        (embed({"content": TEXT_PART, "taskType": 1}), "Expected `str`"),
        (
            embed({"content": TEXT_PART, "taskType": "CLUSTERING", "task_type": "CLUSTERING"}),
            "sets both 'taskType' and 'task_type'",
        ),
        (embed({"content": TEXT_PART, "model": "other-model"}), "must match"),
        (dataclasses.replace(gen({"contents": [TEXT_PART]}), kind="count"), "not supported"),
        (gen('{"contents": [{"parts": [{"text": "\ud800"}]}]}'), "not valid UTF-8"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_rejections_name_the_reason(ev: RequestEvent, expected: str) -> None:
    """Each broken request is refused with a reason that says what to fix."""
    assert expected in reason(ev)


def test_kind_as_a_plain_string_is_accepted() -> None:
    """A hand-built event with kind="embed" (a str, not Kind) validates like Kind.EMBED."""
    ev = dataclasses.replace(embed({"content": TEXT_PART}), kind="embed")
    assert validate_request(ev, LIMIT) == validate_request(embed({"content": TEXT_PART}), LIMIT)


def test_unknown_top_level_field_lists_the_known_ones() -> None:
    """The reason for an unknown top-level key lists the accepted keys, both spellings."""
    why = reason(gen({"contents": [TEXT_PART], "generation_cfg": {}}))
    assert "'generation_cfg'" in why
    for known in ("contents", "generationConfig", "generation_config", "systemInstruction"):
        assert known in why


def test_large_metadata_within_the_limit_is_accepted() -> None:
    """Metadata just under the byte bound passes (multi-byte characters counted as bytes)."""
    value = "é" * ((MAX_METADATA_BYTES - 1) // 2)
    validate_request(gen({"contents": [TEXT_PART]}, metadata={"k": value}), LIMIT)
    with pytest.raises(InvalidRequest, match="metadata is"):
        validate_request(gen({"contents": [TEXT_PART]}, metadata={"k": value + "éé"}), LIMIT)


# -- robustness ---------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "contents",
                    "content",
                    "parts",
                    "role",
                    "text",
                    "inlineData",
                    "inline_data",
                    "data",
                    "mimeType",
                    "fileData",
                    "fileUri",
                    "generationConfig",
                    "responseMimeType",
                    "systemInstruction",
                    "system_instruction",
                    "model",
                    "taskType",
                    "outputDimensionality",
                    "x",
                ]
            )
            | st.text(max_size=6),
            children,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=400)
@given(json_values, st.sampled_from(Kind))
def test_arbitrary_json_only_raises_invalid_request(body: Any, kind: Kind) -> None:
    """Whatever JSON arrives, validation either accepts it or raises InvalidRequest."""
    ev = RequestEvent("r", "gemini-2.5-flash", kind, json.dumps(body))
    try:
        size, tokens = validate_request(ev, LIMIT)
    except InvalidRequest as exc:
        reason_text = exc.reason
    else:
        assert size > 0
        assert tokens >= 1
        return
    assert reason_text


@given(st.text(max_size=200), st.sampled_from(Kind))
def test_arbitrary_text_only_raises_invalid_request(body: str, kind: Kind) -> None:
    """Arbitrary text bodies, lone surrogates included, only ever raise InvalidRequest."""
    with contextlib.suppress(InvalidRequest):
        validate_request(RequestEvent("r", "m", kind, body), LIMIT)


@pytest.mark.parametrize(
    "text",
    ["plain ascii", "Привет, мир", "你好世界", "emoji 😀🚀 and ✓", 'quotes " and \\ and \n', ""],
)
def test_escaped_size_is_the_size_json_dumps_sends(text: str) -> None:
    """The SDK sends json.dumps (ensure_ascii): non-ASCII as \\uXXXX, astral as two of them."""
    assert escaped_size(json.dumps(text, ensure_ascii=False)) == len(json.dumps(text))


def test_non_ascii_requests_are_sized_by_the_bytes_sent_inline() -> None:
    """1,000 Cyrillic characters: 2,000 UTF-8 bytes, 6,000 as the SDK sends them."""
    body = {"contents": [{"parts": [{"text": "ж" * 1000}]}]}
    size, tokens = validate_request(gen(json.dumps(body, ensure_ascii=False)), LIMIT)
    sent = len(json.dumps(body))
    assert sent <= size <= sent + ENVELOPE_BYTES + 16
    # Tokens follow the bytes sent too (A11): the provider counts what it receives, and an
    # estimate from the UTF-8 size let a batch three times over the token cap through.
    assert tokens * 4 >= sent - 64


# -- resources of the shared project -------------------------------------------------------


def _ev(body: dict[str, object], model: str = "gemini-2.5-flash") -> RequestEvent:
    import json

    return RequestEvent("r1", model, Kind.GENERATE, json.dumps(body))


def _part(uri: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"fileData": {"fileUri": uri}}]}]}


@pytest.mark.parametrize(
    "uri",
    [
        "files/abc123",
        "https://generativelanguage.googleapis.com/v1beta/files/abc123",
        "gs://other-project/secret.pdf",
    ],
)
def test_files_of_the_project_are_refused_by_default(uri: str) -> None:
    with pytest.raises(InvalidRequest, match="stored in the sidecar's Gemini project") as err:
        validate_request(_ev(_part(uri)), 10_000_000)
    assert (err.value.code, err.value.status) == (403, "PERMISSION_DENIED")
    validate_request(_ev(_part(uri)), 10_000_000, allow_project_resources=True)


def test_public_file_uris_stay_allowed() -> None:
    validate_request(_ev(_part("https://www.youtube.com/watch?v=9hE5-98ZeCg")), 10_000_000)


def test_cached_contents_and_tuned_models_are_refused_by_default() -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    with pytest.raises(InvalidRequest, match="cachedContent"):
        validate_request(_ev({**body, "cachedContent": "cachedContents/xyz"}), 10_000_000)
    with pytest.raises(InvalidRequest, match="tuned model"):
        validate_request(_ev(body, model="tunedModels/someone-elses"), 10_000_000)
    validate_request(_ev(body, model="tunedModels/ours"), 10_000_000, True)


@pytest.mark.parametrize("where", ["tools", "generationConfig"])
def test_absurdly_nested_bodies_never_crash(where: str) -> None:
    """Hostile nesting (found by the chaos fuzzer) ends in InvalidRequest or passes, never in
    a RecursionError or another exception that would stop the partition."""
    deep = '{"a": ' * 5000 + '"x"' + "}" * 5000
    value = "[" + deep + "]" if where == "tools" else '{"responseSchema": ' + deep + "}"
    head = '{"contents": [{"role": "user", "parts": [{"text": "hi"}]}], '
    body = head + f'"{where}": {value}' + "}"
    with contextlib.suppress(InvalidRequest):
        validate_request(RequestEvent("r1", "gemini-2.5-flash", Kind.GENERATE, body), 10**8)


@pytest.mark.parametrize("model", [["gemini-2.5-flash"], {"m": 1}, 7, None])
def test_a_model_that_is_not_a_string_is_refused_clearly(model: object) -> None:
    """Found by the chaos suite's fuzzer: an unhashable model raised TypeError."""
    ev = RequestEvent("r1", model, Kind.GENERATE, '{"contents": []}')  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="model must be a string"):
        validate_request(ev, 1_000_000)


def test_token_estimate_counts_non_ascii_text_as_sent() -> None:
    """A11: Cyrillic goes out as 6-byte escapes, and the emulator counts a create's bytes as
    sent (a quarter each): the estimate is never below that, or a batch sealed under the
    enqueued-token cap would still be refused."""
    text = "Привет, мир! " * 300
    body = {"contents": [{"parts": [{"text": text}]}]}
    _, tokens = validate_request(gen(body), LIMIT)
    assert tokens * 4 >= escaped_size(json.dumps(body, ensure_ascii=False))
