"""The google-genai boundary: the create body on the wire, Operation reading, JSONL, errors.

No network: the real SDK sends through an in-memory transport, and errors are built the
way the SDK builds them.
"""

from __future__ import annotations

from typing import Any

import httpx2
import orjson
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from hypothesis import given
from hypothesis import strategies as st

from connector.adapters.gemini import Gemini, map_error, remote_job
from connector.core.jsonl import jsonl_lines, parse_output_file
from connector.core.records import JobInput, JobState, Kind, OutputItem
from connector.errors import (
    ProviderAuthFailed,
    ProviderFileGone,
    ProviderRejected,
    ProviderRequestTooLarge,
    ProviderRetryable,
)

CONTENTS = [{"role": "user", "parts": [{"text": "Say hi"}]}]
CAMEL = {
    "contents": CONTENTS,
    "systemInstruction": {"parts": [{"text": "Be brief."}]},
    "tools": [{"functionDeclarations": [{"name": "lookup", "description": "find a thing"}]}],
    "generationConfig": {"temperature": 0.25, "responseMimeType": "application/json"},
}
SNAKE = {
    "contents": CONTENTS,
    "system_instruction": {"parts": [{"text": "Be brief."}]},
    "generation_config": {"max_output_tokens": 64, "thinking_config": {"thinking_budget": 0}},
    "someFutureField": {"kept": True},
}


# -- create: the wire body, captured from the real SDK ------------------------------------


def _captured_gemini(seen: list[dict[str, Any]]) -> Gemini:
    """A Gemini shell whose SDK client sends through a MockTransport that records bodies."""

    def handler(request: httpx2.Request) -> httpx2.Response:
        seen.append({"path": request.url.path, "body": orjson.loads(request.content or b"{}")})
        op = {"name": "batches/abc", "metadata": {"state": "BATCH_STATE_PENDING"}}
        return httpx2.Response(200, json=op)

    g = Gemini(api_key="k", base_url="http://gemini.test", api_version="v1beta")
    g._client = genai.Client(
        api_key="k",
        http_options=types.HttpOptions(
            base_url="http://gemini.test",
            api_version="v1beta",
            httpx_client=httpx2.Client(transport=httpx2.MockTransport(handler)),
        ),
    )
    return g


def test_inline_requests_reach_the_wire_verbatim() -> None:
    """REST bodies in either casing, and fields the SDK does not model, pass through unchanged."""
    seen: list[dict[str, Any]] = []
    g = _captured_gemini(seen)
    items = [JobInput("7", CAMEL, {"key": "7"}), JobInput("9", SNAKE, {"key": "9", "x": "y"})]
    name = g.create("gemini-2.5-flash", Kind.GENERATE, "grp:p0-7-abc", 3, inline=items)
    assert name == "batches/abc"
    assert seen[0]["path"] == "/v1beta/models/gemini-2.5-flash:batchGenerateContent"
    batch = seen[0]["body"]["batch"]
    assert batch["displayName"] == "grp:p0-7-abc"
    assert batch["priority"] == "3"
    assert batch["inputConfig"]["requests"]["requests"] == [
        {"request": CAMEL, "metadata": {"key": "7"}},
        {"request": SNAKE, "metadata": {"key": "9", "x": "y"}},
    ]


def test_file_job_names_the_file_and_omits_zero_priority() -> None:
    """A file job carries `fileName`; priority 0 (the default) is not sent at all."""
    seen: list[dict[str, Any]] = []
    g = _captured_gemini(seen)
    g.create("gemini-2.5-flash", Kind.GENERATE, "grp:j", 0, file_name="files/in1")
    batch = seen[0]["body"]["batch"]
    assert batch["inputConfig"] == {"fileName": "files/in1"}
    assert "priority" not in batch


# -- reading a job: the Operation JSON ----------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "state"),
    [
        ("BATCH_STATE_PENDING", JobState.PENDING),
        ("BATCH_STATE_RUNNING", JobState.RUNNING),
        ("BATCH_STATE_SUCCEEDED", JobState.SUCCEEDED),
        ("BATCH_STATE_FAILED", JobState.FAILED),
        ("BATCH_STATE_CANCELLED", JobState.CANCELLED),
        ("BATCH_STATE_EXPIRED", JobState.EXPIRED),
        ("JOB_STATE_SUCCEEDED", JobState.SUCCEEDED),
        ("BATCH_STATE_SOMETHING_NEW", JobState.UNKNOWN),
        ("", JobState.UNKNOWN),
    ],
)
def test_states_map_from_the_wire(wire: str, state: JobState) -> None:
    """BATCH_STATE_* (and the SDK's JOB_STATE_*) map onto JobState; unknown ones stay unknown."""
    assert remote_job("batches/x", {"metadata": {"state": wire}}).state is state


def test_inline_output_is_read_by_key_with_errors() -> None:
    """Inline responses keep their metadata key; an error item carries its error object."""
    op = {
        "name": "batches/x",
        "metadata": {
            "state": "BATCH_STATE_SUCCEEDED",
            "displayName": "grp:j",
            "output": {
                "inlinedResponses": {
                    "inlinedResponses": [
                        {"response": {"candidates": []}, "metadata": {"key": "5"}},
                        {"error": {"code": 400, "message": "bad"}, "metadata": {"key": "6"}},
                        {"response": {"candidates": []}},
                    ]
                }
            },
        },
        "done": True,
    }
    job = remote_job("batches/x", op)
    assert job.display_name == "grp:j"
    assert job.inline == (
        OutputItem("5", {"candidates": []}, None),
        OutputItem("6", None, {"code": 400, "message": "bad"}),
        OutputItem("", {"candidates": []}, None),
    )
    assert job.responses_file is None


