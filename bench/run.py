"""Sidecar throughput and memory against a bare kafka-python consumer, measured in one run.

Run: `make bench` (fetches the broker jars, then runs this) or
`.venv/bin/python bench/run.py [--requests N] [--partitions P] [--batch B] [--profile FILE]`.

Prints figures and ratios; asserts nothing. Phases (bench/README.md explains every figure):

1. setup: a broker (our own LocalKafka, or KAFKA_BOOTSTRAP_SERVERS if set), the Gemini Batch
   API emulator in-process with tiny delays, a request topic with P partitions and N typical
   requests (~500-byte GenerateContentRequest JSON) pre-produced with `RequestPublisher`;
2. micro: µs per request of `Codec.decode_request`, `validate_request`, `Codec.encode_result`
   (and, for context, the SDK `InlinedRequest` build the sidecar does once per request at create);
3. baseline: a bare `KafkaConsumer` reading all N records (manual commit once at the end),
   then again with `Codec.decode_request` per record;
4. sidecar: `Sidecar` in a thread, fresh group: time until all N are taken in, until all N
   offsets are committed (INTENTs acked), and until all N results are in the results topic;
   peak RSS before/after;
5. memory: the sidecar again (fresh group, max_jobs=1) against a Gemini whose one job never
   ends, so every later INTENT waits for quota with its requests in the sidecar's memory;
   tracemalloc current/peak → MB per 10k in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import logging
import os
import platform
import pstats
import resource
import signal
import sys
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "deploy" / "local"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import kafka_local  # noqa: E402
import orjson  # noqa: E402
from kafka import KafkaAdminClient, KafkaConsumer, OffsetAndMetadata, TopicPartition  # noqa: E402

from connector.adapters.gemini import Gemini  # noqa: E402
from connector.client import RequestPublisher  # noqa: E402
from connector.config import Settings  # noqa: E402
from connector.core.codec import Codec  # noqa: E402
from connector.core.records import (  # noqa: E402
    JobState,
    Kind,
    RemoteJob,
    RequestEvent,
    ResultEvent,
    ResultStatus,
    TokenUsage,
)
from connector.core.validation import validate_request  # noqa: E402
from connector.emulator import EmulatorConfig, EmulatorServer  # noqa: E402
from connector.logs import configure as configure_logs  # noqa: E402
from connector.runner import Sidecar  # noqa: E402
from connector.testing import wait_until  # noqa: E402

MODEL = "gemini-2.5-flash"
MAX_REQUEST_BYTES = 10_000_000
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"


# -- the typical request -------------------------------------------------------------------


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


def typical_event(i: int) -> RequestEvent:
    return RequestEvent(
        request_id=f"bench-{i:08d}",
        model=MODEL,
        kind=Kind.GENERATE,
        body=typical_body(i),
        metadata={"tenant": "bench", "trace": f"t{i:08d}"},
        created_ms=int(time.time() * 1000),
    )


def typical_result(ev: RequestEvent, offset: int) -> ResultEvent:
    response = {
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
    return ResultEvent(
        request_id=ev.request_id,
        status=ResultStatus.OK,
        model=ev.model,
        kind=ev.kind,
        response_json=orjson.dumps(response).decode(),
        metadata=dict(ev.metadata),
        batch_job="batches/bench123",
        usage=TokenUsage(120, 14, 134),
        request_created_ms=ev.created_ms,
        completed_ms=ev.created_ms + 1000,
        source_partition=0,
        source_offset=offset,
    )


# -- small helpers ---------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """ru_maxrss of this process (KiB on Linux) in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """VmRSS from /proc (Linux); 0 elsewhere."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


ALIVE: list[threading.Thread] = []
"""The sidecar thread being waited on: a wait fails at once if it died."""


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> float:
    """Poll until `predicate()` holds; return the monotonic time seen. Raise at the deadline."""

    def check() -> bool:
        if ALIVE and not ALIVE[-1].is_alive():
            raise RuntimeError(f"the sidecar thread ended while waiting for {what}")
        return bool(predicate())

    wait_until(check, timeout, interval, what)
    return time.monotonic()


def per_call_us(fn: Callable[[Any], object], items: Sequence[Any], repeat: int = 3) -> float:
    """Best-of-`repeat` µs per call of `fn` over `items`."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def fmt_ratio(x: float) -> str:
    """A ratio vs baseline; small ones also as "1/k"."""
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3f} (1/{1 / x:.0f})"


