"""The tenant boundary: every place a request may name a resource of the shared project.

One Gemini project serves every upstream service, so a request that names a stored file,
cache, file-search store, corpus or tuned model could read another tenant's data. Each
place the GenerateContent and EmbedContent schemas allow a resource name is refused unless
CONNECTOR_ALLOW_PROJECT_RESOURCES, in both JSON spellings (Gemini accepts camelCase and
snake_case) and however the JSON is escaped.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from connector.core.records import Kind, RequestEvent
from connector.core.validation import validate_request
from connector.errors import InvalidRequest

LIMIT = 10_000_000
FILE = "files/abc123"
TEXT = {"text": "hi"}


def _gen(body: dict[str, Any], model: str = "gemini-2.5-flash") -> RequestEvent:
    return RequestEvent("r1", model, Kind.GENERATE, json.dumps(body))


def _embed(body: dict[str, Any]) -> RequestEvent:
    return RequestEvent("r1", "gemini-embedding-001", Kind.EMBED, json.dumps(body))


def _user(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": list(parts)}]}


def _response(file_key: str, uri_key: str, uri: str) -> dict[str, Any]:
    return {"name": "f", "response": {"ok": True}, "parts": [{file_key: {uri_key: uri}}]}


# One entry per place (and spelling) a resource name can hide in a request.
PLACES: dict[str, RequestEvent] = {
    "contents.parts.fileData": _gen(_user({"fileData": {"fileUri": FILE}})),
    "contents.parts.file_data": _gen(_user({"file_data": {"file_uri": FILE}})),
    "later turn, second part": _gen(
        {
            "contents": [
                {"role": "user", "parts": [TEXT]},
                {"role": "model", "parts": [TEXT]},
                {"role": "user", "parts": [TEXT, {"fileData": {"fileUri": FILE}}]},
            ]
        }
    ),
    "systemInstruction.parts.fileData": _gen(
        {**_user(TEXT), "systemInstruction": {"parts": [{"fileData": {"fileUri": FILE}}]}}
    ),
    "system_instruction.parts.file_data": _gen(
        {**_user(TEXT), "system_instruction": {"parts": [{"file_data": {"file_uri": FILE}}]}}
    ),
    "functionResponse.parts.fileData": _gen(
        _user({"functionResponse": _response("fileData", "fileUri", FILE)})
    ),
    "function_response.parts.file_data": _gen(
        _user({"function_response": _response("file_data", "file_uri", FILE)})
    ),
    "functionResponse in systemInstruction": _gen(
        {
            **_user(TEXT),
            "systemInstruction": {
                "parts": [{"functionResponse": _response("fileData", "fileUri", FILE)}]
            },
        }
    ),
    "cachedContent": _gen({**_user(TEXT), "cachedContent": "cachedContents/xyz"}),
    "cached_content": _gen({**_user(TEXT), "cached_content": "cachedContents/xyz"}),
    "tools.fileSearch": _gen(
        {**_user(TEXT), "tools": [{"fileSearch": {"fileSearchStoreNames": ["fileSearchStores/s"]}}]}
    ),
    "tools.file_search": _gen(
        {
            **_user(TEXT),
            "tools": [
                {"googleSearch": {}},
                {"file_search": {"file_search_store_names": ["fileSearchStores/s"]}},
            ],
        }
    ),
    "tools.retrieval.vertexAiSearch": _gen(
        {
            **_user(TEXT),
            "tools": [{"retrieval": {"vertexAiSearch": {"datastore": "projects/p/x"}}}],
        }
    ),
    "tools.retrieval.vertex_rag_store": _gen(
        {
            **_user(TEXT),
            "tools": [
                {"retrieval": {"vertex_rag_store": {"rag_resources": [{"rag_corpus": "c"}]}}}
            ],
        }
    ),
    "model tunedModels/": _gen(_user(TEXT), model="tunedModels/acme-support-7"),
    "embed content.parts.fileData": _embed(
        {"content": {"parts": [{"fileData": {"fileUri": FILE}}]}}
    ),
    "embed content.parts.file_data": _embed(
        {"content": {"parts": [TEXT, {"file_data": {"file_uri": FILE}}]}}
    ),
    "embed functionResponse.parts.fileData": _embed(
        {"content": {"parts": [{"functionResponse": _response("fileData", "fileUri", FILE)}]}}
    ),
    "unicode-escaped keys": RequestEvent(
        "r1",
        "gemini-2.5-flash",
        Kind.GENERATE,
        '{"contents": [{"parts": [{"file\\u0044ata": {"file\\u0055ri": "files\\/abc"}}]}]}',
    ),
    "duplicate key, the last one a file": RequestEvent(
        "r1",
        "gemini-2.5-flash",
        Kind.GENERATE,
        '{"contents": [{"parts": [{"fileData": {"fileUri": "https://example.com/a.pdf",'
        ' "fileUri": "files/abc"}}]}]}',
    ),
}


@pytest.mark.parametrize("ev", PLACES.values(), ids=PLACES.keys())
def test_each_place_is_refused_unless_allowed(ev: RequestEvent) -> None:
    with pytest.raises(InvalidRequest, match="stored in the sidecar's Gemini project") as err:
        validate_request(ev, LIMIT)
    assert (err.value.code, err.value.status) == (403, "PERMISSION_DENIED")
    assert "CONNECTOR_ALLOW_PROJECT_RESOURCES" in str(err.value)
    validate_request(ev, LIMIT, allow_project_resources=True)  # a single-tenant deployment


def test_duplicate_keys_resolve_as_the_request_is_sent() -> None:
    """The job is built from `orjson.loads` of the body (the last duplicate wins): the guard
    must see the same value, or a duplicate key could smuggle a file past it."""
    ev = PLACES["duplicate key, the last one a file"]
    sent = orjson.loads(ev.body)["contents"][0]["parts"][0]["fileData"]["fileUri"]
    assert sent == "files/abc"


@pytest.mark.parametrize(
    "uri",
    [
        "files/abc123",
        " FILES/abc123",
        "https://generativelanguage.googleapis.com/v1beta/files/abc123",
        "https://storage.googleapis.com/bucket/object.pdf",
        "gs://other-project/secret.pdf",
        "cachedContents/xyz",
        "fileSearchStores/store-1/media/blob-2",
        "tunedModels/acme-7",
        "corpora/c1/documents/d1",
        "projects/p/locations/us/ragCorpora/r",
    ],
)
def test_resource_names_and_google_api_urls_are_project_files(uri: str) -> None:
    with pytest.raises(InvalidRequest, match="is a file of the project"):
        validate_request(_gen(_user({"fileData": {"fileUri": uri}})), LIMIT)


@pytest.mark.parametrize(
    "uri",
    [
        "https://www.youtube.com/watch?v=9hE5-98ZeCg",
        "https://example.com/files/report.pdf",
        "https://example.com/?next=storage.googleapis.com",
        "https://googleapis.com.example.net/files/x",
    ],
)
def test_public_urls_stay_allowed(uri: str) -> None:
    validate_request(_gen(_user({"fileData": {"fileUri": uri}})), LIMIT)


@pytest.mark.parametrize(
    "body",
    [
        _user(TEXT, {"functionResponse": {"name": "f", "response": {"fileUri": "files/x"}}}),
        _user({"functionResponse": {"name": "f", "response": {}, "parts": [{"inlineData": {}}]}}),
        {
            **_user(TEXT),
            "tools": [
                {"functionDeclarations": [{"name": "files/lookup"}]},
                {"googleSearch": {}},
                {"codeExecution": {}},
                {"urlContext": {}},
                {"fileSearch": None},
                {"retrieval": {"externalApi": {"endpoint": "https://example.com"}}},
            ],
        },
        _user({"text": "please read files/abc123 and cachedContents/x for me"}),
    ],
    ids=["function result data", "inline response media", "other tools", "names in prose"],
)
def test_what_names_no_stored_resource_passes(body: dict[str, Any]) -> None:
    """Data the model reads (a function's result, prose) is not fetched by Gemini."""
    validate_request(_gen(body), LIMIT)
