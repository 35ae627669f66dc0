"""The Batch and Files REST API, independent of the HTTP transport.

Routes mirror what google-genai 3.x and the REST samples send: `/{v}/...`, `/upload/{v}/files`
and `/download/{v}/files/ID:download`, for any `v1`, `v1beta` or `v1alpha`, with camelCase and
snake_case bodies alike.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .clock import Clock
from .config import EmulatorConfig
from .faults import chance, triggered
from .files import FileStore
from .jobs import JobStore
from .messages import Request, Response
from .ops import operation
from .outputs import OutputBuilder
from .wire import ApiError, JsonObj, field, loads_lenient

# Searched, not matched: a path prefix in base_url (`http://h/prefix/`) is kept by the SDK.
API_PATH = re.compile(r"/(?P<kind>upload/|download/)?(?P<version>v1(?:alpha|beta)?)/(?P<rest>.+)$")
_MODEL_CALL = re.compile(r"^(?P<model>(?:models|tunedModels)/[^:/]+):(?P<method>[A-Za-z]+)$")
_BATCH = re.compile(r"^batches/(?P<id>[^:/]+)(?::(?P<verb>[A-Za-z]+))?$")
_FILE = re.compile(r"^files/(?P<id>[^:/]+)(?::(?P<verb>[A-Za-z]+))?$")
_CHUNK_GRANULARITY = str(8 * 1024 * 1024)


class Service:
    """Shared state of one emulator: config, clock, jobs, files and fault RNG."""

    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._config_lock = threading.Lock()
        self.clock = Clock()
        self.files = FileStore(lambda: self._config, self.clock)
        self.jobs = JobStore(lambda: self._config, self.clock)
        self.outputs = OutputBuilder(lambda: self._config, self.jobs, self.files)
        self._rng = random.Random(config.seed)
        self._rng_lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self._calls_lock = threading.Lock()
        self._creates = 0  # numbers create calls for the seeded create faults

    @property
    def config(self) -> EmulatorConfig:
        """The knobs in force."""
        return self._config

    def update_config(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Change knobs at run time; storage_dir cannot move."""
        with self._config_lock:
            if "storage_dir" in changes:
                raise ValueError("storage_dir cannot change at run time")
            new = self._config.updated(changes)
            if new.seed != self._config.seed:
                with self._rng_lock:
                    self._rng = random.Random(new.seed)
            self._config = new
            return new

    # -- entry point ----------------------------------------------------------------------

    def handle(self, req: Request) -> Response:
        """Answer one API request (not the control API), counted in `in_flight` meanwhile."""
        with self.in_flight_for(req):
            return self._handle(req)

    @contextmanager
    def in_flight_for(self, req: Request) -> Iterator[None]:
        """Count `req` in `in_flight` for the block: its handling, and (from the server) the
        sending of a file body, which `download_bytes_per_s` may make last minutes."""
        name = call_name(req.method, req.path, req.query)
        with self._calls_lock:
            self.in_flight[name] += 1
        try:
            yield
        finally:
            with self._calls_lock:
                self.in_flight[name] -= 1
                if self.in_flight[name] <= 0:
                    del self.in_flight[name]

    def _handle(self, req: Request) -> Response:
        match = API_PATH.search(req.path)
        if match is None:
            raise ApiError(404, f"Unknown path {req.path}.")
        kind, version, rest = match.group("kind"), match.group("version"), match.group("rest")
        if kind == "upload/" and "upload_id" in req.query:
            return self._upload_chunk(req)  # the upload ID is the credential: no key, no faults
        if kind == "upload/":
            try:
                self._faults()
                self._authenticate(req)
                if rest != "files" or req.method != "POST":
                    raise ApiError(404, f"Unknown upload path {req.path}.")
                return self._upload_start(req, version)
            except ApiError as exc:  # upload replies always say where the upload stands
                return Response.json(exc.body(), exc.code, {"x-goog-upload-status": "final"})
        self._faults()
        self._authenticate(req)
        if kind == "download/":
            found = _FILE.match(rest)
            if found is None or found.group("verb") != "download":
                raise ApiError(404, f"Unknown download path {req.path}.")
            return self._download(found.group("id"))
        return self._route(req, version, rest)

    def _route(self, req: Request, version: str, rest: str) -> Response:
        method = req.method
        if m := _MODEL_CALL.match(rest):
            call = m.group("method")
            if method != "POST":
                raise ApiError(405, f"Method {method} not allowed on {rest}.")
            if call == "batchGenerateContent":
                return self._create(req, version, m.group("model"), "generate")
            if call == "asyncBatchEmbedContent":
                return self._create(req, version, m.group("model"), "embed")
            raise ApiError(501, f"Method {call} is not emulated.", "UNIMPLEMENTED")
        if rest == "batches":
            return self._list_batches(req, version)
        if m := _BATCH.match(rest):
            job_id, verb = m.group("id"), m.group("verb")
            if verb is None and method == "GET":
                return self._get_batch(job_id, version)
            if (verb is None and method == "DELETE") or verb == "delete":
                self._count("batches.delete")
                self.jobs.delete(job_id)
                return Response.json({})
            if verb == "cancel" and method in ("POST", "GET"):
                self._count("batches.cancel")
                self.jobs.cancel(job_id)
                return Response.json({})
            raise ApiError(404, f"Unknown batch method {rest} ({method}).")
        if rest == "files":
            return self._list_files(req, version)
        if m := _FILE.match(rest):
            file_id, verb = m.group("id"), m.group("verb")
            if verb == "download" and method == "GET":
                return self._download(file_id)
            if verb is None and method == "GET":
                self._count("files.get")
                return Response.json(self.files.get(file_id).to_json(req.origin, version))
            if verb is None and method == "DELETE":
                self._count("files.delete")
                self.files.delete(file_id)
                return Response.json({})
        raise ApiError(404, f"Unknown path {req.path} ({method}).")

    # -- cross-cutting --------------------------------------------------------------------

    def _count(self, call: str) -> None:
        with self._calls_lock:
            self.calls[call] += 1

    def call_counts(self) -> dict[str, int]:
        """A consistent copy of the per-method call counts."""
        with self._calls_lock:
            return dict(self.calls)

    def in_flight_counts(self) -> dict[str, int]:
        """Requests being answered right now, by the `calls` name they are counted under.

        A request is in flight from the moment it arrives until its answer is ready, the
        emulated latency included, whereas `calls` counts it only after the latency and the
        transient faults. So a test sees a slow call while it is still running (e.g. to
        freeze its client inside an upload, before what the client does next).
        """
        with self._calls_lock:
            return dict(self.in_flight)

    def reset_calls(self) -> None:
        """Zero the call counts."""
        with self._calls_lock:
            self.calls.clear()

    def _next_create(self) -> int:
        with self._calls_lock:
            self._creates += 1
            return self._creates

    def _faults(self) -> None:
        cfg = self._config
        if cfg.latency_ms > 0:
            time.sleep(cfg.latency_ms / 1000)
        if cfg.transient_error_rate <= 0:
            return
        with self._rng_lock:
            hit = self._rng.random() < cfg.transient_error_rate
            unavailable = self._rng.random() < 2 / 3
        if hit:
            self._count("faults.transient")
            if unavailable:
                raise ApiError(503, "The service is currently unavailable. (emulated)")
            raise ApiError(500, "An internal error has occurred. (emulated)")

    def _authenticate(self, req: Request) -> None:
        key = req.header("x-goog-api-key").strip() or req.query.get("key", "").strip()
        if not key:
            raise ApiError(
                403,
                "Method doesn't allow unregistered callers (callers without established "
                "identity). Please use API Key or other form of API consumer identity to call "
                "this API.",
            )
        expected = self._config.api_key
        if expected is not None and key != expected:
            raise ApiError(
                400,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )

    # -- batches --------------------------------------------------------------------------

    def _create(self, req: Request, version: str, model: str, kind: str) -> Response:
        """Make a batch. The create faults model what clients must survive: a 429 storm
        refuses before any work; a late create makes a job that lands later and answers 504;
        a lost reply makes the job and answers 503, so a blind retry duplicates it."""
        self._count("batches.create" if kind == "generate" else "batches.create_embeddings")
        cfg = self._config
        number = self._next_create()
        if chance(cfg.seed, "rate_limit", number, cfg.rate_limit_rate):
            self._count("faults.rate_limit")
            raise ApiError(429, "Resource has been exhausted (e.g. check quota).")
        if req.body.length > cfg.max_inline_request_bytes:
            req.body.drain()
            raise ApiError(
                400,
                f"Request payload size exceeds the limit: {cfg.max_inline_request_bytes} bytes.",
            )
        raw = req.body.read_all()
        body = loads_lenient(raw)
        batch = field(body, "batch")
        if not isinstance(batch, dict):
            raise ApiError(400, "Invalid JSON payload: `batch` is required.")
        display_name = field(batch, "displayName") or ""
        if not isinstance(display_name, str):
            raise ApiError(400, "batch.display_name must be a string.")
        try:
            priority = int(field(batch, "priority") or 0)
        except (TypeError, ValueError):
            raise ApiError(400, "batch.priority must be an integer.") from None
        source = field(batch, "inputConfig")
        if not isinstance(source, dict):
            raise ApiError(400, "batch.input_config is required.")
        file_name = field(source, "fileName")
        requests = field(source, "requests")
        if (file_name is None) == (requests is None):
            raise ApiError(400, "batch.input_config needs exactly one of file_name or requests.")
        late = cfg.create_land_delay_s > 0 and (
            triggered(cfg.create_late_trigger, display_name)
            or chance(cfg.seed, "create_late", number, cfg.create_late_rate)
        )
        delay = cfg.create_land_delay_s if late else 0.0
        if requests is not None:
            items = _inline_items(requests)
            job = self.jobs.create(
                kind=kind,
                model=model,
                display_name=display_name,
                priority=priority,
                request_count=len(items),
                tokens=len(raw) // 4,
                inline=items,
                land_delay_s=delay,
            )
        else:
            job = self._create_from_file(kind, model, display_name, priority, str(file_name), delay)
        if late:
            self._count("faults.create_late")
            raise ApiError(504, "Deadline expired before operation could complete.")
        if triggered(cfg.create_reply_lost_trigger, display_name) or chance(
            cfg.seed, "create_reply_lost", number, cfg.create_reply_lost_rate
        ):
            self._count("faults.create_reply_lost")
            raise ApiError(503, "The service is currently unavailable.")
        return Response.json(operation(job, version))

    def _create_from_file(
        self,
        kind: str,
        model: str,
        display_name: str,
        priority: int,
        file_name: str,
        land_delay_s: float,
    ) -> Any:
        try:
            stored = self.files.get(file_name)
        except ApiError:
            raise ApiError(400, f"Input file {file_name} not found or not accessible.") from None
        link = self.files.scratch_path(f"input-{os.urandom(8).hex()}")
        try:
            os.link(stored.path, link)  # the job keeps its input even if the file is deleted
        except OSError:
            shutil.copyfile(stored.path, link)
        count = 0
        with link.open("rb") as src:
            for line in src:
                if line.strip():
                    count += 1
        if count == 0:
            link.unlink(missing_ok=True)
            raise ApiError(400, f"Input file {stored.name} contains no requests.")
        try:
            return self.jobs.create(
                kind=kind,
                model=model,
                display_name=display_name,
                priority=priority,
                request_count=count,
                tokens=stored.size // 4,
                input_file=stored.name,
                input_path=link,
                land_delay_s=land_delay_s,
            )
        except ApiError:
            link.unlink(missing_ok=True)
            raise

    def _get_batch(self, job_id: str, version: str) -> Response:
        self._count("batches.get")
        job = self.jobs.get(job_id)
        self.outputs.ensure(job)
        return Response.json(operation(job, version))

    def _list_batches(self, req: Request, version: str) -> Response:
        self._count("batches.list")
        size = _page_size(req.query, default=50, maximum=1000)
        jobs, token = self.jobs.list(
            size, req.query.get("pageToken") or req.query.get("page_token")
        )
        for job in jobs:
            self.outputs.ensure(job)
        out: JsonObj = {"operations": [operation(j, version) for j in jobs]}
        if token:
            out["nextPageToken"] = token
        return Response.json(out)

    # -- files ----------------------------------------------------------------------------

    def _upload_start(self, req: Request, version: str) -> Response:
        self._count("files.upload")
        protocol = req.header("x-goog-upload-protocol").lower()
        command = req.header("x-goog-upload-command").lower()
        if protocol == "raw" or req.query.get("uploadType") == "media":
            return self._upload_raw(req, version)
        if protocol != "resumable" or "start" not in command:
            raise ApiError(400, "Only resumable and raw uploads are emulated.")
        raw = req.body.read_all()
        meta = field(loads_lenient(raw), "file") or {}
        declared = req.header("x-goog-upload-header-content-length") or field(meta, "sizeBytes")
        try:
            size = int(declared) if declared not in (None, "") else None
        except (TypeError, ValueError):
            raise ApiError(400, "Invalid upload content length.") from None
        mime = (
            field(meta, "mimeType")
            or req.header("x-goog-upload-header-content-type")
            or "application/octet-stream"
        )
        session = self.files.start_upload(
            field(meta, "name"), field(meta, "displayName"), str(mime), size
        )
        query = f"upload_id={session.upload_id}&upload_protocol=resumable"
        url = f"{req.origin}/upload/{version}/files?{query}"
        return Response(
            headers={
                "x-goog-upload-url": url,
                "x-goog-upload-control-url": url,
                "x-goog-upload-status": "active",
                "x-goog-upload-chunk-granularity": _CHUNK_GRANULARITY,
            }
        )

    def _upload_raw(self, req: Request, version: str) -> Response:
        mime = req.header("content-type") or "application/octet-stream"
        session = self.files.start_upload(None, None, mime, req.body.length)
        self.files.append(session, 0, req.body, req.body.length)
        stored = self.files.finalize(session)
        return Response.json({"file": stored.to_json(req.origin, version)})

    def _upload_chunk(self, req: Request) -> Response:
        """One resumable-upload request; every reply carries `x-goog-upload-status`."""
        match = API_PATH.search(req.path)
        version = match.group("version") if match else "v1beta"
        status = "final"
        try:
            session = self.files.session(req.query["upload_id"])
            commands = {c.strip() for c in req.header("x-goog-upload-command").lower().split(",")}
            if "cancel" in commands:
                self.files.cancel(session)
                return Response(headers={"x-goog-upload-status": "cancelled"})
            if "query" in commands:
                return Response(
                    headers={
                        "x-goog-upload-status": "active",
                        "x-goog-upload-size-received": str(session.received),
                    }
                )
            status = "active"
            with session.lock:
                if "upload" in commands:
                    offset = int(req.header("x-goog-upload-offset") or session.received)
                    self.files.append(session, offset, req.body, req.body.length)
                if "finalize" not in commands:
                    return Response(
                        headers={
                            "x-goog-upload-status": "active",
                            "x-goog-upload-size-received": str(session.received),
                        }
                    )
                stored = self.files.finalize(session)
            return Response.json(
                {"file": stored.to_json(req.origin, version)},
                headers={"x-goog-upload-status": "final"},
            )
        except ApiError as exc:
            return Response.json(exc.body(), exc.code, {"x-goog-upload-status": status})
        except ValueError:
            err = ApiError(400, "Invalid X-Goog-Upload-Offset.")
            return Response.json(err.body(), 400, {"x-goog-upload-status": status})

    def _download(self, file_id: str) -> Response:
        self._count("files.download")
        stored = self.files.get(file_id)
        if stored.source != "GENERATED":
            raise ApiError(400, "Only generated files can be downloaded; this file was uploaded.")
        return Response(content_type=stored.mime_type, file=stored.path)

    def _list_files(self, req: Request, version: str) -> Response:
        self._count("files.list")
        size = _page_size(req.query, default=10, maximum=100)
        files, token = self.files.list(
            size, req.query.get("pageToken") or req.query.get("page_token")
        )
        out: JsonObj = {"files": [f.to_json(req.origin, version) for f in files]}
        if token:
            out["nextPageToken"] = token
        return Response.json(out)