def fmt_rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}/s" if seconds > 0 else "-"


@dataclass
class Row:
    figure: str
    value: str
    ratio: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, figure: str, value: str, ratio: str = "") -> None:
        self.rows.append(Row(figure, value, ratio))
        print(f"  {figure}: {value}" + (f"  [{ratio}]" if ratio else ""), flush=True)

    def table(self) -> str:
        w1 = max(len(r.figure) for r in self.rows)
        w2 = max(len(r.value) for r in self.rows)
        lines = [f"| {'figure':<{w1}} | {'value':>{w2}} | ratio vs baseline |"]
        lines.append(f"|{'-' * (w1 + 2)}|{'-' * (w2 + 1)}:|---|")
        lines += [f"| {r.figure:<{w1}} | {r.value:>{w2}} | {r.ratio} |" for r in self.rows]
        return "\n".join(lines)


# -- setup -------------------------------------------------------------------------------------


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else our own LocalKafka in a temporary directory."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        print(f"== broker: {external} (from {BOOTSTRAP_ENV})", flush=True)
        yield external
        return
    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        kafka = kafka_local.LocalKafka(Path(tmp), port=kafka_local.free_port(), heap="1g")
        t0 = time.monotonic()
        kafka.start(timeout=180)
        print(
            f"== broker: own LocalKafka {kafka.bootstrap} ready in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        try:
            yield kafka.bootstrap
        finally:
            kafka.stop()


@dataclass(frozen=True)
class Topics:
    requests: str
    results: str
    dlq: str
    partitions: int

    @classmethod
    def create(cls, bootstrap: str, partitions: int) -> Topics:
        run = uuid.uuid4().hex[:8]
        t = cls(f"bench.{run}.requests", f"bench.{run}.results", f"bench.{run}.dlq", partitions)
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-admin")
        try:
            spec = {"num_partitions": partitions, "replication_factor": 1}
            admin.create_topics(
                {t.requests: spec, t.results: spec, t.dlq: spec}, wait_for_metadata=True
            )
        finally:
            admin.close()
        return t


def produce(bootstrap: str, topics: Topics, n: int) -> float:
    """Publish N typical requests, round-robin over partitions; return the seconds it took."""
    pub = RequestPublisher(bootstrap, topics.requests)
    t0 = time.monotonic()
    try:
        for i in range(n):
            ev = typical_event(i)
            pub.publish(
                ev.request_id,
                ev.model,
                ev.body,
                metadata=ev.metadata,
                partition=i % topics.partitions,
            )
        pub.flush(timeout_s=120)
    finally:
        pub.close()
    return time.monotonic() - t0


class Offsets:
    """Reads a group's committed offsets and a topic's end offsets, without joining any group."""

    def __init__(self, bootstrap: str, group_id: str | None = None) -> None:
        self._c = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), group_id=group_id, enable_auto_commit=False
        )

    def committed_total(self, topic: str, partitions: int) -> int:
        total = 0
        for p in range(partitions):
            off = self._c.committed(TopicPartition(topic, p))
            total += off or 0
        return total

    def end_total(self, topic: str, partitions: int) -> int:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum(self._c.end_offsets(tps).values())

    def close(self) -> None:
        self._c.close()


# -- phases -------------------------------------------------------------------------------------


def micro(n: int, report: Report) -> dict[str, float]:
    codec = Codec()
    events = [typical_event(i) for i in range(n)]
    encoded = [codec.encode_request(ev) for ev in events]
    results = [typical_result(ev, i) for i, ev in enumerate(events)]
    print(
        f"== micro ({n:,} distinct requests; avro record {len(encoded[0])} bytes, body "
        f"{len(events[0].body)} bytes, result record {len(codec.encode_result(results[0]))} bytes)",
        flush=True,
    )
    figures = {
        "decode": per_call_us(codec.decode_request, encoded),
        "validate": per_call_us(lambda ev: validate_request(ev, MAX_REQUEST_BYTES), events),
        "encode_result": per_call_us(codec.encode_result, results),
        "encode_request": per_call_us(codec.encode_request, events),
    }
    report.add(
        "micro: Codec.decode_request", f"{figures['decode']:.1f} µs", "ref: fastavro read 4.7 µs"
    )
    report.add(
        "micro: validate_request",
        f"{figures['validate']:.1f} µs",
        "ref: msgspec typed decode 1.0 µs",
    )
    report.add(
        "micro: Codec.encode_result",
        f"{figures['encode_result']:.1f} µs",
        "ref: fastavro write 4.6 µs",
    )
    report.add("micro: Codec.encode_request", f"{figures['encode_request']:.1f} µs")
    return figures


