"""Hot-path structural validation of request events (pure, no I/O).

One malformed request must not poison a batch of thousands: Gemini rejects a
whole inline job over one bad request. So every request is checked on intake,
before it joins a batch, and the cost has to stay near a microsecond: the body
is decoded with msgspec into small typed Structs (no SDK pydantic models; see
docs/contract.md for the measurements).

Gemini's JSON parser accepts camelCase and snake_case for every field, so each
Struct declares both spellings as optional fields and a request that sets both
for one field is rejected, as proto3 JSON parsing does. Unknown keys are
rejected at the top level and in Content, Blob and FileData, whose field lists
are small and stable; Part, generationConfig, tools, toolConfig and
safetySettings are checked for type only, so new Gemini fields pass through.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType, field

from connector.core.records import Kind, RequestEvent
from connector.errors import InvalidRequest

__all__ = [
    "ENVELOPE_BYTES",
    "MAX_GROUP_CHARS",
    "MAX_METADATA_BYTES",
    "MAX_MODEL_CHARS",
    "MAX_REQUEST_ID_CHARS",
    "MEDIA_PART_TOKENS",
    "escaped_size",
    "validate_request",
]

MAX_REQUEST_ID_CHARS = 256
MAX_MODEL_CHARS = 256
MAX_GROUP_CHARS = 256
MAX_METADATA_BYTES = 16 * 1024
"""Bound on the UTF-8 size of all metadata keys and values; it is echoed in every result."""
ENVELOPE_BYTES = 64
"""What wrapping a request in a job adds besides its body and id: ``{"key":..,"request":..}``."""
MEDIA_PART_TOKENS = 258
"""Token estimate per inline or file media part (Gemini's count for one image tile)."""

_MODEL = re.compile(r"(?:models/|tunedModels/)?[A-Za-z0-9][A-Za-z0-9._-]*")
_ModelCache = set[str]
_GOOD_MODELS: _ModelCache = set()
"""Model names already accepted: a set hit instead of a regex per request (bounded)."""
_GOOD_MODELS_MAX = 1024

# ---------------------------------------------------------------------------
# The body shapes. Field names are the JSON keys (both spellings); attribute
# names ending in _ are the snake_case twins.

_Obj = dict[str, msgspec.Raw]
"""A JSON object whose values are kept raw: checks the type without decoding the inside."""


class _Blob(Struct, forbid_unknown_fields=True):
    data: str
    mimeType: str | UnsetType = UNSET
    mime_type_: str | UnsetType = field(default=UNSET, name="mime_type")
    displayName: str | UnsetType = UNSET
    display_name_: str | UnsetType = field(default=UNSET, name="display_name")


class _FileData(Struct, forbid_unknown_fields=True):
    fileUri: str | UnsetType = UNSET
    file_uri_: str | UnsetType = field(default=UNSET, name="file_uri")
    mimeType: str | UnsetType = UNSET
    mime_type_: str | UnsetType = field(default=UNSET, name="mime_type")
    displayName: str | UnsetType = UNSET
    display_name_: str | UnsetType = field(default=UNSET, name="display_name")


class _ResponseFileData(Struct):
    """A file inside a functionResponse part: only the URI matters here."""

    fileUri: str | UnsetType | None = UNSET
    file_uri_: str | UnsetType | None = field(default=UNSET, name="file_uri")


class _ResponsePart(Struct):
    fileData: _ResponseFileData | UnsetType | None = UNSET
    file_data_: _ResponseFileData | UnsetType | None = field(default=UNSET, name="file_data")


class _FunctionResponse(Struct):
    """Typed only as far as its media parts (which may name files); the rest passes."""

    parts: list[_ResponsePart] | UnsetType | None = UNSET


class _Part(Struct):
    text: str | UnsetType = UNSET
    inlineData: _Blob | UnsetType = UNSET
    inline_data_: _Blob | UnsetType = field(default=UNSET, name="inline_data")
    fileData: _FileData | UnsetType = UNSET
    file_data_: _FileData | UnsetType = field(default=UNSET, name="file_data")
    functionCall: _Obj | UnsetType = UNSET
    function_call_: _Obj | UnsetType = field(default=UNSET, name="function_call")
    functionResponse: _FunctionResponse | UnsetType = UNSET
    function_response_: _FunctionResponse | UnsetType = field(
        default=UNSET, name="function_response"
    )
    executableCode: _Obj | UnsetType = UNSET
    executable_code_: _Obj | UnsetType = field(default=UNSET, name="executable_code")
    codeExecutionResult: _Obj | UnsetType = UNSET
    code_execution_result_: _Obj | UnsetType = field(default=UNSET, name="code_execution_result")
    toolCall: _Obj | UnsetType = UNSET
    tool_call_: _Obj | UnsetType = field(default=UNSET, name="tool_call")
    toolResponse: _Obj | UnsetType = UNSET
    tool_response_: _Obj | UnsetType = field(default=UNSET, name="tool_response")
    thought: bool | UnsetType = UNSET
    thoughtSignature: str | UnsetType = UNSET
    thought_signature_: str | UnsetType = field(default=UNSET, name="thought_signature")


_PART_PAIRS = (
    ("inlineData", "inline_data"),
    ("fileData", "file_data"),
    ("functionCall", "function_call"),
    ("functionResponse", "function_response"),
    ("executableCode", "executable_code"),
    ("codeExecutionResult", "code_execution_result"),
    ("toolCall", "tool_call"),
    ("toolResponse", "tool_response"),
    ("thoughtSignature", "thought_signature"),
)
_PART_DATA = (
    "text",
    *(name for pair in _PART_PAIRS[:-1] for name in pair),
    "thought",
    "thoughtSignature",
    "thought_signature",
)


_Role = Literal["user", "model", "function", ""]
"""Gemini's roles; 'function' is accepted for older function-calling clients, '' means unset."""


class _Content(Struct, forbid_unknown_fields=True):
    parts: Annotated[list[_Part], Meta(min_length=1)]
    role: _Role | UnsetType = UNSET


class _Retrieval(Struct):
    vertexAiSearch: _Obj | UnsetType | None = UNSET
    vertex_ai_search_: _Obj | UnsetType | None = field(default=UNSET, name="vertex_ai_search")
    vertexRagStore: _Obj | UnsetType | None = UNSET
    vertex_rag_store_: _Obj | UnsetType | None = field(default=UNSET, name="vertex_rag_store")


class _Tool(Struct):
    """Typed only where a tool names stored resources; other tools pass through."""

    fileSearch: _Obj | UnsetType | None = UNSET
    file_search_: _Obj | UnsetType | None = field(default=UNSET, name="file_search")
    retrieval: _Retrieval | UnsetType | None = UNSET


class _GenerationConfig(Struct):
    responseMimeType: str | UnsetType = UNSET
    response_mime_type_: str | UnsetType = field(default=UNSET, name="response_mime_type")


class _Generate(Struct, forbid_unknown_fields=True):
    contents: Annotated[list[_Content], Meta(min_length=1)]
    model: str | UnsetType = UNSET
    systemInstruction: _Content | UnsetType = UNSET
    system_instruction_: _Content | UnsetType = field(default=UNSET, name="system_instruction")
    tools: list[_Tool] | UnsetType = UNSET
    toolConfig: _Obj | UnsetType = UNSET
    tool_config_: _Obj | UnsetType = field(default=UNSET, name="tool_config")
    safetySettings: list[_Obj] | UnsetType = UNSET
    safety_settings_: list[_Obj] | UnsetType = field(default=UNSET, name="safety_settings")
    generationConfig: _GenerationConfig | UnsetType = UNSET
    generation_config_: _GenerationConfig | UnsetType = field(
        default=UNSET, name="generation_config"
    )
    cachedContent: str | UnsetType = UNSET
    cached_content_: str | UnsetType = field(default=UNSET, name="cached_content")
    labels: dict[str, str] | UnsetType = UNSET
    serviceTier: str | UnsetType = UNSET
    service_tier_: str | UnsetType = field(default=UNSET, name="service_tier")
    store: bool | UnsetType = UNSET


class _Embed(Struct, forbid_unknown_fields=True):
    content: _Content
    model: str | UnsetType = UNSET
    taskType: str | UnsetType = UNSET
    task_type_: str | UnsetType = field(default=UNSET, name="task_type")
    title: str | UnsetType = UNSET
    outputDimensionality: Annotated[int, Meta(gt=0)] | UnsetType = UNSET
    output_dimensionality_: Annotated[int, Meta(gt=0)] | UnsetType = field(
        default=UNSET, name="output_dimensionality"
    )


_GENERATE = Kind.GENERATE  # module constants: enum member lookups are slow on 3.11
_EMBED = Kind.EMBED
_KINDS = {k.value: k for k in Kind}
_GENERATE_DECODER = msgspec.json.Decoder(_Generate)
_EMBED_DECODER = msgspec.json.Decoder(_Embed)
_SHAPE = {Kind.GENERATE: "GenerateContentRequest", Kind.EMBED: "EmbedContentRequest"}


def _json_names(cls: type[Struct]) -> tuple[str, ...]:
    return tuple(sorted(cls.__struct_encode_fields__))


_KNOWN = {Kind.GENERATE: _json_names(_Generate), Kind.EMBED: _json_names(_Embed)}
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `([^`]*)`$")  # top level only
_EMPTY_LIST = re.compile(r"Expected `array` of length >= 1 - at `\$\.(.*)`$")
_ATTR = {
    cls: dict(zip(cls.__struct_encode_fields__, cls.__struct_fields__, strict=True))
    for cls in (_Part,)
}
"""JSON name -> attribute name, to look both spellings up by their JSON names."""

# ---------------------------------------------------------------------------


def validate_request(
    ev: RequestEvent, max_request_bytes: int, allow_project_resources: bool = False
) -> tuple[int, int]:
    """Return ``(size_bytes, est_tokens)`` for a valid request, else raise ``InvalidRequest``.

    ``size_bytes`` is what the request adds to an inline create as the SDK sends it
    (``json.dumps``, so every non-ASCII character goes out as a 6-byte ``\\uXXXX`` escape,
    12 bytes for one outside the BMP), body plus request id plus a fixed envelope; a JSONL
    file line (UTF-8) is never larger. The per-request limit applies to the UTF-8 size.
    ``est_tokens`` is a cheap input-token estimate for the enqueued-token budget:
    a quarter of the body's bytes as the SDK sends them (non-ASCII escaped, so Cyrillic
    counts 1.5 tokens a character, never less than Gemini's count of such text), not
    counting inline media payloads, plus ``MEDIA_PART_TOKENS`` per media part. Reasons are
    written for the request's owner.

    Unless ``allow_project_resources``, a request may not reference what lives in the
    sidecar's Gemini project (uploaded files, cached contents, tuned models): every upstream
    service shares that project, so such a reference could read another tenant's data.
    """
    rid = ev.request_id
    if type(rid) is not str or not rid:
        raise InvalidRequest("request_id is empty; every request needs a unique id")
    if len(rid) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(
            f"request_id is {len(rid)} characters, over the limit of {MAX_REQUEST_ID_CHARS}"
        )
    model = ev.model
    if type(model) is not str:  # a hand-built event: an unhashable value must not raise
        raise InvalidRequest("model must be a string, e.g. 'gemini-2.5-flash'")
    if model not in _GOOD_MODELS:
        _check_model_name(model)
    if not allow_project_resources and model.startswith("tunedModels/"):
        raise _project_resource(f"model {model[:80]!r} is a tuned model of the project")
    group = ev.group
    if type(group) is not str or len(group) > MAX_GROUP_CHARS:
        raise InvalidRequest(f"group must be a string of at most {MAX_GROUP_CHARS} characters")
    metadata = ev.metadata
    if metadata:
        _check_metadata(metadata)
    kind = ev.kind
    if kind is not _GENERATE and kind is not _EMBED:
        # A plain "generate" string (a hand-built event) is fine; anything else is not.
        found = _KINDS.get(kind) if isinstance(kind, str) else None
        if found is None:
            raise InvalidRequest(f"kind {kind!r} is not supported; use 'generate' or 'embed'")
        kind = found

    body = ev.body
    if type(body) is not str:
        raise InvalidRequest("body must be JSON text")
    # str.isascii() is O(1) in CPython, and then the length is the UTF-8 size.
    try:
        body_bytes = len(body) if body.isascii() else len(body.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"body is not valid UTF-8 text: {exc.reason}") from exc
    rid_bytes = len(rid) if rid.isascii() else len(rid.encode("utf-8", "replace"))
    size = body_bytes + rid_bytes + ENVELOPE_BYTES
    if size > max_request_bytes:
        raise InvalidRequest(
            f"request is {size} bytes, over the {max_request_bytes}-byte limit per request; "
            "send large media through the Files API (fileData) instead of inline"
        )
    body_wire = body_bytes if body.isascii() else escaped_size(body)
    size += body_wire - body_bytes
    if not rid.isascii():
        size += escaped_size(rid) - rid_bytes

    try:
        if kind is _GENERATE:
            gen = _GENERATE_DECODER.decode(body)
            media_parts, media_chars = _check_generate(gen, model)
            if not allow_project_resources:
                _check_no_project_refs(gen)
        else:
            emb = _EMBED_DECODER.decode(body)
            media_parts, media_chars = _check_embed(emb, model)
            if not allow_project_resources:
                _check_no_project_refs(emb)
    except msgspec.ValidationError as exc:
        raise InvalidRequest(_shape_reason(kind, str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:  # absurdly nested JSON: refused, never a crash
        raise InvalidRequest("body is nested too deeply") from exc
    text_bytes = body_wire - media_chars
    return size, max(1, -(-text_bytes // 4) + media_parts * MEDIA_PART_TOKENS)


def escaped_size(text: str) -> int:
    """Bytes of `text` once non-ASCII characters are written as JSON ``\\uXXXX`` escapes.

    That is how the SDK sends an inline create (``json.dumps``, ``ensure_ascii``): 1,000
    Cyrillic characters are 2,000 UTF-8 bytes but 6,000 on the wire. Exact for JSON text and
    plain strings alike (ASCII is kept as written); two C-speed passes, no Python loop.
    """
    if text.isascii():
        return len(text)
    ascii_chars = len(text.encode("ascii", "ignore"))
    code_units = len(text.encode("utf-16-le", "surrogatepass")) >> 1  # astral chars count 2
    return ascii_chars + 6 * (code_units - ascii_chars)


def _check_model_name(model: str) -> None:
    if type(model) is not str or not model:
        raise InvalidRequest("model is empty; name a Gemini model, e.g. 'gemini-2.5-flash'")
    if len(model) > MAX_MODEL_CHARS or _MODEL.fullmatch(model) is None or ".." in model:
        raise InvalidRequest(
            f"model {model[:80]!r} is not a valid model name: use letters, digits, '.', '_' "
            "and '-', optionally prefixed with 'models/' or 'tunedModels/'"
        )
    if len(_GOOD_MODELS) < _GOOD_MODELS_MAX:
        _GOOD_MODELS.add(model)


def _check_metadata(metadata: dict[str, str]) -> None:
    """Bound the metadata's size; Avro already guarantees string keys and values."""
    if not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be a map of strings")
    try:
        chars = sum(map(len, metadata)) + sum(map(len, metadata.values()))
    except TypeError as exc:
        raise InvalidRequest("metadata keys and values must be strings") from exc
    if chars * 4 <= MAX_METADATA_BYTES:  # a character is at most 4 UTF-8 bytes: surely fine
        return
    total = 0
    for key, value in metadata.items():
        if type(key) is not str or type(value) is not str:
            raise InvalidRequest("metadata keys and values must be strings")
        total += len(key.encode("utf-8", "replace")) + len(value.encode("utf-8", "replace"))
    if total > MAX_METADATA_BYTES:
        raise InvalidRequest(
            f"metadata is {total} bytes, over the limit of {MAX_METADATA_BYTES}; "
            "keep correlation data small"
        )


def _shape_reason(kind: Kind, message: str) -> str:
    """Turn a msgspec validation message into a reason that names the request shape."""
    shape = _SHAPE[kind]
    unknown = _UNKNOWN_FIELD.match(message)
    if unknown is not None:
        return (
            f"unknown field {unknown.group(1)!r} in the {shape}; Gemini rejects unknown fields. "
            f"Known fields: {', '.join(_KNOWN[kind])}"
        )
    empty = _EMPTY_LIST.match(message)
    if empty is not None:
        return f"{empty.group(1)} is empty in the {shape}; it needs at least one item"
    if message.startswith("Invalid enum value") and message.endswith(".role`"):
        return f"{message} in the {shape}; the role must be 'user' or 'model'"
    return f"body is not a valid {shape}: {message}"