def test_file_output_and_the_response_mirror() -> None:
    """`responsesFile` is found in metadata.output, or in the Operation's `response` mirror."""
    in_meta = {
        "metadata": {"state": "BATCH_STATE_SUCCEEDED", "output": {"responsesFile": "files/o"}}
    }
    mirrored = {
        "metadata": {"state": "BATCH_STATE_SUCCEEDED"},
        "response": {"responsesFile": "files/o"},
    }
    assert remote_job("batches/x", in_meta).responses_file == "files/o"
    assert remote_job("batches/x", mirrored).responses_file == "files/o"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
        max_leaves=20,
    )
)
def test_any_json_never_crashes_the_reader(value: object) -> None:
    """Whatever the provider sends, reading it yields a RemoteJob (UNKNOWN at worst)."""
    op = {"metadata": value, "response": value} if not isinstance(value, dict) else value
    job = remote_job("batches/x", op)
    assert isinstance(job.state, JobState)


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
        (genai_errors.ClientError, 403, "PERMISSION_DENIED", ProviderAuthFailed),
        (genai_errors.ClientError, 401, "UNAUTHENTICATED", ProviderAuthFailed),
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
    """429, 408 and 5xx are worth retrying; other 4xx never are (401/403: the key's fault)."""
    mapped = map_error(_api_error(cls, code, status))
    assert type(mapped) is want
    assert isinstance(mapped, ProviderRetryable | ProviderRejected)
    assert mapped.code == code
    assert mapped.status == (status or "UNKNOWN")
    assert f"msg {code}" in str(mapped)
    assert str(code) in str(mapped)


@pytest.mark.parametrize(
    ("code", "status", "message", "files", "want"),
    [
        (
            400,
            "INVALID_ARGUMENT",
            "API key not valid. Please pass a valid API key.",
            False,
            ProviderAuthFailed,
        ),
        (
            400,
            "INVALID_ARGUMENT",
            "Request payload size exceeds the limit: 20971520 bytes.",
            False,
            ProviderRequestTooLarge,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "You do not have permission to access the File abc or it may not exist.",
            True,
            ProviderFileGone,
        ),
        (404, "NOT_FOUND", "File files/abc not found.", True, ProviderFileGone),
        (
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers.",
            True,
            ProviderAuthFailed,
        ),
        (
            403,
            "PERMISSION_DENIED",
            "You do not have permission to access the File abc.",
            False,
            ProviderAuthFailed,
        ),
        (400, "INVALID_ARGUMENT", "contents is required", False, ProviderRejected),
    ],
)
def test_auth_size_and_gone_files_are_told_apart(
    code: int, status: str, message: str, files: bool, want: type[Exception]
) -> None:
    """A rotated key is an outage, an oversized inline create goes to a file, a gone file is
    resubmitted: each needs its own type, all still `ProviderRejected`."""
    exc = genai_errors.ClientError(
        code, {"error": {"code": code, "status": status, "message": message}}
    )
    mapped = map_error(exc, files=files)
    assert type(mapped) is want
    assert isinstance(mapped, ProviderRejected)


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
    mapped = map_error(exc)
    assert isinstance(mapped, ProviderRetryable)
    assert (mapped.code, mapped.status) == (503, "UNAVAILABLE")
    assert type(exc).__name__ in str(mapped)


def test_other_errors_pass_through_unchanged() -> None:
    """A bug in our code (say a KeyError) must not be disguised as a provider error."""
    exc = KeyError("x")
    assert map_error(exc) is exc


def test_private_get_call_contract() -> None:
    """`Gemini.get` uses the SDK's private `_api_client.request`: pin what it relies on.

    If a google-genai release renames the call or changes what it returns, this fails here
    (fast, no network: the SDK talks to the emulator service in-process) instead of at run time.
    """
    from connector.emulator.config import EmulatorConfig
    from connector.testing import InProcessEmulator, emulated_gemini

    gemini, emu = emulated_gemini(InProcessEmulator(EmulatorConfig(queue_delay_s=60)))
    try:
        inputs = [JobInput("k0", {"contents": CONTENTS}, {"key": "k0"})]
        name = gemini.create("gemini-2.5-flash", Kind.GENERATE, "g:contract", 0, inline=inputs)
        api = gemini._client._api_client
        assert callable(api.request)
        response = api.request("get", name, {})
        body = orjson.loads(response.body)
        assert body["name"] == name
        assert body["metadata"]["state"].endswith("PENDING")
        job = gemini.get(name)
        assert job.name == name
        assert job.state is JobState.PENDING
        assert job.display_name == "g:contract"
    finally:
        gemini.close()
        emu.close()


def test_transport_errors_of_either_http_stack_are_retryable() -> None:
    """A9: the SDK can be set to use httpx instead of httpx2; its timeouts are transport
    errors too (retryable, and after a create, looked up first), never unmapped."""
    import httpx

    for exc in (httpx.ReadTimeout("slow"), httpx2.ReadTimeout("slow"), httpx.ConnectError("x")):
        mapped = map_error(exc)
        assert isinstance(mapped, ProviderRetryable), exc