@dataclass
class ConsumeRun:
    join_s: float
    """Subscribe until the first record arrived (group join, metadata, first fetch)."""
    consume_s: float
    """First record until the offsets of all N were committed."""


def bare_consume(bootstrap: str, topics: Topics, n: int, decode: bool) -> ConsumeRun:
    """A bare kafka-python group consumer over all N records; one manual commit at the end."""
    codec = Codec()
    c = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    try:
        # kafka-python 3.0.12: subscribing before the topic's metadata is loaded can stall the join.
        if not c.partitions_for_topic(topics.requests):
            raise RuntimeError(f"no metadata for {topics.requests}")
        t0 = time.monotonic()
        c.subscribe([topics.requests])
        first: float | None = None
        got = 0
        next_offsets: dict[TopicPartition, int] = {}
        deadline = t0 + 300
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {got} of {n} records")
            batches = c.poll(timeout_ms=1000, max_records=500)
            if batches and first is None:
                first = time.monotonic()
            for tp, recs in batches.items():
                got += len(recs)
                next_offsets[tp] = recs[-1].offset + 1
                if decode:
                    for r in recs:
                        codec.decode_request(r.value)
        c.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in next_offsets.items()})
        end = time.monotonic()
        assert first is not None
        return ConsumeRun(first - t0, end - first)
    finally:
        c.close()


class HeldGemini(Gemini):
    """A Gemini that accepts jobs which never finish.

    With `max_jobs=1` the first sealed batch becomes one never-ending job and every later
    INTENT waits for quota (a cheap `admit` check, no SDK work), its requests held in memory.
    """

    def create(self, *args: Any, **kwargs: Any) -> str:
        return "batches/bench-held"

    def get(self, name: str) -> RemoteJob:
        return RemoteJob(name, JobState.RUNNING, None, None, None)


def sidecar_settings(
    bootstrap: str, topics: Topics, group: str, base_url: str, batch: int
) -> Settings:
    return Settings(
        bootstrap_servers=bootstrap,
        request_topic=topics.requests,
        result_topic=topics.results,
        dlq_topic=topics.dlq,
        group_id=group,
        gemini_base_url=base_url,
        api_key="bench",
        batch_max_requests=batch,
        batch_max_wait_s=1.0,
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


@contextlib.contextmanager
def sidecar_thread(
    settings: Settings, gemini: Gemini, profile: cProfile.Profile | None = None
) -> Iterator[Sidecar]:
    sidecar = Sidecar(settings, gemini)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            if profile is not None:
                profile.runcall(sidecar.run)
            else:
                sidecar.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="sidecar", daemon=True)
    thread.start()
    ALIVE.append(thread)
    try:
        yield sidecar
    finally:
        ALIVE.remove(thread)
        sidecar.stop()
        thread.join(timeout=120)
        gemini.close()
    if thread.is_alive():
        raise RuntimeError("sidecar did not stop within 120 s")
    if errors:
        raise RuntimeError(f"sidecar crashed: {errors[0]!r}") from errors[0]


IDLE_S = 5.0
"""How long the sidecar must look idle (nothing open, no live job) before results are counted."""


def idle(sc: Sidecar) -> bool:
    """No open batch and no live job (read from another thread: a torn read means busy)."""
    try:
        st = sc.status()
    except RuntimeError:  # a dict changed size while the loop thread worked
        return False
    return st["open_requests"] == 0 and st["intents"] == 0 and st["submitted"] == 0


@dataclass
class SidecarRun:
    results: int
    """Results in the results topic at the end (N unless requests were lost)."""
    join_s: float
    """Thread start until the first record was taken in (connect, topics, join, fetch)."""
    intake_s: float
    """First record until all N were taken in (decoded, validated, batched)."""
    commit_s: float
    """First record until all N offsets were committed (INTENTs acked)."""
    e2e_s: float
    """First record until all N results were in the results topic."""
    jobs: int
    rss_peak_before: float
    rss_peak_after: float
    rss_now_start: float
    rss_now_max: float