def _both(camel: str, snake: str, where: str) -> InvalidRequest:
    return InvalidRequest(f"{where} sets both {camel!r} and {snake!r}; use one spelling")


def _check_model_field(body_model: str | UnsetType, model: str) -> None:
    """A model named in the body must be the event's model (the batch is per model)."""
    if body_model is UNSET:
        return
    if body_model.removeprefix("models/") != model.removeprefix("models/"):
        raise InvalidRequest(
            f"body names model {body_model[:80]!r} but the event's model is {model!r}; "
            "they must match (or leave 'model' out of the body)"
        )


def _where(field_name: str, index: int) -> str:
    return field_name if index < 0 else f"{field_name}[{index}]"


def _check_content(content: _Content, field_name: str, index: int = -1) -> tuple[int, int]:
    """Check the parts of one Content; return (media parts, inline media characters).

    msgspec already enforced the role and non-empty parts. Text parts, by far
    the most common, cost one attribute test; only other parts get a full look.
    """
    media = chars = 0
    for i, part in enumerate(content.parts):
        if part.text is UNSET:
            m, c = _check_part(part, _where(field_name, index), i)
            media += m
            chars += c
    return media, chars


def _check_part(part: _Part, where: str, i: int) -> tuple[int, int]:
    """Check a part without text; return (media parts, inline media characters)."""
    attrs = _ATTR[_Part]
    for camel, snake in _PART_PAIRS:
        if getattr(part, attrs[camel]) is not UNSET and getattr(part, attrs[snake]) is not UNSET:
            raise _both(camel, snake, f"{where}.parts[{i}]")
    blob = part.inlineData if part.inlineData is not UNSET else part.inline_data_
    if blob is not UNSET:
        if blob.mimeType is UNSET and blob.mime_type_ is UNSET:
            raise InvalidRequest(f"{where}.parts[{i}].inlineData needs a mimeType")
        return 1, len(blob.data)
    file = part.fileData if part.fileData is not UNSET else part.file_data_
    if file is not UNSET:
        if file.fileUri is UNSET and file.file_uri_ is UNSET:
            raise InvalidRequest(f"{where}.parts[{i}].fileData needs a fileUri")
        return 1, 0
    if all(getattr(part, attrs[name]) is UNSET for name in _PART_DATA):
        raise InvalidRequest(
            f"{where}.parts[{i}] has no content: set one of text, inlineData, fileData, "
            "functionCall, functionResponse, executableCode, codeExecutionResult"
        )
    return 0, 0


