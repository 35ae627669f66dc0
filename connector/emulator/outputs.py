"""Builds a finished job's output: inline responses (input order unless shuffled on purpose)
or a generated JSONL file.

Runs lazily, on the first read after the job reached SUCCEEDED, outside the store lock and
under the job's own lock, so other callers are not blocked. File jobs stream line by line:
memory stays flat whatever the number of requests.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import orjson

from .config import EmulatorConfig
from .files import FileStore
from .jobs import Job, JobStore
from .model import FakeModel, Outcome, request_error
from .wire import field

_UNIT = float(1 << 64)


class OutputBuilder:
    """Materializes outputs with the fake model and the per-request fault knobs."""

    def __init__(
        self, config: Callable[[], EmulatorConfig], jobs: JobStore, files: FileStore
    ) -> None:
        self._config = config
        self._jobs = jobs
        self._files = files

    def ensure(self, job: Job) -> None:
        """Build the output of a SUCCEEDED job once; no-op otherwise."""
        if job.state != "SUCCEEDED" or job.output is not None:
            return
        with job.lock:
            if job.output is not None:
                return
            cfg = self._config()
            model = FakeModel(cfg.request_fail_trigger, cfg.big_response_trigger)
            answer = model.embed if job.kind == "embed" else model.generate
            roll = _Roller(cfg.seed, job.seq, cfg.request_error_rate)
            try:
                if job.input_path is not None:
                    output, ok, bad = self._file_output(job, answer, roll)
                else:
                    output, ok, bad = self._inline_output(job, answer, roll)
            except OSError as exc:  # input vanished (e.g. reset) or disk full: the job fails
                with self._jobs.lock:
                    job.state = "FAILED"
                    job.error = {"code": 13, "message": f"Batch failed: {exc}"}
                return
            with self._jobs.lock:
                job.succeeded, job.failed = ok, bad
                job.output = output
                job.inline = None

    def _inline_output(
        self, job: Job, answer: Callable[[Any, str, bool], Outcome], roll: _Roller
    ) -> tuple[dict[str, Any], int, int]:
        items: list[dict[str, Any]] = []
        ok = bad = 0
        for index, item in enumerate(job.inline or []):
            request = field(item, "request") if isinstance(item, dict) else None
            outcome = answer(request, job.model, roll(index))
            entry: dict[str, Any] = {}
            if outcome.response is not None:
                entry["response"] = outcome.response
                ok += 1
            else:
                entry["error"] = outcome.error
                bad += 1
            metadata = field(item, "metadata")
            if isinstance(metadata, dict) and metadata:
                entry["metadata"] = {str(k): _text(v) for k, v in metadata.items()}
            items.append(entry)
        cfg = self._config()
        if cfg.shuffle_inline_responses:
            items = _shuffled(items, random.Random(f"{cfg.seed}:shuffle:{job.seq}"))
        return {"inlinedResponses": {"inlinedResponses": items}}, ok, bad

    def _file_output(
        self, job: Job, answer: Callable[[Any, str, bool], Outcome], roll: _Roller
    ) -> tuple[dict[str, Any], int, int]:
        assert job.input_path is not None
        file_id = f"batch-{job.job_id}"
        scratch = self._files.scratch_path(f"{file_id}.out")
        ok = bad = 0
        with job.input_path.open("rb") as src, scratch.open("wb") as dst:
            index = 0
            for raw in src:
                if not raw.strip():
                    continue
                key, outcome = _answer_line(raw, index, job, answer, roll)
                line: dict[str, Any] = {"key": key}
                if outcome.response is not None:
                    line["response"] = outcome.response
                    ok += 1
                else:
                    line["error"] = outcome.error
                    bad += 1
                dst.write(orjson.dumps(line))
                dst.write(b"\n")
                index += 1
        job.input_path.unlink(missing_ok=True)
        stored = self._files.add_generated(
            file_id, scratch, "application/jsonl", f"{job.display_name} responses", job.ended or 0
        )
        return {"responsesFile": stored.name}, ok, bad


def _answer_line(
    raw: bytes, index: int, job: Job, answer: Callable[[Any, str, bool], Outcome], roll: _Roller
) -> tuple[str, Outcome]:
    """Accept `{"key", "request"}` lines and bare request lines (key = 0-based index)."""
    try:
        line = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return str(index), Outcome(error=request_error(400, f"Invalid JSON on line {index}: {exc}"))
    if isinstance(line, dict) and "request" in line:
        key = line.get("key")
        return (str(index) if key is None else _text(key)), answer(
            line["request"], job.model, roll(index)
        )
    return str(index), answer(line, job.model, roll(index))


def _shuffled(items: list[dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    """A seeded permutation that is never the input order (two or more items), so a client
    that relies on order fails every time, not by luck."""
    out = list(items)
    rng.shuffle(out)
    if len(out) > 1 and all(a is b for a, b in zip(out, items, strict=True)):
        out = out[1:] + out[:1]
    return out


def _text(value: Any) -> str:
    """Metadata and keys are strings on the wire; anything else is sent as its JSON."""
    return value if isinstance(value, str) else orjson.dumps(value).decode()


class _Roller:
    """Seeded, order-independent coin flips for the per-request error rate."""

    def __init__(self, seed: int, job_seq: int, rate: float) -> None:
        self._prefix = f"{seed}:{job_seq}:".encode()
        self._rate = rate

    def __call__(self, index: int) -> bool:
        if self._rate <= 0:
            return False
        digest = hashlib.blake2b(self._prefix + str(index).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") / _UNIT < self._rate