def run_sidecar(
    bootstrap: str,
    topics: Topics,
    n: int,
    emulator: EmulatorServer,
    batch: int,
    profile: cProfile.Profile | None,
    timeout: float,
) -> SidecarRun:
    group = f"bench-sidecar-{uuid.uuid4().hex[:8]}"
    settings = sidecar_settings(bootstrap, topics, group, emulator.base_url, batch)
    gemini = Gemini("bench", emulator.base_url, timeout_s=settings.http_timeout_s)
    offsets = Offsets(bootstrap, group)
    rss_peak_before = peak_rss_mb()
    rss_start = current_rss_mb()
    rss_max = rss_start
    results = 0
    try:
        t0 = time.monotonic()
        with sidecar_thread(settings, gemini, profile) as sc:
            first = wait_for(lambda: sc.stats.consumed > 0, 120, "the sidecar's first record")
            took_in = wait_for(lambda: sc.stats.consumed >= n, timeout, "sidecar intake", 0.005)
            committed = wait_for(
                lambda: offsets.committed_total(topics.requests, topics.partitions) >= n,
                timeout,
                "committed offsets",
                0.02,
            )

            idle_since: float | None = None

            def results_in() -> bool:
                """All N results, or the sidecar idle for IDLE_S with results missing."""
                nonlocal rss_max, results, idle_since
                rss_max = max(rss_max, current_rss_mb())
                results = offsets.end_total(topics.results, topics.partitions)
                if results >= n:
                    return True
                if idle(sc):
                    idle_since = idle_since or time.monotonic()
                    return time.monotonic() - idle_since >= IDLE_S
                idle_since = None
                return False

            done = wait_for(results_in, timeout, "all results", 0.05)
            if results < n and idle_since is not None:
                done = idle_since
                print(
                    f"!! only {results:,} of {n:,} results: every offset is committed and the "
                    f"sidecar has nothing in flight, so {n - results:,} requests were lost",
                    flush=True,
                )
            jobs = sc.stats.jobs_finished
            ok, err = sc.stats.results_ok, sc.stats.results_error
            dlq = sc.stats.dead_lettered
        if err or dlq or ok < n:
            print(f"!! results: {ok} ok, {err} errors, {dlq} dead-lettered", flush=True)
    finally:
        offsets.close()
    return SidecarRun(
        results=results,
        join_s=first - t0,
        intake_s=took_in - first,
        commit_s=committed - first,
        e2e_s=done - first,
        jobs=jobs,
        rss_peak_before=rss_peak_before,
        rss_peak_after=peak_rss_mb(),
        rss_now_start=rss_start,
        rss_now_max=rss_max,
    )


@dataclass
class HeldRun:
    traced_start_mb: float
    traced_end_mb: float
    traced_peak_mb: float
    rss_delta_mb: float


def run_held(bootstrap: str, topics: Topics, n: int, batch: int, timeout: float) -> HeldRun:
    """All N in flight: INTENTs recorded and committed, held for quota, payloads in memory."""
    group = f"bench-held-{uuid.uuid4().hex[:8]}"
    base_url = "http://127.0.0.1:9"  # never called: HeldGemini answers without HTTP
    settings = replace(sidecar_settings(bootstrap, topics, group, base_url, batch), max_jobs=1)
    offsets = Offsets(bootstrap, group)
    rss_start = current_rss_mb()
    tracemalloc.start()
    try:
        traced_start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        with sidecar_thread(settings, HeldGemini("bench", base_url)):
            wait_for(
                lambda: offsets.committed_total(topics.requests, topics.partitions) >= n,
                timeout,
                "committed offsets (held run)",
                0.1,
            )
            traced_end, traced_peak = tracemalloc.get_traced_memory()
            rss_delta = current_rss_mb() - rss_start - tracemalloc.get_tracemalloc_memory() / 2**20
    finally:
        tracemalloc.stop()
        offsets.close()
    mb = 2**20
    return HeldRun(traced_start / mb, traced_end / mb, traced_peak / mb, rss_delta)


