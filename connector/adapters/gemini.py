"""The one place that speaks google-genai: jobs, files and the SDK's errors.

Everything the rest of the sidecar sees is plain data from `connector.core.records`
or a `ProviderError`; no SDK type leaves this module.

Two choices for speed and fidelity, both measured (docs/design.md):
- inline requests go into `batches.create` verbatim, as the REST bodies their senders
  wrote, through the SDK's `HttpOptions.extra_body`, instead of through its per-field
  pydantic conversion (~0.8 ms per request, and lossy for fields it does not model);
- job reads parse the Operation JSON that the SDK's API client returns, instead of the
  typed `BatchJob` (8x slower for 5,000 inline responses).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any

import httpx2
import orjson
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from connector.core.policy import ClaimWindow
from connector.core.records import JobInput, JobProgress, JobState, Kind, OutputItem, RemoteJob
from connector.errors import (
    ClaimExpired,
    ProviderAuthFailed,
    ProviderFileGone,
    ProviderRejected,
    ProviderRequestTooLarge,
    ProviderRetryable,
)

GEMINI_BASE_URL = "https://generativelanguage.googleapis.com/"


_STATES = {
    "PENDING": JobState.PENDING,
    "QUEUED": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "SUCCEEDED": JobState.SUCCEEDED,
    "FAILED": JobState.FAILED,
    "CANCELLED": JobState.CANCELLED,
    "EXPIRED": JobState.EXPIRED,
}


_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx2.TransportError,
    TimeoutError,
    ConnectionError,
)
try:  # the SDK can be set to use httpx instead of httpx2: its timeouts are transport errors too
    import httpx

    _TRANSPORT_ERRORS += (httpx.TransportError,)
except ImportError:  # pragma: no cover - google-genai depends on httpx
    pass

_TOO_LARGE = re.compile(r"payload size|size exceeds|too large", re.IGNORECASE)
_KEY_INVALID = re.compile(r"API_KEY_INVALID|API key not valid|API key expired", re.IGNORECASE)
_ABOUT_FILE = re.compile(r"\bfile\b", re.IGNORECASE)


def map_error(exc: Exception, files: bool = False) -> Exception:
    """Translate SDK and transport errors into the sidecar's tree (one place only).

    `files`: the call names a file (download, delete, create from a file), so a 403 or 404
    whose message is about a file means that file is gone (the Files API answers 403 for an
    expired file), not that the key is bad.
    """
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        status = str(exc.status or "UNKNOWN")
        message = exc.message or ""
        msg = f"Gemini API error {code} {status}: {message}".strip()
        if code in (408, 429) or code >= 500:
            return ProviderRetryable(msg, code, status)
        if files and code in (403, 404) and _ABOUT_FILE.search(message):
            return ProviderFileGone(msg, code, status)
        if code in (401, 403) or (code == 400 and _KEY_INVALID.search(f"{message} {exc.details}")):
            return ProviderAuthFailed(msg, code, status)
        if code in (400, 413) and _TOO_LARGE.search(message):
            return ProviderRequestTooLarge(msg, code, status)
        return ProviderRejected(msg, code, status)
    if isinstance(exc, _TRANSPORT_ERRORS):
        return ProviderRetryable(
            f"transport error: {type(exc).__name__}: {exc}", 503, "UNAVAILABLE"
        )
    return exc


@contextlib.contextmanager
def sdk_errors(files: bool = False) -> Iterator[None]:
    """Translate whatever an SDK call raises into the sidecar's error tree (one place)."""
    try:
        yield
    except ClaimExpired:
        raise  # ours, from `check_claim`: nothing was sent
    except Exception as exc:
        raise map_error(exc, files) from exc


_claim = threading.local()
"""The `ClaimWindow` of the create this thread is sending, if any."""


def check_claim(request: object) -> None:
    """An httpx request hook: the last moment before a create's request goes out, refuse it
    if its claim is no longer fresh (`ClaimWindow`). Installed on every SDK client the
    sidecar builds (`http_options`); a no-op for any other request."""
    window: ClaimWindow | None = getattr(_claim, "window", None)
    if window is not None:
        window.check()


def http_options(base_url: str | None, api_version: str, timeout_s: float, **extra: Any) -> Any:
    """The SDK's `HttpOptions` for the sidecar's client: explicit base URL, the timeout, and
    `check_claim` on every request (`extra`: more HttpOptions fields, e.g. `httpx_client`;
    a given httpx client must carry the hook itself, see `connector.testing`)."""
    return types.HttpOptions(
        # Always explicit: the SDK would otherwise honour GOOGLE_GEMINI_BASE_URL silently.
        base_url=base_url or GEMINI_BASE_URL,
        api_version=api_version,
        timeout=int(timeout_s * 1000),
        client_args={"event_hooks": {"request": [check_claim]}},
        **extra,
    )


