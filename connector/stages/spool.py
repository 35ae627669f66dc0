"""The spool directory: where input and results files go, and whether one fits now.

`SpoolGate.wait_for_room` is asked before a file job's input JSONL is written and before a
results file is downloaded; the decision is `connector.core.spool.decide` over the volume's
free bytes (`shutil.disk_usage`, or any `free` function a test gives).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from typing import IO

import structlog

from connector.core import spool
from connector.core.partitions import Stats

log = structlog.get_logger("connector")


def disk_free(directory: str) -> int:
    """Bytes free for an unprivileged writer on the volume holding `directory`."""
    return shutil.disk_usage(directory).free


class SpoolGate:
    """Temporary files in `directory` ("" = the system's temp dir), each after a room check."""

    def __init__(
        self,
        directory: str = "",
        reserve_bytes: int = 0,
        stats: Stats | None = None,
        free: Callable[[str], int] = disk_free,
    ) -> None:
        self.directory = directory or tempfile.gettempdir()
        self.reserve_bytes = reserve_bytes
        self.stats = stats if stats is not None else Stats()
        self.free = free
        self._warned: dict[str, float] = {}
        self._open: list[tuple[IO[bytes], int]] = []
        self._lock = threading.Lock()  # files close on background threads

    def open(self, prefix: str, need_bytes: int = 0) -> IO[bytes]:
        """An anonymous temporary file in the spool: gone when closed or the process dies.
        Until it is closed, what it may still write of `need_bytes` counts as taken."""
        f = tempfile.TemporaryFile(prefix=prefix, suffix=".jsonl", dir=self.directory)  # noqa: SIM115  (returned)
        if need_bytes > 0:
            with self._lock:
                self._open.append((f, need_bytes))
        return f

    def pending_bytes(self) -> int:
        """Bytes the open spool files may still write: each one's bound less its size now
        (written bytes are already out of the free space)."""
        with self._lock:
            self._open = [(f, n) for f, n in self._open if not f.closed]
            held = list(self._open)
        pending = 0
        for f, n in held:
            try:
                pending += max(0, n - os.fstat(f.fileno()).st_size)
            except (OSError, ValueError):  # closed meanwhile, on another thread
                continue
        return pending

    def wait_for_room(
        self, what: str, need_bytes: int, now: float, **fields: object
    ) -> float | None:
        """None if a file of up to `need_bytes` may be written now; else when to ask again
        (a warning is logged, at most once per `spool.WARN_EVERY_S` per `what`)."""
        try:
            free = self.free(self.directory)
        except OSError as exc:  # the spool is missing or unreadable: say so, write nothing
            log.warning("spool directory unusable", directory=self.directory, error=str(exc))
            free = 0
        pending = self.pending_bytes()
        d = spool.decide(free, need_bytes, self.reserve_bytes, now, self._warned.get(what), pending)
        if d.go:
            return None
        self.stats.spool_waits += 1
        if d.warn:
            self._warned[what] = now
            log.warning(
                "not enough free spool space; waiting",
                file=what,
                directory=self.directory,
                free_bytes=free,
                pending_bytes=pending,
                need_bytes=need_bytes,
                reserve_bytes=self.reserve_bytes,
                retry_s=d.retry_at - now,
                **fields,
            )
        return d.retry_at
