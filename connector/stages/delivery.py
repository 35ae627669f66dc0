"""A finished job's results, produced in bounded chunks over several passes of the loop.

A results file is streamed to an anonymous temporary file on disk, then read line by line. Each pass
takes the next chunk of output lines (at most `chunk_requests` of them or `chunk_bytes` of
JSON), re-reads just those requests by offset, and returns their results for the tracker to
produce and flush. Once the file is exhausted, the job's requests that had no output line
get NO_OUTPUT (or DATA_LOSS) results, again in chunks. Memory stays bounded by a chunk,
whatever the size of the job; the loop keeps polling between chunks.

What has been produced is tracked per offset of the job (one byte each), so a key the
output repeats is answered once, and the requests without output are found at the end.
"""

from __future__ import annotations

import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import IO

import structlog

from connector.core.jsonl import read_output_items
from connector.core.ports import GeminiPort
from connector.core.records import (
    DeliveryCursor,
    ErrorInfo,
    LedgerEntry,
    OutputItem,
    RemoteJob,
)
from connector.core.results import (
    Original,
    Outgoing,
    correlation_key,
    error_results,
    success_results,
)
from connector.core.spans import CHUNK_REQUESTS

log = structlog.get_logger("connector")

CHUNK_BYTES = 16 * 1024 * 1024
"""Output JSON read per chunk: a chunk's results hold a few times this in memory."""

ReadFn = Callable[[int, Iterable[int]], dict[int, Original]]


