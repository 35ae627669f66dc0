"""The one place that speaks google-genai: jobs, files and the SDK's errors.

Everything the rest of the sidecar sees is plain data from `connector.records`
or a `ProviderError`; no SDK type leaves this module.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any

import httpx2
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from connector.errors import InvalidRequest, ProviderRejected, ProviderRetryable
from connector.records import JobState, Kind, OutputItem

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/"

_STATES = {
    "JOB_STATE_PENDING": JobState.PENDING,
    "JOB_STATE_QUEUED": JobState.PENDING,
    "JOB_STATE_RUNNING": JobState.RUNNING,
    "JOB_STATE_SUCCEEDED": JobState.SUCCEEDED,
    "JOB_STATE_FAILED": JobState.FAILED,
    "JOB_STATE_CANCELLED": JobState.CANCELLED,
    "JOB_STATE_EXPIRED": JobState.EXPIRED,
}

# REST GenerateContentRequest fields that the SDK carries inside GenerateContentConfig.
_REQUEST_LEVEL = {
    "systemInstruction": "system_instruction",
    "system_instruction": "system_instruction",
    "tools": "tools",
    "toolConfig": "tool_config",
    "tool_config": "tool_config",
    "safetySettings": "safety_settings",
    "safety_settings": "safety_settings",
    "cachedContent": "cached_content",
    "cached_content": "cached_content",
    "labels": "labels",
    "serviceTier": "service_tier",
    "service_tier": "service_tier",
}


@dataclass(frozen=True, slots=True)
class RemoteJob:
    """What the provider says about a job."""

    name: str
    state: JobState
    display_name: str | None
    inline: tuple[OutputItem, ...] | None
    responses_file: str | None


@dataclass(frozen=True, slots=True)
class JobInput:
    """A request to place in a job: its correlation key and REST body."""

    key: str
    body: dict[str, Any]
    metadata: dict[str, str]


def _map_error(exc: Exception) -> Exception:
    """Translate SDK and transport errors into the sidecar's tree (one place only)."""
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        status = str(exc.status or "UNKNOWN")
        msg = f"Gemini API error {code} {status}: {exc.message or ''}".strip()
        if code in (408, 429) or code >= 500:
            return ProviderRetryable(msg, code, status)
        return ProviderRejected(msg, code, status)
    if isinstance(exc, httpx2.TransportError | TimeoutError | ConnectionError):
        return ProviderRetryable(
            f"transport error: {type(exc).__name__}: {exc}", 503, "UNAVAILABLE"
        )
    return exc


def to_inlined_request(item: JobInput) -> types.InlinedRequest:
    """Map a REST GenerateContentRequest onto the SDK's InlinedRequest.

    The SDK splits a request into `contents` and a `GenerateContentConfig` that
    holds both request-level fields and the generation config; it rebuilds the
    REST shape on the wire. Fields it cannot carry raise InvalidRequest so that
    one bad request fails alone, not its whole job.
    """
    body = dict(item.body)
    contents = body.pop("contents", None)
    body.pop("model", None)
    config: dict[str, Any] = {}
    gen = body.pop("generationConfig", None)
    if gen is None:
        gen = body.pop("generation_config", None)
    if gen is None:
        gen = {}
    # Checked before any falsy shortcut: [], 0 or "" is not an object and must not vanish.
    if not isinstance(gen, dict):
        raise InvalidRequest("generationConfig must be an object")
    config.update(gen)
    for rest_key, sdk_key in _REQUEST_LEVEL.items():
        if rest_key in body:
            config[sdk_key] = body.pop(rest_key)
    if body:
        raise InvalidRequest(f"unsupported GenerateContentRequest fields: {sorted(body)}")
    try:
        return types.InlinedRequest(
            contents=contents,
            config=types.GenerateContentConfig.model_validate(config) if config else None,
            metadata=item.metadata,
        )
    except Exception as exc:  # pydantic ValidationError: the request is malformed for the SDK
        raise InvalidRequest(f"request rejected by the SDK: {str(exc).splitlines()[0]}") from exc


def jsonl_lines(items: Sequence[JobInput]) -> Iterator[bytes]:
    """The Batch API's input file format: one `{"key", "request"}` object per line."""
    for item in items:
        yield orjson.dumps({"key": item.key, "request": item.body}) + b"\n"


def parse_output_file(data: bytes) -> Iterator[OutputItem]:
    """Read a results JSONL file; error lines may say `error` or `status`."""
    for raw in data.splitlines():
        if not raw.strip():
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(line, dict) or "key" not in line:
            continue
        response = line.get("response")
        # Empty values ("status": "" or {}) mean no error.
        err = line.get("error") or line.get("status") or None
        if err is not None and not isinstance(err, dict):
            err = {"message": str(err)}  # e.g. a bare message string
        # Only objects reach the result builder; anything else counts as no response.
        yield OutputItem(str(line["key"]), response if isinstance(response, dict) else None, err)


