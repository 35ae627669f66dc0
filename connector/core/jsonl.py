"""The Batch API's JSONL file formats: input lines out, result lines in (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import orjson

from connector.core.records import JobInput, OutputItem


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