def _check_generate(req: _Generate, model: str) -> tuple[int, int]:
    # Both spellings of one field: the snake_case twin is rare, so test it first.
    system = req.systemInstruction
    if req.system_instruction_ is not UNSET:
        if system is not UNSET:
            raise _both("systemInstruction", "system_instruction", "the request")
        system = req.system_instruction_
    config = req.generationConfig
    if req.generation_config_ is not UNSET:
        if config is not UNSET:
            raise _both("generationConfig", "generation_config", "the request")
        config = req.generation_config_
    if req.tool_config_ is not UNSET and req.toolConfig is not UNSET:
        raise _both("toolConfig", "tool_config", "the request")
    if req.safety_settings_ is not UNSET and req.safetySettings is not UNSET:
        raise _both("safetySettings", "safety_settings", "the request")
    if req.cached_content_ is not UNSET and req.cachedContent is not UNSET:
        raise _both("cachedContent", "cached_content", "the request")
    if req.service_tier_ is not UNSET and req.serviceTier is not UNSET:
        raise _both("serviceTier", "service_tier", "the request")
    if (
        config is not UNSET
        and config.response_mime_type_ is not UNSET
        and config.responseMimeType is not UNSET
    ):
        raise _both("responseMimeType", "response_mime_type", "generationConfig")
    if req.model is not UNSET:
        _check_model_field(req.model, model)

    media = chars = 0
    for i, content in enumerate(req.contents):
        m, c = _check_content(content, "contents", i)
        media += m
        chars += c
    if system is not UNSET:
        m, c = _check_content(system, "systemInstruction")
        media += m
        chars += c
    return media, chars