def call_name(method: str, path: str, query: dict[str, str]) -> str:
    """The `calls` name of an API request, known as soon as it arrives (for `in_flight`).

    Mirrors the routing of `Service.handle`: resumable-upload chunks, which `calls` does not
    count, are `files.upload_chunk`; a path the emulator does not serve is `other`.
    """
    match = API_PATH.search(path)
    if match is None:
        return "other"
    kind, rest = match.group("kind"), match.group("rest")
    if kind == "upload/":
        return "files.upload_chunk" if "upload_id" in query else "files.upload"
    if kind == "download/":
        return "files.download"
    if m := _MODEL_CALL.match(rest):
        creates = {
            "batchGenerateContent": "batches.create",
            "asyncBatchEmbedContent": "batches.create_embeddings",
        }
        return creates.get(m.group("method"), "other")
    if rest in ("batches", "files"):
        return f"{rest}.list"
    if m := _BATCH.match(rest):
        verb = m.group("verb")
        if verb is None:
            return {"GET": "batches.get", "DELETE": "batches.delete"}.get(method, "other")
        return f"batches.{verb}" if verb in ("cancel", "delete") else "other"
    if m := _FILE.match(rest):
        verb = m.group("verb")
        if verb == "download":
            return "files.download"
        if verb is None:
            return {"GET": "files.get", "DELETE": "files.delete"}.get(method, "other")
    return "other"


def _inline_items(requests: Any) -> list[Any]:
    """`{"requests": [...]}` (or a bare list); bare request objects get wrapped."""
    items = field(requests, "requests") if isinstance(requests, dict) else requests
    if not isinstance(items, list) or not items:
        raise ApiError(400, "batch.input_config.requests.requests must be a non-empty list.")
    out: list[Any] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise ApiError(400, f"requests[{index}] must be an object.")
        wrapped = item
        if "request" not in item and ("contents" in item or "content" in item):
            wrapped = {"request": item}
        if not isinstance(wrapped.get("request"), dict):
            raise ApiError(400, f"requests[{index}].request is required.")
        metadata = wrapped.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise ApiError(400, f"requests[{index}].metadata must be an object.")
        out.append(wrapped)
    return out


def _page_size(query: dict[str, str], default: int, maximum: int) -> int:
    raw = query.get("pageSize") or query.get("page_size")
    try:
        size = int(raw) if raw else default
    except ValueError:
        raise ApiError(400, "pageSize must be an integer.") from None
    return default if size <= 0 else min(size, maximum)
