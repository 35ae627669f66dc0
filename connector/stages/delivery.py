"""A finished job's results, produced in bounded chunks over several passes of the loop.

The job's output (a results file streamed to an anonymous temporary file, or inline
responses) is indexed once by key: for each request of the job, where its first output line
is (8 bytes per request; a file is indexed in the download's background thread). Each pass
then takes the next requests **in offset order** (at most `chunk_requests` of them or
`chunk_bytes` of output JSON), re-reads just those requests, and returns their results for
the tracker to produce and flush: the output line's answer, or NO_OUTPUT (DATA_LOSS if the
request is unreadable) for a request the output never mentions. Memory stays bounded by a
chunk, whatever the size of the job; the loop keeps polling between chunks.

Delivering in offset order makes the delivery cursor (`DeliveryCursor.scanned`) a prefix
of the job's offsets: what was answered is known from the ledger entry alone
(`core.lifecycle.delivered`), also when the output is gone, so no other path that ends the
job (a cancel, a results file gone, a 404, a quarantine) answers or resubmits it again.
"""

from __future__ import annotations

import tempfile
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future
from typing import IO

import structlog

from connector.core.jsonl import parse_output_line
from connector.core.ports import GeminiPort
from connector.core.records import (
    DeliveryCursor,
    ErrorInfo,
    LedgerEntry,
    OutputItem,
    RemoteJob,
    TokenUsage,
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


class _Index:
    """Where each request's first output line is: in memory (inline outputs, tests), or as
    a byte position in the results file on disk (`spool`)."""

    def __init__(self, offsets: array[int], spool: IO[bytes] | None = None) -> None:
        self._offsets = offsets
        self._spool = spool
        self._pos = array("q", [-1]) * len(offsets) if spool is not None else array("q")
        self._items: dict[int, tuple[OutputItem, int]] = {}

    def _slot(self, key: str) -> int:
        try:
            offset = int(key)
        except ValueError:
            return -1
        if correlation_key(offset) != key:
            return -1  # "007" or " 7" is not the key of offset 7
        i = bisect_left(self._offsets, offset)
        return i if i < len(self._offsets) and self._offsets[i] == offset else -1

    def add_items(self, items: Iterator[tuple[OutputItem, int]]) -> None:
        for item, n in items:
            i = self._slot(item.key)
            if i >= 0 and i not in self._items:  # a repeated key: the first answers
                self._items[i] = (item, n)

    def add_file(self) -> None:
        """Scan the results file once (in the download's thread), noting positions only."""
        spool = self._spool
        assert spool is not None
        spool.seek(0)
        pos = 0
        for raw in spool:
            item = parse_output_line(raw)
            if item is not None and (i := self._slot(item.key)) >= 0 and self._pos[i] < 0:
                self._pos[i] = pos
            pos += len(raw)

    def get(self, i: int) -> tuple[OutputItem | None, int]:
        """The output of the job's i-th request and its size in bytes (None, 0: none)."""
        if self._spool is None:
            return self._items.get(i, (None, 0))
        at = self._pos[i]
        if at < 0:
            return None, 0
        self._spool.seek(at)
        raw = self._spool.readline()
        return parse_output_line(raw), len(raw)


class Delivery:
    """The results of one finished job, chunk by chunk. `close()` frees its temp file."""

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
        spool: IO[bytes] | None = None,
    ) -> None:
        self.entry = entry
        self.error = error
        """Set for a job that gave up: every request gets this error, a chunk per pass."""
        self.job_name = job_name
        self._open = items
        self.fetch: Future[None] = _done()
        """The results file's download (and indexing), off the loop thread; done at once for
        inline jobs."""
        self._closer = closer
        self.chunk_requests = chunk_requests
        """Requests in the next chunk taken (the tracker shrinks it when producing is slow)."""
        self._chunk_bytes = chunk_bytes
        self._offsets = array("q", sorted(set(entry.offsets)))
        self._index = _Index(self._offsets, spool)
        self._indexed = spool is not None
        """A file's index is built by `index_file` (the fetch); inline items at first use."""
        self._next = min(resume.scanned, len(self._offsets)) if resume is not None else 0
        """The job's offsets below this index are answered (the cursor's prefix)."""
        self._batch: tuple[list[int], list[OutputItem], DeliveryCursor] | None = None
        """The chunk in hand and the cursor past it, kept until its results are acked."""
        self.cursor = resume or DeliveryCursor(0)
        """Everything up to here is produced and acked: what the ledger records."""
        self.chunks = 0
        self.output_file: str | None = None
        """The results file at the provider, deleted once every result is acked."""

    def index_file(self) -> None:
        """Index the downloaded results file (in the fetch's thread)."""
        self._index.add_file()

    def next_chunk(
        self,
        read: ReadFn,
        now_ms: int,
        price: Callable[[str, TokenUsage], float | None] | None = None,
    ) -> list[Outgoing] | None:
        """The next chunk's results (call `acked()` once produced), or None when all are;
        `price` sets each successful result's cost as it is built."""
        if self._batch is None:
            self._batch = self._take()
        if self._batch is None:
            return None
        offsets, outputs, _ = self._batch
        originals = read(self.entry.key.partition, offsets)
        if self.error is not None:
            return error_results(self.entry, originals, self.error, self.job_name, now_ms, offsets)
        return success_results(
            self.entry, originals, outputs, self.job_name, now_ms, offsets=offsets, price=price
        )

    def acked(self) -> None:
        """The chunk's results are acked: never produce them again."""
        if self._batch is not None:
            offsets, _, cursor = self._batch
            self._batch = None
            self.cursor = cursor
            self._next = cursor.scanned
            self.chunks += bool(offsets)

    def cursor_in_hand(self) -> DeliveryCursor | None:
        """The cursor past the chunk in hand: what the ledger may record once it is acked."""
        return self._batch[2] if self._batch is not None else None

    def finished(self) -> bool:
        """Whether every result is acked."""
        return self._batch is None and self._next >= len(self._offsets)

    def ready(self) -> bool:
        """Whether the results are on hand (the download ended, well or not: see `fetch`)."""
        return self.fetch.done()

    def close(self) -> None:
        """Free the temp file, now or, while a download still writes to it, once it ends."""
        if self.fetch.done() or self.fetch.cancel():
            self._closer()
        else:
            self.fetch.add_done_callback(lambda _: self._closer())

    def _take(self) -> tuple[list[int], list[OutputItem], DeliveryCursor] | None:
        if not self._indexed:
            self._indexed = True
            if self.error is None:
                self._index.add_items(self._open())
        start = i = self._next
        n = len(self._offsets)
        if start >= n:
            return None
        offsets: list[int] = []
        outputs: list[OutputItem] = []
        size = 0
        while i < n and len(offsets) < self.chunk_requests and size < self._chunk_bytes:
            if self.error is None:
                item, bytes_ = self._index.get(i)
                if item is not None:
                    outputs.append(item)
                    size += bytes_
            offsets.append(self._offsets[i])
            i += 1
        return offsets, outputs, DeliveryCursor(0, i, correlation_key(self._offsets[i - 1]))


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
    d = Delivery(
        entry, job, lambda: iter(()), spool.close, chunk_requests, chunk_bytes, resume, spool=spool
    )
    d.output_file = name

    def fetch() -> None:
        gemini.download_to(name, spool)
        d.index_file()

    if background is None:
        d.fetch = _done(fetch)
    else:  # up to 2 GB: the loop keeps polling Kafka meanwhile
        d.fetch = background.submit(fetch)
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
