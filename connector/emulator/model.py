"""A deterministic fake model: the same request always gets the same answer.

Text depends on the prompt, system instruction and tools; JSON mode follows the response
schema; token counts are computed from the text (about 4 characters per token).
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from array import array
from dataclasses import dataclass
from typing import Any

import orjson

from .schema_gen import SchemaGenerator
from .wire import HTTP_STATUS, JsonObj, field

_VOCAB = (
    "the", "model", "emulates", "a", "careful", "answer", "about", "this", "topic", "with",
    "clear", "steps", "and", "brief", "notes", "that", "stay", "stable", "for", "tests",
    "batch", "stream", "signal", "value", "light", "water", "simple", "useful", "data", "result",
)  # fmt: skip
_FAIL_CODES = {400, 403, 404, 429, 500, 503}
_MEDIA_TOKENS = 258  # what Gemini charges for one image part; used for any non-text part
_EXCERPT = 60
BIG_MAX = 100_000_000  # largest EMULATOR_BIG_<n>: the whole part is built in memory
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Outcome:
    """Either a response or a per-request error (exactly one is set)."""

    response: JsonObj | None = None
    error: JsonObj | None = None


def request_error(code: int, message: str) -> JsonObj:
    """A per-request error in the shape the SDK's `JobError` accepts (no object details)."""
    return {"code": code, "message": message, "status": HTTP_STATUS.get(code, "UNKNOWN")}


def tokens(chars: int) -> int:
    """Token estimate used everywhere: a quarter of the characters, at least one."""
    return max(1, math.ceil(chars / 4)) if chars else 0


class FakeModel:
    """Turns GenerateContentRequest / EmbedContentRequest JSON into responses."""

    def __init__(
        self, fail_trigger: str = "EMULATOR_FAIL", big_trigger: str = "EMULATOR_BIG"
    ) -> None:
        self._trigger = (
            re.compile(re.escape(fail_trigger) + r"(?:_(\d{3}))?") if fail_trigger else None
        )
        self._big = re.compile(re.escape(big_trigger) + r"_(\d+)") if big_trigger else None

    # -- generateContent ------------------------------------------------------------------

    def generate(self, request: Any, model: str, force_error: bool = False) -> Outcome:
        """Answer one GenerateContentRequest."""
        if not isinstance(request, dict):
            return Outcome(error=request_error(400, "Request must be a JSON object."))
        contents = field(request, "contents")
        if isinstance(contents, dict | str):
            contents = [contents]  # lenient: a lone Content or bare text
        if not contents or not isinstance(contents, list):
            return Outcome(
                error=request_error(
                    400, "* GenerateContentRequest.contents: contents is not specified"
                )
            )
        prompt, media = _text_of(contents)
        system, _ = _text_of([field(request, "systemInstruction")])
        failed = self._triggered(prompt)
        if failed is not None:
            return Outcome(error=failed)
        if force_error:
            return Outcome(error=request_error(500, "Internal error encountered (emulated)."))

        big_size = self._big_size(prompt)
        if big_size > BIG_MAX:
            message = (
                f"A response of {big_size} bytes was asked for; the emulator's cap is {BIG_MAX}."
            )
            return Outcome(error=request_error(400, message))

        config = field(request, "generationConfig") or {}
        version = model.removeprefix("models/").removeprefix("tunedModels/")
        digest = hashlib.blake2b(f"{version}\0{system}\0{prompt}".encode(), digest_size=16).digest()
        seed = int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)
        prompt_tokens = tokens(len(prompt) + len(system)) + _MEDIA_TOKENS * media
        count = _int(field(config, "candidateCount"), 1)
        candidates = [
            self._candidate(request, config, prompt, system, seed + i, i)
            for i in range(max(count, 1))
        ]
        out_tokens = sum(c.pop("_tokens") for c in candidates)
        if big_size:
            candidates[0]["content"]["parts"].append(big_part(big_size))
            out_tokens += _MEDIA_TOKENS
        return Outcome(
            response={
                "candidates": candidates,
                "usageMetadata": {
                    "promptTokenCount": prompt_tokens,
                    "candidatesTokenCount": out_tokens,
                    "totalTokenCount": prompt_tokens + out_tokens,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                },
                "modelVersion": version,
                "responseId": digest.hex()[:22],
            }
        )

    def _candidate(
        self, request: JsonObj, config: Any, prompt: str, system: str, seed: int, index: int
    ) -> JsonObj:
        tools = field(request, "tools")
        words = re.findall(r"[A-Za-z0-9]+", prompt[:2000]) if tools or config else []
        call = _function_call(request, prompt, seed, words) if tools else None
        if call is not None:
            part_tokens = tokens(len(orjson.dumps(call)))
            return {
                "content": {"parts": [{"functionCall": call}], "role": "model"},
                "finishReason": "STOP",
                "index": index,
                "_tokens": part_tokens,
            }
        mime = field(config, "responseMimeType") or "text/plain"
        schema = field(config, "responseJsonSchema")
        if schema is None:
            schema = field(config, "responseSchema")
        finish = "STOP"
        if mime == "application/json":
            if isinstance(schema, dict):
                value = SchemaGenerator(seed, words).generate(schema)
            else:
                value = {"answer": _prose(prompt, system, request, seed)}
            text = orjson.dumps(value).decode()
        elif mime == "text/x.enum" and isinstance(schema, dict) and schema.get("enum"):
            options = schema["enum"]
            text = str(options[seed % len(options)])
        else:
            text = _prose(prompt, system, request, seed)
            limit = _int(field(config, "maxOutputTokens"), 0)
            if limit > 0 and tokens(len(text)) > limit:
                text = text[: limit * 4]
                finish = "MAX_TOKENS"
        return {
            "content": {"parts": [{"text": text}], "role": "model"},
            "finishReason": finish,
            "index": index,
            "_tokens": tokens(len(text)),
        }

    # -- embedContent ---------------------------------------------------------------------

    def embed(self, request: Any, model: str, force_error: bool = False) -> Outcome:
        """Answer one EmbedContentRequest with a unit vector derived from the text."""
        if not isinstance(request, dict):
            return Outcome(error=request_error(400, "Request must be a JSON object."))
        content = field(request, "content")
        if content is None and field(request, "contents") is not None:
            content = field(request, "contents")
        if not content:
            return Outcome(
                error=request_error(400, "* EmbedContentRequest.content: content is not specified")
            )
        text, _ = _text_of(content if isinstance(content, list) else [content])
        failed = self._triggered(text)
        if failed is not None:
            return Outcome(error=failed)
        if force_error:
            return Outcome(error=request_error(500, "Internal error encountered (emulated)."))
        dims = _int(field(request, "outputDimensionality"), 0) or _default_dims(model)
        if not 1 <= dims <= 4096:
            return Outcome(
                error=request_error(400, f"outputDimensionality {dims} is out of range.")
            )
        task = str(field(request, "taskType") or "")
        return Outcome(response={"embedding": {"values": embedding(f"{task}\0{text}", dims)}})

    def _big_size(self, prompt: str) -> int:
        """n of an `EMULATOR_BIG_<n>` in the prompt, else 0."""
        found = self._big.search(prompt) if self._big else None
        return int(found.group(1)) if found else 0

    def _triggered(self, text: str) -> JsonObj | None:
        if self._trigger is None:
            return None
        match = self._trigger.search(text)
        if match is None:
            return None
        code = int(match.group(1)) if match.group(1) else 400
        if code not in _FAIL_CODES:
            code = 400
        return request_error(
            code, f"Request failed on purpose: the prompt contains {match.group(0)}."
        )


