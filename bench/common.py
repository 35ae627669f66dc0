"""Shared pieces of the bench: the typical request and result, stand-in Geminis, RSS, Kafka.

Imported by run.py and by inflight.py (the subprocess that measures RSS per request).
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "deploy" / "local"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import orjson  # noqa: E402
from kafka import KafkaProducer  # noqa: E402

from connector.adapters.gemini import Gemini  # noqa: E402
from connector.adapters.kafka import PRODUCER_CONFIG  # noqa: E402
from connector.config import Settings  # noqa: E402
from connector.core.codec import Codec  # noqa: E402
from connector.core.policy import ClaimWindow  # noqa: E402
from connector.core.records import (  # noqa: E402
    JobInput,
    JobState,
    Kind,
    RemoteJob,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.runner import Sidecar  # noqa: E402

MODEL = "gemini-2.5-flash"
MAX_REQUEST_BYTES = 10_000_000


def typical_body(i: int) -> str:
    """~500 bytes of GenerateContentRequest JSON: one user turn, a system instruction, a config."""
    body = {
        "contents": [
            {
                "role": "user",
                "parts": [
                    {
                        "text": f"Request {i:08d}. Summarise the following customer review in one "
                        "sentence and classify its sentiment as positive, negative or mixed: "
                        "'The delivery was two days late, but the support team kept me informed "
                        "and the product itself works exactly as described.'"
                    }
                ],
            }
        ],
        "systemInstruction": {
            "parts": [{"text": "You are a concise analyst. Answer in plain English."}]
        },
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.95,
            "maxOutputTokens": 256,
            "responseMimeType": "text/plain",
        },
    }
    return orjson.dumps(body).decode()


def typical_event(i: int, model: str = MODEL) -> RequestEvent:
    return RequestEvent(
        request_id=f"bench-{i:08d}",
        model=model,
        kind=Kind.GENERATE,
        body=typical_body(i),
        metadata={"tenant": "bench", "trace": f"t{i:08d}"},
        created_ms=int(time.time() * 1000),
    )


TYPICAL_RESPONSE: dict[str, Any] = {
    "candidates": [
        {
            "content": {
                "role": "model",
                "parts": [{"text": "Late delivery, but good support and product: mixed."}],
            },
            "finishReason": "STOP",
        }
    ],
    "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 14},
    "modelVersion": MODEL,
}


def typical_result(ev: RequestEvent, offset: int) -> ResultEvent:
    return ResultEvent(
        request_id=ev.request_id,
        status=ResultStatus.OK,
        model=ev.model,
        kind=ev.kind,
        response_json=orjson.dumps(TYPICAL_RESPONSE).decode(),
        metadata=dict(ev.metadata),
        batch_job="batches/bench123",
        usage=TokenUsage(120, 14, 134),
        request_created_ms=ev.created_ms,
        completed_ms=ev.created_ms + 1000,
        source_partition=0,
        source_offset=offset,
    )


def encoded_requests(
    n: int, distinct: int | None = None, models: Sequence[str] = (MODEL,)
) -> Iterator[tuple[bytes, bytes]]:
    """(key, Avro value) of N typical requests; `distinct` values are encoded, then cycled.
    `models`: the i-th request is for `models[i % len(models)]` (interleaved batch keys)."""
    codec = Codec()
    if distinct is None or distinct >= n:
        for i in range(n):
            ev = typical_event(i, models[i % len(models)])
            yield ev.request_id.encode(), codec.encode_request(ev)
        return
    values = [codec.encode_request(typical_event(i)) for i in range(distinct)]
    for i, v in zip(range(n), itertools.cycle(values), strict=False):
        yield f"bench-{i:08d}".encode(), v


def produce_requests(
    bootstrap: str,
    topic: str,
    partitions: int,
    n: int,
    distinct: int | None = None,
    models: Sequence[str] = (MODEL,),
) -> float:
    """Publish N typical requests round-robin with a bare producer; return the seconds."""
    p = KafkaProducer(
        bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=256 * 1024, acks=1
    )
    t0 = time.monotonic()
    try:
        for i, (key, value) in enumerate(encoded_requests(n, distinct, models)):
            p.send(topic, value=value, key=key, partition=i % partitions)
        p.flush(timeout=600)
    finally:
        p.close()
    return time.monotonic() - t0


def current_rss_mb(pid: int | str = "self") -> float:
    """VmRSS from /proc (Linux); 0 elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def sidecar_settings(
    bootstrap: str,
    requests: str,
    results: str,
    dlq: str,
    group: str,
    base_url: str,
    batch: int,
    wait_s: float,
    **over: Any,
) -> Settings:
    s = Settings(
        bootstrap_servers=bootstrap,
        request_topic=requests,
        result_topic=results,
        dlq_topic=dlq,
        group_id=group,
        gemini_base_url=base_url,
        api_key="bench",
        batch_max_requests=batch,
        batch_max_wait_s=wait_s,
        poll_initial_s=0.2,
        poll_max_s=0.5,
        token_budget=10**12,
        startup_timeout_s=60,
        drain_timeout_s=30,
        http_timeout_s=120,
        status_interval_s=3600,
        log_level="ERROR",
        log_format="console",
    )
    return replace(s, **over) if over else s


