"""What a request's result needs of it, kept on disk from intake so that delivery does not
re-read the request topic (issue 18: the re-read was a quarter of delivery's time).

At intake every batched request is decoded anyway: its Kafka key, id, model, kind,
metadata, creation time and deadline (not its body) are appended to the partition's side
log, one JSON line each, in anonymous files of the spool directory (gone with the process).
Delivery asks the side log first and re-reads by offset only when it lacks an offset: a job
recovered after a restart or a rebalance, whose requests this process never took in. A
record at an offset never changes, so what the side log holds is never stale.

Costs: about 100-200 bytes of disk per request from its intake until the committed offset
is past it and no live job's span meets its segment (`trim`), and 8 bytes of memory per
offset spanned (an array of line positions per segment of 16 MB). Any file error turns the
partition's side log off until it is taken over again: delivery re-reads, as before.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable, Iterable
from typing import IO

import orjson
import structlog

from connector.core.records import Kind, RequestEvent
from connector.core.results import Original

log = structlog.get_logger("connector")

SEGMENT_BYTES = 16 << 20
"""A segment file is closed for appends past this size; whole segments are trimmed."""
MAX_GAP = 4_096
"""Offsets skipped (dead letters, refused, covered) kept as -1 up to this many; a longer
gap starts a new segment instead."""


class _Segment:
    __slots__ = ("base", "end", "file", "pos")

    def __init__(self, file: IO[bytes], base: int) -> None:
        self.file = file
        self.base = base
        self.pos = array("q")
        """Start of the line of offset `base + i`, or -1 (not taken in)."""
        self.end = 0

    @property
    def next(self) -> int:
        return self.base + len(self.pos)

    def line_end(self, i: int) -> int:
        for j in range(i + 1, len(self.pos)):
            if self.pos[j] >= 0:
                return self.pos[j]
        return self.end


class SideLog:
    """Per owned request partition, the result fields of each batched request, on disk."""

    def __init__(self, open_file: Callable[[], IO[bytes]]) -> None:
        self._open = open_file
        self._parts: dict[int, list[_Segment]] = {}
        self._off: set[int] = set()
        """Partitions whose side log failed: nothing appended until taken over again."""
        self._dirty: set[int] = set()
        self.hits = 0
        """Reads answered from the side log (for tests and the bench)."""
        self.misses = 0

    def append(self, partition: int, offset: int, key: bytes | None, ev: RequestEvent) -> None:
        if partition in self._off:
            return
        segs = self._parts.setdefault(partition, [])
        seg = segs[-1] if segs else None
        if seg is not None and offset < seg.next:
            return  # read again after a seek: already here (a record never changes)
        line = orjson.dumps(
            [
                None if key is None else key.decode("latin-1"),
                ev.request_id,
                ev.model,
                ev.kind.value,
                ev.metadata,
                ev.created_ms,
                ev.deadline_ms,
            ]
        )
        try:
            if seg is None or seg.end >= SEGMENT_BYTES or offset - seg.next > MAX_GAP:
                seg = _Segment(self._open(), offset)
                segs.append(seg)
            if offset > seg.next:
                seg.pos.extend(array("q", [-1]) * (offset - seg.next))
            seg.file.write(line + b"\n")
        except OSError as exc:
            self._fail(partition, exc)
            return
        seg.pos.append(seg.end)
        seg.end += len(line) + 1
        self._dirty.add(partition)

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original] | None:
        """The originals of `offsets` (ascending), or None if any is not here (re-read)."""
        wanted = list(offsets)
        segs = self._parts.get(partition)
        if not wanted or not segs:
            self.misses += 1
            return None
        try:
            if partition in self._dirty:
                for s in segs:
                    s.file.flush()
                self._dirty.discard(partition)
            out = self._read(partition, segs, wanted)
        except OSError as exc:
            self._fail(partition, exc)
            out = None
        if out is None:
            self.misses += 1
        else:
            self.hits += 1
        return out

    def _read(
        self, partition: int, segs: list[_Segment], wanted: list[int]
    ) -> dict[int, Original] | None:
        out: dict[int, Original] = {}
        k = 0
        for seg in segs:
            if k >= len(wanted):
                break
            mine = []
            while k < len(wanted) and wanted[k] < seg.next:
                if wanted[k] < seg.base or seg.pos[wanted[k] - seg.base] < 0:
                    return None
                mine.append(wanted[k])
                k += 1
            if not mine:
                continue
            start = seg.pos[mine[0] - seg.base]
            stop = seg.line_end(mine[-1] - seg.base)
            data = os.pread(seg.file.fileno(), stop - start, start)  # the append position stays
            for o in mine:
                at = seg.pos[o - seg.base] - start
                out[o] = _original(partition, o, data[at : data.index(b"\n", at)])
        if k < len(wanted):
            return None
        return out

    def trim(self, partition: int, live: Iterable[tuple[int, int]], committed: int) -> None:
        """Close the partition's segments that no live job's span (first, last offset)
        meets and that the committed offset is past, but the one appended to: a job that
        waits a day keeps its own segments, not every one written since."""
        segs = self._parts.get(partition)
        if not segs or len(segs) < 2:
            return
        spans = sorted(live)
        kept = [
            s
            for s in segs[:-1]
            if s.next > committed or any(lo < s.next and hi >= s.base for lo, hi in spans)
        ]
        for s in segs[:-1]:
            if s not in kept:
                s.file.close()
        self._parts[partition] = [*kept, segs[-1]]

    def drop(self, partition: int) -> None:
        """The partition is let go: its side log goes (taken over again, it starts anew)."""
        for seg in self._parts.pop(partition, []):
            seg.file.close()
        self._off.discard(partition)
        self._dirty.discard(partition)

    def close(self) -> None:
        for p in list(self._parts):
            self.drop(p)

    def segments(self, partition: int) -> int:
        return len(self._parts.get(partition, ()))

    def _fail(self, partition: int, exc: OSError) -> None:
        log.warning(
            "side log of a request partition failed; its results re-read requests instead",
            partition=partition,
            error=str(exc),
        )
        self.drop(partition)
        self._off.add(partition)


def _original(partition: int, offset: int, line: bytes) -> Original:
    key, request_id, model, kind, metadata, created_ms, deadline_ms = orjson.loads(line)
    ev = RequestEvent(
        request_id=request_id,
        model=model,
        kind=Kind(kind),
        body="",
        deadline_ms=deadline_ms,
        metadata=metadata,
        created_ms=created_ms,
    )
    return Original(partition, offset, None if key is None else key.encode("latin-1"), ev)