@contextlib.contextmanager
def _claimed(window: ClaimWindow | None) -> Iterator[None]:
    _claim.window = window
    try:
        yield
    finally:
        _claim.window = None


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
        client: genai.Client | None = None,
    ) -> None:
        """`client` replaces the SDK client built from the other arguments (tests, proxies)."""
        self._client = client or genai.Client(
            # Never Vertex AI, whatever GOOGLE_GENAI_USE_VERTEXAI says (config refuses it at
            # start): its batch API needs Cloud Storage or BigQuery and has no Files API.
            vertexai=False,
            api_key=api_key,
            http_options=http_options(base_url, api_version, timeout_s),
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
        inline: Sequence[JobInput] | None = None,
        file_name: str | None = None,
        claim: ClaimWindow | None = None,
    ) -> str:
        """Create one job and return its `batches/ID`. Exactly one HTTP attempt.

        `claim`: checked now and again right before the request is written (`check_claim`);
        past it, `ClaimExpired` and nothing is sent.
        """
        if claim is not None:
            claim.check()
        batch: dict[str, Any] = {}
        if priority:
            batch["priority"] = str(priority)  # int64 as a string; the SDK has no field for it
        if inline is not None:
            # Verbatim REST bodies; the SDK's own (empty) list is replaced on the wire.
            requests = [{"request": i.body, "metadata": i.metadata} for i in inline]
            batch["inputConfig"] = {"requests": {"requests": requests}}
        http = self._no_retry
        if batch:
            http = http.model_copy(update={"extra_body": {"batch": batch}})
        with sdk_errors(files=file_name is not None), _claimed(claim):
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
                src: Any = file_name if file_name is not None else []
                job = self._client.batches.create(
                    model=model,
                    src=src,
                    config=types.CreateBatchJobConfig(display_name=display_name, http_options=http),
                )
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
            return self.upload_file(buf, display_name)

    def upload_file(self, buf: IO[bytes], display_name: str) -> str:
        """Upload an open JSONL input file from its current position; return its `files/ID`."""
        with sdk_errors():
            f = self._client.files.upload(
                file=buf,  # type: ignore[arg-type]  # a binary file object is accepted
                config=types.UploadFileConfig(
                    display_name=display_name[:128], mime_type="application/jsonl"
                ),
            )
        if not f.name:
            raise ProviderRetryable("upload returned no file name", 500, "INTERNAL")
        return f.name

    def get(self, name: str) -> RemoteJob:
        """Read a job's state and, once done, where its results are."""
        with sdk_errors():
            # PRIVATE SDK API: `_api_client.request` returns the raw Operation JSON, which we
            # parse ourselves (8x faster than the typed BatchJob for big inline jobs).
            # tests/unit/test_gemini_mapping.py::test_private_get_call_contract pins it.
            response = self._client._api_client.request("get", name, {})
            body = orjson.loads(response.body) if response.body else {}
        return remote_job(name, body if isinstance(body, dict) else {})

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]:
        """Map display names to job names by listing jobs, newest first (used only on recovery).

        Stops at the page where the last wanted name turns up: the jobs looked up are recent,
        so a project with thousands of old jobs costs one page, not all of them. A name not
        found costs the whole listing.
        """
        found: dict[str, str] = {}
        if not wanted:
            return found
        with sdk_errors():
            for job in self._client.batches.list(config=types.ListBatchJobsConfig(page_size=100)):
                if job.display_name in wanted and job.name and job.display_name not in found:
                    found[job.display_name] = job.name
                    if len(found) == len(wanted):
                        break  # the pager fetches the next page only when iterated into it
        return found

    def download(self, file_name: str) -> bytes:
        with sdk_errors(files=True):
            return self._client.files.download(file=file_name)

    def download_to(self, file_name: str, out: IO[bytes]) -> None:
        """Stream a results file into `out`: the SDK writes it in 1 MiB chunks as they arrive.

        google-genai's `files.download(destination=...)` sends through its own API client
        (its auth headers, base URL and timeout) with a streamed response, so a 2 GB results
        file never sits in memory.
        """
        with sdk_errors(files=True):
            self._client.files.download(file=file_name, destination=out)  # type: ignore[call-overload]  # any binary file

    def delete_file(self, file_name: str) -> None:
        with sdk_errors(files=True):
            self._client.files.delete(name=file_name)

    def cancel(self, name: str) -> None:
        with sdk_errors():
            self._client.batches.cancel(name=name)

    def delete_job(self, name: str) -> None:
        with sdk_errors():
            self._client.batches.delete(name=name)


def remote_job(name: str, operation: dict[str, Any]) -> RemoteJob:
    """Read a batch Operation as the REST reference defines it (state in `metadata`)."""
    meta = operation.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    raw_state = str(meta.get("state") or "")
    state = _STATES.get(raw_state.rpartition("_STATE_")[2], JobState.UNKNOWN)
    output = meta.get("output") or operation.get("response") or {}
    inline: tuple[OutputItem, ...] | None = None
    responses_file = None
    if isinstance(output, dict):
        file_name = output.get("responsesFile")
        responses_file = file_name if isinstance(file_name, str) else None
        for field in ("inlinedResponses", "inlinedEmbedContentResponses"):
            wrapper = output.get(field)
            if isinstance(wrapper, dict) and isinstance(wrapper.get("inlinedResponses"), list):
                inline = tuple(_output_item(i) for i in wrapper["inlinedResponses"])
                break
    display = meta.get("displayName")
    return RemoteJob(
        name,
        state,
        display if isinstance(display, str) else None,
        inline,
        responses_file,
        job_progress(meta.get("batchStats")),
    )


def job_progress(raw: object) -> JobProgress | None:
    """`batchStats` (int64 counts as strings in proto3 JSON) as plain ints; None if absent."""
    if not isinstance(raw, dict):
        return None

    def num(key: str) -> int:
        v = raw.get(key)
        return int(v) if isinstance(v, int | str) and str(v).isdigit() else 0

    return JobProgress(
        num("requestCount"),
        num("successfulRequestCount"),
        num("failedRequestCount"),
        num("pendingRequestCount"),
    )


def _output_item(raw: object) -> OutputItem:
    """One inline response; correlated by its metadata key ("" never matches a request)."""
    item = raw if isinstance(raw, dict) else {}
    meta = item.get("metadata")
    key = meta.get("key") if isinstance(meta, dict) else None
    response = item.get("response")
    error = item.get("error")
    if error is not None and not isinstance(error, dict):
        error = {"message": str(error)}
    return OutputItem(
        str(key) if key is not None else "",
        response if isinstance(response, dict) else None,
        error or None,
    )