class Gemini:
    """A thin client for batch jobs and files, with create-once semantics.

    `create` never retries inside the SDK (a retry could create a second job);
    the caller decides, after checking the ledger and `find_by_display_name`.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        api_version: str = "v1beta",
        timeout_s: float = 60.0,
    ) -> None:
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                # Always explicit: the SDK would otherwise honour GOOGLE_GEMINI_BASE_URL silently.
                base_url=base_url or GEMINI_BASE_URL,
                api_version=api_version,
                timeout=int(timeout_s * 1000),
            ),
        )
        self._no_retry = types.HttpOptions(retry_options=types.HttpRetryOptions(attempts=1))

    def close(self) -> None:
        self._client.close()

    def create(
        self,
        model: str,
        kind: Kind,
        display_name: str,
        priority: int,
        inline: Sequence[types.InlinedRequest] | None = None,
        file_name: str | None = None,
    ) -> str:
        """Create one job and return its `batches/ID`. Exactly one HTTP attempt."""
        http = self._no_retry
        if priority:
            http = http.model_copy(update={"extra_body": {"batch": {"priority": str(priority)}}})
        try:
            if kind is Kind.EMBED:
                if file_name is None:
                    raise ValueError("embedding jobs go through an uploaded file")
                job = self._client.batches.create_embeddings(
                    model=model,
                    src=types.EmbeddingsBatchJobSource(file_name=file_name),
                    config=types.CreateEmbeddingsBatchJobConfig(
                        display_name=display_name, http_options=http
                    ),
                )
            else:
                src: Any = file_name if file_name is not None else list(inline or [])
                job = self._client.batches.create(
                    model=model,
                    src=src,
                    config=types.CreateBatchJobConfig(display_name=display_name, http_options=http),
                )
        except Exception as exc:
            raise _map_error(exc) from exc
        if not job.name:
            raise ProviderRetryable("create returned no job name", 500, "INTERNAL")
        return job.name

    def upload_jsonl(self, lines: Iterator[bytes], display_name: str) -> str:
        """Upload a JSONL input file and return its `files/ID`."""
        # Spooled to disk, not memory: an input file may be up to 2 GB.
        with tempfile.TemporaryFile() as buf:
            for line in lines:
                buf.write(line)
            buf.seek(0)
            return self._upload(buf, display_name)

    def _upload(self, buf: IO[bytes], display_name: str) -> str:
        try:
            f = self._client.files.upload(
                file=buf,  # type: ignore[arg-type]  # a binary file object is accepted
                config=types.UploadFileConfig(
                    display_name=display_name[:128], mime_type="application/jsonl"
                ),
            )
        except Exception as exc:
            raise _map_error(exc) from exc
        if not f.name:
            raise ProviderRetryable("upload returned no file name", 500, "INTERNAL")
        return f.name

    def get(self, name: str) -> RemoteJob:
        """Read a job's state and, once done, where its results are."""
        try:
            job = self._client.batches.get(name=name)
        except Exception as exc:
            raise _map_error(exc) from exc
        state_name = job.state.name if job.state is not None else "JOB_STATE_UNSPECIFIED"
        state = _STATES.get(state_name, JobState.UNKNOWN)
        inline: tuple[OutputItem, ...] | None = None
        responses_file = None
        dest = job.dest
        if dest is not None:
            responses_file = dest.file_name
            if dest.inlined_responses is not None:
                inline = tuple(_inline_item(r) for r in dest.inlined_responses)
            elif dest.inlined_embed_content_responses is not None:
                inline = tuple(_inline_item(r) for r in dest.inlined_embed_content_responses)
        return RemoteJob(name, state, job.display_name, inline, responses_file)

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]:
        """Map display names to job names by listing every job (used only on recovery)."""
        found: dict[str, str] = {}
        if not wanted:
            return found
        try:
            for job in self._client.batches.list(config=types.ListBatchJobsConfig(page_size=100)):
                if job.display_name in wanted and job.name and job.display_name not in found:
                    found[job.display_name] = job.name
        except Exception as exc:
            raise _map_error(exc) from exc
        return found

    def download(self, file_name: str) -> bytes:
        try:
            return self._client.files.download(file=file_name)
        except Exception as exc:
            raise _map_error(exc) from exc

    def delete_file(self, file_name: str) -> None:
        try:
            self._client.files.delete(name=file_name)
        except Exception as exc:
            raise _map_error(exc) from exc

    def delete_job(self, name: str) -> None:
        try:
            self._client.batches.delete(name=name)
        except Exception as exc:
            raise _map_error(exc) from exc


def _inline_item(r: types.InlinedResponse | types.InlinedEmbedContentResponse) -> OutputItem:
    key = (r.metadata or {}).get("key")
    response = (
        r.response.model_dump(mode="json", by_alias=True, exclude_none=True)
        if r.response is not None
        else None
    )
    error = r.error.model_dump(mode="json", exclude_none=True) if r.error is not None else None
    # A missing key cannot be correlated; "" never matches a request, so it becomes an error.
    return OutputItem(str(key) if key is not None else "", response, error)