def big_part(size: int) -> JsonObj:
    """An image-like `inlineData` part whose base64 `data` is about `size` characters, for
    testing how clients cope with huge responses (image output is this shape)."""
    raw = max(size * 3 // 4, len(_PNG_SIGNATURE))
    body = hashlib.shake_256(str(size).encode()).digest(raw - len(_PNG_SIGNATURE))
    data = base64.b64encode(_PNG_SIGNATURE + body).decode()
    return {"inlineData": {"mimeType": "image/png", "data": data}}


def embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector of `dims` floats for `text`."""
    raw = array("H", hashlib.shake_256(text.encode()).digest(dims * 2))
    values = [v / 32767.5 - 1.0 for v in raw]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def _default_dims(model: str) -> int:
    name = model.removeprefix("models/")
    return 768 if name in ("text-embedding-004", "embedding-001", "text-embedding-005") else 3072


def _text_of(contents: list[Any]) -> tuple[str, int]:
    """All text of a list of Contents, and how many non-text parts they hold."""
    texts: list[str] = []
    media = 0
    for content in contents:
        if isinstance(content, str):
            texts.append(content)
            continue
        parts = field(content, "parts")
        if not isinstance(parts, list):
            continue
        for part in parts:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict):
                text = part.get("text")
                if isinstance(text, str):
                    texts.append(text)
                else:
                    media += 1
    return "\n".join(texts), media


def _prose(prompt: str, system: str, request: JsonObj, seed: int) -> str:
    picks = hashlib.blake2b(seed.to_bytes(8, "big", signed=False), digest_size=24).digest()
    body = " ".join([_VOCAB[b % len(_VOCAB)] for b in picks[: 6 + seed % 18]])
    excerpt = " ".join(prompt.split())[:_EXCERPT]
    text = f'Emulated answer to "{excerpt}": {body}.'
    if system:
        text = f"[{' '.join(system.split())[:_EXCERPT]}] {text}"
    tools = field(request, "tools")
    if isinstance(tools, list) and any(
        isinstance(t, dict)
        and (field(t, "googleSearch") is not None or field(t, "googleSearchRetrieval") is not None)
        for t in tools
    ):
        text += " (grounded with emulated search)"
    return text


def _function_call(request: JsonObj, prompt: str, seed: int, words: list[str]) -> JsonObj | None:
    """Call a declared function when the prompt names it or the tool config forces a call."""
    tools = field(request, "tools")
    if not isinstance(tools, list):
        return None
    declarations = [
        d
        for t in tools
        if isinstance(t, dict)
        for d in (field(t, "functionDeclarations") or [])
        if isinstance(d, dict) and isinstance(d.get("name"), str)
    ]
    if not declarations:
        return None
    calling = field(field(request, "toolConfig"), "functionCallingConfig") or {}
    mode = str(field(calling, "mode") or "AUTO").upper()
    if mode == "NONE":
        return None
    allowed = field(calling, "allowedFunctionNames") or []
    chosen = next((d for d in declarations if d["name"] in prompt), None)
    if chosen is None and mode == "ANY":
        pool = [d for d in declarations if not allowed or d["name"] in allowed] or declarations
        chosen = pool[seed % len(pool)]
    if chosen is None:
        return None
    schema = field(chosen, "parametersJsonSchema")
    if schema is None:
        schema = field(chosen, "parameters")
    args = SchemaGenerator(seed, words).generate(schema) if isinstance(schema, dict) else {}
    return {"name": chosen["name"], "args": args if isinstance(args, dict) else {"value": args}}


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except (TypeError, ValueError):
        return default
