"""The Batch API's JSONL file formats: input lines out, result lines in (pure, no I/O).

Both directions work line by line on an iterable or a file object the caller opened, so a
2 GB file never has to fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO

import orjson

from connector.core.records import JobInput, OutputItem


def jsonl_line(item: JobInput) -> bytes:
    """One input line: `{"key", "request"}`."""
    return orjson.dumps({"key": item.key, "request": item.body}) + b"\n"


def jsonl_lines(items: Iterable[JobInput]) -> Iterator[bytes]:
    """The Batch API's input file format: one `{"key", "request"}` object per line."""
    for item in items:
        yield jsonl_line(item)


def write_jsonl(items: Iterable[JobInput], out: IO[bytes]) -> int:
    """Append the input lines of `items` to `out` as they come; return how many."""
    n = 0
    for item in items:
        out.write(jsonl_line(item))
        n += 1
    return n


def parse_output_line(raw: bytes) -> OutputItem | None:
    """One results line; None for blank, garbage and key-less lines.

    Error lines may say `error` or `status`.
    """
    if not raw.strip():
        return None
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(line, dict) or "key" not in line:
        return None
    response = line.get("response")
    # Empty values ("status": "" or {}) mean no error.
    err = line.get("error") or line.get("status") or None
    if err is not None and not isinstance(err, dict):
        err = {"message": str(err)}  # e.g. a bare message string
    # Only objects reach the result builder; anything else counts as no response.
    return OutputItem(str(line["key"]), response if isinstance(response, dict) else None, err)


def read_output_items(lines: Iterable[bytes]) -> Iterator[tuple[OutputItem, int]]:
    """Results lines of a file object (or any iterable of lines), one at a time.

    Yields each item with the size of its line, so callers can bound what they hold.
    """
    for raw in lines:
        item = parse_output_line(raw)
        if item is not None:
            yield item, len(raw)


def parse_output_file(data: bytes) -> Iterator[OutputItem]:
    """Read a whole results JSONL file held in memory (small files, tests)."""
    for item, _ in read_output_items(data.splitlines()):
        yield item