# -- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=50_000, help="N requests (default 50k)")
    parser.add_argument("--partitions", type=int, default=4, help="request topic partitions")
    parser.add_argument("--batch", type=int, default=5000, help="sidecar batch_max_requests")
    parser.add_argument("--micro", type=int, default=20_000, help="iterations of micro figures")
    parser.add_argument("--no-memory", action="store_true", help="skip the tracemalloc phase")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile the sidecar thread; write pstats to FILE"
    )
    parser.add_argument("--timeout", type=float, default=600, help="deadline of each wait (s)")
    args = parser.parse_args(argv)
    n: int = args.requests
    # Stop our broker on Ctrl-C or SIGTERM, also when started in the background (SIGINT ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    configure_logs("ERROR", "console")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    # kafka-python 3.0.12 logs a traceback when a closed client's socket gets a late read.
    logging.getLogger("kafka.net").setLevel(logging.CRITICAL)
    print(
        f"== bench {time.strftime('%Y-%m-%d %H:%M')} on {platform.node()}: {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, N={n:,}, partitions={args.partitions}, "
        f"batch={args.batch}",
        flush=True,
    )
    report = Report()
    micro(args.micro, report)

    emulator = EmulatorServer(
        EmulatorConfig(
            queue_delay_s=0.0,
            processing_delay_s=0.05,
            per_request_delay_s=0.0,
            running_slots=100,
            enqueued_token_cap=10**12,
        ),
        port=0,
    ).start()
    try:
        with broker() as bootstrap:
            topics = Topics.create(bootstrap, args.partitions)
            produce_s = produce(bootstrap, topics, n)
            print(f"== produced {n:,} requests in {produce_s:.1f} s", flush=True)
            report.add("setup: RequestPublisher produce", fmt_rate(n, produce_s))

            print("== baseline: bare KafkaConsumer", flush=True)
            bare = bare_consume(bootstrap, topics, n, decode=False)
            base_rate = n / bare.consume_s
            report.add("baseline: bare consume + commit", fmt_rate(n, bare.consume_s), "1.00")
            report.add("baseline: group join to first record", f"{bare.join_s:.2f} s")
            bare_dec = bare_consume(bootstrap, topics, n, decode=True)
            report.add(
                "baseline: bare consume + decode_request",
                fmt_rate(n, bare_dec.consume_s),
                f"{bare.consume_s / bare_dec.consume_s:.2f}",
            )
            decode_share = 1 - bare.consume_s / bare_dec.consume_s
            report.add("baseline: decode share of consume+decode", f"{decode_share:.0%}")

            print("== sidecar: intake, commit, end to end", flush=True)
            profile = cProfile.Profile() if args.profile else None
            sc = run_sidecar(bootstrap, topics, n, emulator, args.batch, profile, args.timeout)
            report.add("sidecar: start to first record", f"{sc.join_s:.2f} s")
            report.add(
                "sidecar intake: all N taken in",
                f"{fmt_rate(n, sc.intake_s)} ({sc.intake_s:.2f} s)",
                fmt_ratio((n / sc.intake_s) / base_rate),
            )
            report.add(
                "sidecar intake: all N committed",
                f"{fmt_rate(n, sc.commit_s)} ({sc.commit_s:.2f} s)",
                fmt_ratio((n / sc.commit_s) / base_rate),
            )
            report.add(
                "sidecar end to end: all N results",
                f"{fmt_rate(n, sc.e2e_s)} ({sc.e2e_s:.2f} s, {sc.jobs} jobs)",
                fmt_ratio((n / sc.e2e_s) / base_rate),
            )
            if sc.results < n:
                report.add("sidecar end to end: RESULTS MISSING", f"{n - sc.results:,} of {n:,}")
            report.add(
                "memory: peak RSS before / after sidecar",
                f"{sc.rss_peak_before:.0f} / {sc.rss_peak_after:.0f} MB",
            )
            report.add(
                "memory: RSS growth during sidecar run (incl. emulator)",
                f"{sc.rss_now_max - sc.rss_now_start:.0f} MB",
            )
            if profile is not None:
                profile.dump_stats(args.profile)
                out = io.StringIO()
                pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
                print(out.getvalue(), flush=True)

            if not args.no_memory:
                print("== memory: all N in flight in the sidecar (held for quota)", flush=True)
                held = run_held(bootstrap, topics, n, args.batch, args.timeout)
                grown = held.traced_end_mb - held.traced_start_mb
                report.add(
                    "memory: traced heap with N in flight (end / peak)",
                    f"{grown:.0f} / {held.traced_peak_mb - held.traced_start_mb:.0f} MB",
                )
                # One batch (at most B requests) became the running job; its payload is freed.
                held_n = max(1, n - args.batch)
                report.add(
                    "memory: MB per 10k requests in flight",
                    f"{grown / (held_n / 10_000):.1f} ({held_n:,} held)",
                )
                report.add("memory: RSS growth with N in flight", f"{held.rss_delta_mb:.0f} MB")
    finally:
        emulator.stop()

    print("\n" + report.table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