def _project_resource(what: str) -> InvalidRequest:
    return InvalidRequest(
        f"{what}: requests may not reference resources stored in the sidecar's Gemini project "
        "(it is shared by every upstream service); send the content inline instead, or set "
        "CONNECTOR_ALLOW_PROJECT_RESOURCES=true for a single-tenant deployment",
        "PERMISSION_DENIED",
        403,
    )


_PROJECT_NAMES = (
    "files/",
    "cachedcontents/",
    "filesearchstores/",
    "tunedmodels/",
    "corpora/",
    "ragcorpora/",
    "projects/",
    "gs://",
)
"""Resource names (and the Cloud Storage scheme) that point into a Google Cloud project."""


def _is_project_file(uri: str) -> bool:
    """A resource of the project: a Files API file or other resource name, a Cloud Storage
    object, or any Google API URL (``...googleapis.com/...``) that names one. Public web
    URLs (YouTube, a PDF on a website) are not the project's."""
    u = uri.strip().lower()
    if u.startswith(_PROJECT_NAMES):
        return True
    if "googleapis.com" not in u:
        return False
    host = u.split("://", 1)[-1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    return host == "googleapis.com" or host.endswith(".googleapis.com")


def _check_file_uri(uri: object, where: str) -> None:
    if isinstance(uri, str) and _is_project_file(uri):
        raise _project_resource(f"{where}.fileUri {uri[:80]!r} is a file of the project")


def _check_part_refs(part: _Part, where: str) -> None:
    """A non-text part: its fileData, and the files inside a functionResponse's parts."""
    file = part.fileData if part.fileData is not UNSET else part.file_data_
    if file is not UNSET:
        _check_file_uri(file.fileUri if file.fileUri is not UNSET else file.file_uri_, where)
    response = (
        part.functionResponse if part.functionResponse is not UNSET else part.function_response_
    )
    if response is UNSET or not response.parts:
        return
    for j, inner in enumerate(response.parts):
        data = inner.fileData if inner.fileData is not UNSET else inner.file_data_
        if data is not UNSET and data is not None:
            uri = data.fileUri if data.fileUri is not UNSET else data.file_uri_
            _check_file_uri(uri, f"{where}.functionResponse.parts[{j}].fileData")


def _check_tool_refs(tools: list[_Tool]) -> None:
    """Tools that read the project's stores: file search, Vertex AI Search and RAG corpora."""
    for i, tool in enumerate(tools):
        search = tool.fileSearch if tool.fileSearch is not UNSET else tool.file_search_
        if search is not UNSET and search is not None:
            raise _project_resource(
                f"tools[{i}].fileSearch searches file-search stores of the project"
            )
        retrieval = tool.retrieval
        if retrieval is UNSET or retrieval is None:
            continue
        for name, value in (
            ("vertexAiSearch", retrieval.vertexAiSearch),
            ("vertex_ai_search", retrieval.vertex_ai_search_),
            ("vertexRagStore", retrieval.vertexRagStore),
            ("vertex_rag_store", retrieval.vertex_rag_store_),
        ):
            if value is not UNSET and value is not None:
                raise _project_resource(
                    f"tools[{i}].retrieval.{name} reads a data store or corpus of the project"
                )


def _check_no_project_refs(req: _Generate | _Embed) -> None:
    """Every place a request may name a stored resource (the model is checked on its own).

    Text parts, by far the most common, cost one attribute test; tools are walked only
    when the request has any.
    """
    if isinstance(req, _Generate):
        if req.cachedContent is not UNSET or req.cached_content_ is not UNSET:
            raise _project_resource("cachedContent names a cache of the project")
        if req.tools is not UNSET:
            _check_tool_refs(req.tools)
        system = req.systemInstruction
        if system is UNSET:
            system = req.system_instruction_
        for i, content in enumerate(req.contents):
            for k, part in enumerate(content.parts):
                if part.text is UNSET:
                    _check_part_refs(part, f"contents[{i}].parts[{k}]")
        if system is not UNSET:
            for k, part in enumerate(system.parts):
                if part.text is UNSET:
                    _check_part_refs(part, f"systemInstruction.parts[{k}]")
    else:
        for k, part in enumerate(req.content.parts):
            if part.text is UNSET:
                _check_part_refs(part, f"content.parts[{k}]")


def _check_embed(req: _Embed, model: str) -> tuple[int, int]:
    if req.task_type_ is not UNSET and req.taskType is not UNSET:
        raise _both("taskType", "task_type", "the request")
    if req.output_dimensionality_ is not UNSET and req.outputDimensionality is not UNSET:
        raise _both("outputDimensionality", "output_dimensionality", "the request")
    _check_model_field(req.model, model)
    return _check_content(req.content, "content")
