"""A job's requests on their way to Gemini: re-read in bounded chunks, never all at once.

Inline jobs are small (≤ ~20 MB) and are built in memory. A file job's JSONL is written to a
temporary file on disk as its requests are re-read chunk by chunk, then uploaded from there,
so a 2 GB input never sits in memory.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import IO

import orjson

from connector.core.jsonl import write_jsonl
from connector.core.partitions import Tracked
from connector.core.ports import RequestReaderPort
from connector.core.records import JobInput, RequestEvent
from connector.core.results import correlation_key
from connector.core.spans import CHUNK_REQUESTS, chunks


def job_input(offset: int, ev: RequestEvent) -> JobInput:
    """One request with its correlation key (inline metadata or JSONL `key`)."""
    key = correlation_key(offset)
    return JobInput(key, orjson.loads(ev.body), {"key": key, "request_id": ev.request_id})


def job_events(
    t: Tracked, reader: RequestReaderPort, chunk: int = CHUNK_REQUESTS
) -> Iterator[tuple[int, RequestEvent]]:
    """The job's readable requests: from memory if still there, else re-read chunk by chunk.

    Unreadable ones are left out here; they get DATA_LOSS results when the job ends.
    """
    if t.payload is not None:
        for r in t.payload:
            yield r.offset, r.event
        return
    partition = t.entry.key.partition
    for offsets in chunks(t.entry.offsets, chunk):
        found = reader.read(partition, offsets)
        for o in offsets:
            original = found.get(o)
            if original is not None and original.event is not None:
                yield o, original.event


def job_inputs(events: Iterable[tuple[int, RequestEvent]]) -> Iterator[JobInput]:
    for offset, ev in events:
        yield job_input(offset, ev)


def spool_inputs(
    t: Tracked,
    reader: RequestReaderPort,
    chunk: int = CHUNK_REQUESTS,
    open_file: Callable[[], IO[bytes]] | None = None,
) -> tuple[IO[bytes], int]:
    """The job's input JSONL in a temporary file (rewound, deleted when closed; `open_file`
    makes it, by default in the system temp dir) and its line count. At most one chunk of
    requests is in memory at a time."""
    f = open_file() if open_file is not None else tempfile.TemporaryFile(suffix=".jsonl")  # noqa: SIM115  (returned)
    try:
        n = write_jsonl(job_inputs(job_events(t, reader, chunk)), f)
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f, n