class TimedSidecar(Sidecar):
    """The sidecar with each `step` (one loop pass) timed: (start, seconds) per pass."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.passes: list[tuple[float, float]] = []

    def step(self) -> None:
        """Times the pass's work (the runner's own `pass_work_s`: from the consumer poll
        returning to the publish), not the time the poll waited for records: an idle loop
        blocked in poll is not stalled (the consumer heartbeats from its own thread)."""
        try:
            super().step()
        finally:
            end = time.perf_counter()
            work = self.pass_work_s
            self.passes.append((end - work, work))


@dataclass
class PassStats:
    count: int
    p50: float
    p99: float
    max: float


def pass_stats(passes: Sequence[tuple[float, float]], start: float, end: float) -> PassStats:
    """Loop passes that overlap [start, end] (perf_counter times)."""
    d = sorted(s for t, s in passes if t + s >= start and t <= end)
    if not d:
        return PassStats(0, 0.0, 0.0, 0.0)

    def q(x: float) -> float:
        return d[min(len(d) - 1, int(x * len(d)))]

    return PassStats(len(d), q(0.5), q(0.99), d[-1])


class HeldGemini(Gemini):
    """Accepts every job and never finishes one: requests stay SUBMITTED in the sidecar."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ids = itertools.count()
        self.sizes: list[int] = []

    def create(
        self,
        model: str,
        kind: Kind,
        display_name: str,
        priority: int,
        inline: Sequence[JobInput] | None = None,
        file_name: str | None = None,
        claim: ClaimWindow | None = None,
    ) -> str:
        self.sizes.append(len(inline or ()))
        return f"batches/held-{next(self._ids)}"

    def upload_file(self, buf: IO[bytes], display_name: str) -> str:
        self.sizes.append(sum(1 for _ in buf))
        return f"files/held-{next(self._ids)}"

    def get(self, name: str) -> RemoteJob:
        return RemoteJob(name, JobState.RUNNING, None, None, None)

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]:
        return {}

    def delete_file(self, file_name: str) -> None:
        pass

    def delete_job(self, name: str) -> None:
        pass


class GatedGemini(HeldGemini):
    """`jobs` file jobs, RUNNING until `release()`; then SUCCEEDED with one response per
    request.

    Each output file is built at upload (before the clock starts); `created` is set once
    `jobs` jobs are created; `succeeded_at` is the perf_counter time the sidecar first read
    a job as SUCCEEDED.
    """

    def __init__(self, *args: Any, jobs: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs = jobs
        self._release = threading.Event()
        self._outputs: dict[str, bytes] = {}
        """Output file name -> its bytes (input file k answers as output file k)."""
        self._files: dict[str, str] = {}
        """Batch job name -> its output file name."""
        self.created = threading.Event()
        self.succeeded_at: float | None = None

    def upload_file(self, buf: IO[bytes], display_name: str) -> str:
        response = orjson.dumps(TYPICAL_RESPONSE)
        out = bytearray()
        count = 0
        for line in buf:
            key = orjson.loads(line)["key"]
            out += b'{"key":' + orjson.dumps(key) + b',"response":' + response + b"}\n"
            count += 1
        self.sizes.append(count)
        k = len(self._outputs)
        self._outputs[f"files/gated-output-{k}"] = bytes(out)
        return f"files/gated-input-{k}"

    def create(
        self,
        model: str,
        kind: Kind,
        display_name: str,
        priority: int,
        inline: Sequence[JobInput] | None = None,
        file_name: str | None = None,
        claim: ClaimWindow | None = None,
    ) -> str:
        if claim is not None:
            claim.check()  # as the real adapter does: a stale claim sends nothing
        name = f"batches/gated-{len(self._files)}"
        self._files[name] = (file_name or "").replace("gated-input", "gated-output")
        if len(self._files) >= self._jobs:
            self.created.set()
        return name

    def release(self) -> None:
        self._release.set()

    def get(self, name: str) -> RemoteJob:
        if not self._release.is_set():
            return RemoteJob(name, JobState.RUNNING, None, None, None)
        if self.succeeded_at is None:
            self.succeeded_at = time.perf_counter()
        return RemoteJob(name, JobState.SUCCEEDED, None, None, self._files[name])

    def download_to(self, file_name: str, out: IO[bytes]) -> None:
        out.write(self._outputs[file_name])


class CountingGemini(Gemini):
    """The real adapter (emulator), recording how many requests each created job holds."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sizes: list[int] = []

    def create(
        self,
        model: str,
        kind: Kind,
        display_name: str,
        priority: int,
        inline: Sequence[JobInput] | None = None,
        file_name: str | None = None,
        claim: ClaimWindow | None = None,
    ) -> str:
        name = super().create(model, kind, display_name, priority, inline, file_name, claim)
        self.sizes.append(len(inline) if inline is not None else -1)
        return name


__all__ = ["PRODUCER_CONFIG"]