class Delivery:
    """The results of one SUCCEEDED job, chunk by chunk. `close()` frees its temp file."""

    def __init__(
        self,
        entry: LedgerEntry,
        job_name: str | None,
        items: Callable[[], Iterator[tuple[OutputItem, int]]],
        closer: Callable[[], None] = lambda: None,
        chunk_requests: int = CHUNK_REQUESTS,
        chunk_bytes: int = CHUNK_BYTES,
        resume: DeliveryCursor | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        self.entry = entry
        self.error = error
        """Set for a job that gave up: every request gets this error, a chunk per pass."""
        self.job_name = job_name
        self._open = items
        """Opens the job's output items from the start (again, if a resume must start over)."""
        self._items: Iterator[tuple[OutputItem, int]] | None = None
        """Opened at the first chunk (a results file is complete only once fetched)."""
        self.fetch: Future[None] = _done()
        """The results file's download, off the loop thread; done at once for inline jobs."""
        self._closer = closer
        self.chunk_requests = chunk_requests
        """Requests in the next chunk taken (the tracker shrinks it when producing is slow)."""
        self._chunk_bytes = chunk_bytes
        self._offsets = array("q", sorted(set(entry.offsets)))
        self._done = bytearray(len(self._offsets))
        self._outputs_done = False
        self._scan = 0
        self._batch: tuple[list[int], list[OutputItem], DeliveryCursor] | None = None
        """The chunk in hand and the cursor past it, kept until its results are acked."""
        self._read = 0
        """Output items taken from `items` so far."""
        self._last_key = ""
        self._resume = resume if resume is not None and resume.items > 0 else None
        self._scanned_before = resume.scanned if resume is not None else 0
        """Where an earlier delivery of this job stopped: items up to it are marked
        answered as they are read again, never produced."""
        self.cursor = resume or DeliveryCursor(0)
        """Everything up to here is produced and acked: what the ledger records."""
        self.chunks = 0
        self.output_file: str | None = None
        """The results file at the provider, deleted once every result is acked."""

    def next_chunk(self, read: ReadFn, now_ms: int) -> list[Outgoing] | None:
        """The next chunk's results (call `acked()` once produced), or None when all are."""
        if self._batch is None:
            self._batch = self._take()
        if self._batch is None:
            return None
        offsets, outputs, _ = self._batch
        if not offsets:
            return []  # a chunk of items answered before a restart: nothing to produce
        originals = read(self.entry.key.partition, offsets)
        if self.error is not None:
            return error_results(self.entry, originals, self.error, self.job_name, now_ms, offsets)
        return success_results(
            self.entry, originals, outputs, self.job_name, now_ms, offsets=offsets
        )

    def acked(self) -> None:
        """The chunk's results are acked: never produce them again."""
        if self._batch is not None:
            offsets, _, cursor = self._batch
            for o in offsets:
                self._done[self._index(o)] = 1
            self._batch = None
            self.cursor = cursor
            self.chunks += bool(offsets)

    def cursor_in_hand(self) -> DeliveryCursor | None:
        """The cursor past the chunk in hand: what the ledger may record once it is acked."""
        return self._batch[2] if self._batch is not None else None

    def finished(self) -> bool:
        """Whether every result is acked (reads the next chunk's output lines ahead)."""
        if self._batch is None:
            self._batch = self._take()
        return self._batch is None

    def ready(self) -> bool:
        """Whether the results are on hand (the download ended, well or not: see `fetch`)."""
        return self.fetch.done()

    def close(self) -> None:
        """Free the temp file, now or, while a download still writes to it, once it ends."""
        if self.fetch.done() or self.fetch.cancel():
            self._closer()
        else:
            self.fetch.add_done_callback(lambda _: self._closer())

    def _index(self, offset: int) -> int:
        i = bisect_left(self._offsets, offset)
        return i if i < len(self._offsets) and self._offsets[i] == offset else -1

    def _key_index(self, key: str) -> int:
        try:
            offset = int(key)
        except ValueError:
            return -1
        if correlation_key(offset) != key:
            return -1  # "007" or " 7" is not the key of offset 7
        return self._index(offset)

    def _take(self) -> tuple[list[int], list[OutputItem], DeliveryCursor] | None:
        resume = self._resume
        if self._items is None:
            self._items = self._open()
        if not self._outputs_done:
            offsets: list[int] = []
            outputs: list[OutputItem] = []
            seen: set[int] = set()
            size = 0
            for item, n in self._items:
                self._read += 1
                self._last_key = item.key
                size += n
                i = self._key_index(item.key)
                if resume is not None and self._read <= resume.items:
                    # Answered before a restart: mark it, produce nothing. Bounded by the
                    # chunk's bytes like any chunk, so re-reading a big file spans passes.
                    if i >= 0:
                        self._done[i] = 1
                    if self._read == resume.items:
                        self._resumed(item.key)
                        return [], [], self._position()
                    if size >= self._chunk_bytes:
                        return [], [], self.cursor  # no progress to record yet
                    continue
                if i < 0 or self._done[i] or i in seen:
                    continue  # not a request of this job, or answered already
                seen.add(i)
                offsets.append(self._offsets[i])
                outputs.append(item)
                if len(offsets) >= self.chunk_requests or size >= self._chunk_bytes:
                    return sorted(offsets), outputs, self._position()
            if resume is not None and self._read < resume.items:
                self._resumed(None)  # fewer items than before: not the same output
                return [], [], self._position()
            self._outputs_done = True
            if offsets:
                return sorted(offsets), outputs, self._position()
        if self._scan < self._scanned_before:
            self._scan = min(self._scanned_before, len(self._offsets))  # answered NO_OUTPUT
        # Requests the output never mentioned: NO_OUTPUT (or DATA_LOSS) results.
        missing: list[int] = []
        while self._scan < len(self._offsets) and len(missing) < self.chunk_requests:
            if not self._done[self._scan]:
                missing.append(self._offsets[self._scan])
            self._scan += 1
        return (missing, [], self._position()) if missing else None

    def _position(self) -> DeliveryCursor:
        scanned = self._scan if self._outputs_done else 0
        return DeliveryCursor(self._read, scanned, self._last_key)

    def _resumed(self, key: str | None) -> None:
        """The items answered before a restart are read again: check it is the same output."""
        resume = self._resume
        assert resume is not None
        self._resume = None
        if key == resume.last_key:
            return
        log.warning(
            "results differ from the ones a delivery was resumed from; delivering all again",
            job_id=self.entry.job_id,
            batch_job=self.job_name,
            cursor_items=resume.items,
            expected_key=resume.last_key,
            found_key=key,
        )
        self._done = bytearray(len(self._offsets))
        self._items = self._open()
        self._read = 0
        self._last_key = ""
        self._outputs_done = False
        self._scan = 0
        self._scanned_before = 0


def start_delivery(
    gemini: GeminiPort,
    entry: LedgerEntry,
    remote: RemoteJob | None,
    chunk_requests: int = CHUNK_REQUESTS,
    chunk_bytes: int = CHUNK_BYTES,
    resume: DeliveryCursor | None = None,
    background: Executor | None = None,
    open_file: Callable[[], IO[bytes]] | None = None,
) -> Delivery:
    """A delivery over the job's outputs: inline ones as they are, or its results file
    streamed to a temporary file first, in `background` if given (`Delivery.ready`), and
    its `ProviderError` kept in `Delivery.fetch`. `resume`: the ledger's cursor of an
    earlier delivery of the job, which this one goes on from. `open_file`: makes the
    temporary file (the spool's; by default one in the system temp dir)."""
    job = entry.provider_job
    if remote is None or (remote.inline is None and not remote.responses_file):
        return Delivery(entry, job, lambda: iter(()), chunk_requests=chunk_requests, resume=resume)
    if remote.inline is not None:
        inline = remote.inline
        return Delivery(
            entry,
            job,
            lambda: ((item, 0) for item in inline),
            chunk_requests=chunk_requests,
            resume=resume,
        )
    assert remote.responses_file is not None
    # Anonymous: gone when closed, or when the process dies, whatever the path out.
    spool = open_file() if open_file is not None else tempfile.TemporaryFile(suffix=".jsonl")  # noqa: SIM115
    name = remote.responses_file

    def lines() -> Iterator[tuple[OutputItem, int]]:
        spool.seek(0)
        return read_output_items(spool)

    d = Delivery(entry, job, lines, spool.close, chunk_requests, chunk_bytes, resume)
    d.output_file = name
    if background is None:
        d.fetch = _done(lambda: gemini.download_to(name, spool))
    else:  # up to 2 GB: the loop keeps polling Kafka meanwhile
        d.fetch = background.submit(gemini.download_to, name, spool)
    return d


def _done(fn: Callable[[], None] = lambda: None) -> Future[None]:
    """`fn` run here and now, as a finished future (its exception kept, as a thread's is)."""
    f: Future[None] = Future()
    try:
        fn()
    except Exception as exc:
        f.set_exception(exc)
    else:
        f.set_result(None)
    return f
