"""The Files API store: resumable upload sessions and file bytes kept on disk, not in memory."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import string
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .clock import Clock
from .config import EmulatorConfig
from .wire import ApiError, JsonObj, rfc3339

_ALPHABET = string.ascii_lowercase + string.digits
_ID_MAX = 40
_COPY_CHUNK = 1 << 20


class Readable(Protocol):
    """Anything chunks can be read from (a request body)."""

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes."""
        ...


def new_id(length: int = 12) -> str:
    """A random resource ID in the alphabet real file IDs use."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def _valid_id(file_id: str) -> bool:
    return (
        0 < len(file_id) <= _ID_MAX
        and all(c in _ALPHABET or c == "-" for c in file_id)
        and not file_id.startswith("-")
        and not file_id.endswith("-")
    )


@dataclass
class StoredFile:
    """One live file and its metadata."""

    file_id: str
    display_name: str | None
    mime_type: str
    size: int
    sha256: str
    created: float
    expires: float
    source: str  # UPLOADED | GENERATED
    path: Path

    @property
    def name(self) -> str:
        """The resource name, `files/ID`."""
        return f"files/{self.file_id}"

    def to_json(self, origin: str, version: str) -> JsonObj:
        """The File resource; URIs point back at the emulator the caller used."""
        out: JsonObj = {"name": self.name}
        if self.display_name:
            out["displayName"] = self.display_name
        out.update(
            {
                "mimeType": self.mime_type,
                "sizeBytes": str(self.size),
                "createTime": rfc3339(self.created),
                "updateTime": rfc3339(self.created),
                "expirationTime": rfc3339(self.expires),
                "sha256Hash": self.sha256,
                "uri": f"{origin}/{version}/{self.name}",
                "state": "ACTIVE",
                "source": self.source,
            }
        )
        if self.source == "GENERATED":
            out["downloadUri"] = f"{origin}/download/{version}/{self.name}:download?alt=media"
        return out


@dataclass
class UploadSession:
    """A resumable upload in progress; the upload ID is its only credential."""

    upload_id: str
    file_id: str
    display_name: str | None
    mime_type: str
    declared_size: int | None
    path: Path
    received: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _order(stored: StoredFile) -> tuple[float, str]:
    return (-stored.created, stored.file_id)


class FileStore:
    """Files and upload sessions. Bytes live under a directory; metadata in memory."""

    def __init__(self, config: Callable[[], EmulatorConfig], clock: Clock) -> None:
        self._config = config
        self._clock = clock
        root = config().storage_dir
        self._own_root = root is None
        self.root = Path(root or tempfile.mkdtemp(prefix="gemini-emulator-"))
        for sub in ("files", "uploads", "jobs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._files: dict[str, StoredFile] = {}
        self._sessions: dict[str, UploadSession] = {}
        self._lock = threading.RLock()
        self.uploaded_total = 0
        self.generated_total = 0

    def close(self) -> None:
        """Remove the private storage directory."""
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    # -- uploads --------------------------------------------------------------------------

    def start_upload(
        self,
        requested_name: str | None,
        display_name: str | None,
        mime_type: str,
        declared_size: int | None,
    ) -> UploadSession:
        """Open a resumable session after checking the per-file and total storage caps."""
        cfg = self._config()
        if declared_size is not None and declared_size > cfg.max_file_bytes:
            raise ApiError(
                400, f"File size {declared_size} exceeds the limit of {cfg.max_file_bytes} bytes."
            )
        with self._lock:
            self._purge()
            if declared_size is not None:
                self._check_storage(declared_size)
            file_id = new_id()
            if requested_name:
                file_id = requested_name.removeprefix("files/")
                if not _valid_id(file_id):
                    raise ApiError(400, f"Invalid file name: {requested_name}")
                if file_id in self._files or any(
                    s.file_id == file_id for s in self._sessions.values()
                ):
                    raise ApiError(409, f"File files/{file_id} already exists.")
            upload_id = new_id(32)
            path = self.root / "uploads" / upload_id
            path.touch()
            session = UploadSession(
                upload_id, file_id, display_name, mime_type, declared_size, path
            )
            self._sessions[upload_id] = session
            return session

    def session(self, upload_id: str) -> UploadSession:
        """The live session or 404."""
        with self._lock:
            session = self._sessions.get(upload_id)
        if session is None:
            raise ApiError(404, "Upload session not found or already finalized.")
        return session

    def append(self, session: UploadSession, offset: int, body: Readable, length: int) -> None:
        """Write one chunk; the offset must match what was received so far."""
        cfg = self._config()
        if offset != session.received:
            raise ApiError(
                400,
                f"Invalid upload offset {offset}; {session.received} bytes were received so far.",
            )
        if session.received + length > cfg.max_file_bytes or (
            session.declared_size is not None and session.received + length > session.declared_size
        ):
            raise ApiError(400, "Upload exceeds the declared or maximum file size.")
        with self._lock:
            self._check_storage(length)
        with session.path.open("ab") as out:
            remaining = length
            while remaining:
                chunk = body.read(min(remaining, _COPY_CHUNK))
                if not chunk:
                    raise ApiError(400, "Upload body ended early.")
                out.write(chunk)
                remaining -= len(chunk)
        session.received += length

    def finalize(self, session: UploadSession) -> StoredFile:
        """Turn a complete session into an ACTIVE file."""
        if session.declared_size is not None and session.received != session.declared_size:
            received, declared = session.received, session.declared_size
            raise ApiError(400, f"Upload finalized with {received} bytes; {declared} declared.")
        digest = hashlib.sha256()
        with session.path.open("rb") as src:
            while chunk := src.read(_COPY_CHUNK):
                digest.update(chunk)
        target = self.root / "files" / session.file_id
        with self._lock:
            self._sessions.pop(session.upload_id, None)
            os.replace(session.path, target)
            now = self._clock.now()
            stored = StoredFile(
                session.file_id,
                session.display_name,
                session.mime_type,
                session.received,
                base64.b64encode(digest.digest()).decode(),
                now,
                now + self._config().file_ttl_s,
                "UPLOADED",
                target,
            )
            self._files[stored.file_id] = stored
            self.uploaded_total += 1
            return stored

    def cancel(self, session: UploadSession) -> None:
        """Drop a session and its partial bytes."""
        with self._lock:
            self._sessions.pop(session.upload_id, None)
        session.path.unlink(missing_ok=True)

    # -- generated files ------------------------------------------------------------------

    def scratch_path(self, name: str) -> Path:
        """A path for job-private data (input links, outputs being written)."""
        return self.root / "jobs" / name

    def add_generated(
        self, file_id: str, path: Path, mime_type: str, display_name: str | None, created: float
    ) -> StoredFile:
        """Register a file the emulator produced (batch output); it lives `output_file_ttl_s`
        (or `file_ttl_s`) from `created`, the job's end."""
        target = self.root / "files" / file_id
        os.replace(path, target)
        cfg = self._config()
        ttl = cfg.file_ttl_s if cfg.output_file_ttl_s is None else cfg.output_file_ttl_s
        with self._lock:
            stored = StoredFile(
                file_id,
                display_name,
                mime_type,
                target.stat().st_size,
                "",
                created,
                created + ttl,
                "GENERATED",
                target,
            )
            self._files[file_id] = stored
            self.generated_total += 1
            return stored

    # -- reads ----------------------------------------------------------------------------

    def get(self, name: str) -> StoredFile:
        """A live file, or 403 as the real service answers for missing files."""
        file_id = name.removeprefix("files/")
        with self._lock:
            self._purge()
            stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(
                403,
                f"You do not have permission to access the File {file_id} or it may not exist.",
            )
        return stored

    def delete(self, name: str) -> None:
        """Delete a file (its bytes go at once)."""
        stored = self.get(name)
        with self._lock:
            self._files.pop(stored.file_id, None)
        stored.path.unlink(missing_ok=True)

    def list(self, page_size: int, token: str | None) -> tuple[list[StoredFile], str | None]:
        """Newest first; the token is the sort key of the last file returned, so deleting
        files between pages neither skips nor repeats any."""
        with self._lock:
            self._purge()
            files = sorted(self._files.values(), key=_order)
        if token:
            try:
                created, _, file_id = token.partition(":")
                after = (-float(created), file_id)
            except ValueError:
                raise ApiError(400, "Invalid page token.") from None
            files = [f for f in files if _order(f) > after]
        page = files[:page_size]
        more = len(files) > page_size
        return page, (f"{page[-1].created!r}:{page[-1].file_id}" if more and page else None)

    def stats(self) -> JsonObj:
        """Counts for the control API."""
        with self._lock:
            self._purge()
            return {
                "count": len(self._files),
                "bytes": self._live_bytes(),
                "uploaded": sum(1 for f in self._files.values() if f.source == "UPLOADED"),
                "generated": sum(1 for f in self._files.values() if f.source == "GENERATED"),
                "uploaded_total": self.uploaded_total,
                "generated_total": self.generated_total,
                "upload_sessions": len(self._sessions),
            }

    def reset(self) -> None:
        """Forget every file and session."""
        with self._lock:
            for stored in self._files.values():
                stored.path.unlink(missing_ok=True)
            for session in self._sessions.values():
                session.path.unlink(missing_ok=True)
            self._files.clear()
            self._sessions.clear()

    # -- internals ------------------------------------------------------------------------

    def _live_bytes(self) -> int:
        return sum(f.size for f in self._files.values()) + sum(
            s.received for s in self._sessions.values()
        )

    def _check_storage(self, extra: int) -> None:
        cap = self._config().max_storage_bytes
        if self._live_bytes() + extra > cap:
            raise ApiError(429, f"Files API storage quota of {cap} bytes exceeded.")

    def _purge(self) -> None:
        now = self._clock.now()
        for file_id in [k for k, f in self._files.items() if f.expires <= now]:
            self._files.pop(file_id).path.unlink(missing_ok=True)
