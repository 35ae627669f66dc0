"""The sidecar against bare kafka-python baselines, measured in one run; asserts nothing.

Run: `make bench` (quick sizes) or `.venv/bin/python bench/run.py [--quick | --full] [...]`.
Prints a table of figures with ratios against baselines measured in the same run, and writes
them as JSON (bench/results/latest.json by default). bench/README.md explains every figure.

Phases:
1. micro: CPU µs per call of the codec, validation and, for reference, fastavro itself;
2. baselines: bare consume; consume + decode + validate; a consume → produce pipe with the
   sidecar's producer settings; bare produce of result-size records (several settings);
3. intake: the sidecar against a Gemini that accepts every job and never ends one;
4. end to end: the sidecar against the emulator (its own process; loop passes timed);
5. fan-out: one big file job held RUNNING, then SUCCEEDED: time to its last result, and
   loop pass times during the delivery;
6. in flight: RSS per request in SUBMITTED jobs, in a subprocess (bench/inflight.py);
7. big results file: peak RSS growth delivering one --bigfile-mb MB results file, in a
   subprocess (bench/big_results.py);
8. sustained: a steady feed for --sustained-s seconds: RSS slope and job packing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from io import BytesIO
from pathlib import Path
from typing import Any

from baselines import (
    contract_pipe,
    contract_produce,
    publish_json_requests,
    quix_app,
)
from common import (
    MAX_REQUEST_BYTES,
    MODEL,
    PRODUCER_CONFIG,
    ROOT,
    CountingGemini,
    GatedGemini,
    HeldGemini,
    PassStats,
    TimedSidecar,
    current_rss_mb,
    pass_stats,
    produce_requests,
    sidecar_settings,
    typical_event,
    typical_result,
)
from fastavro import schemaless_writer
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, OffsetAndMetadata, TopicPartition

from connector.config import Settings
from connector.core.codec import Codec
from connector.core.validation import validate_request
from connector.logs import configure as configure_logs
from connector.runner import Sidecar
from connector.startup import Startup
from connector.testing import wait_until

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
SIZES = {
    # requests (intake, e2e), fan-out job, in flight, sustained seconds, micro iterations
    "quick": {"requests": 20_000, "fanout": 20_000, "inflight": 100_000, "sustained": 20,
              "micro": 5_000, "bigfile_mb": 200, "interleave": 20_000},
    "full": {"requests": 100_000, "fanout": 100_000, "inflight": 1_000_000, "sustained": 120,
             "micro": 20_000, "bigfile_mb": 2_048, "interleave": 100_000},
}  # fmt: skip

PRODUCER_VARIANTS: dict[str, dict[str, Any]] = {
    "linger 5 ms, 16 KB": {"linger_ms": 5, "batch_size": 16_384},
    "linger 20 ms, 256 KB": {"linger_ms": 20, "batch_size": 256 * 1024},
    "linger 20 ms, 256 KB, gzip": {
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "compression_type": "gzip",
    },
    "linger 50 ms, 1 MB": {"linger_ms": 50, "batch_size": 1024 * 1024},
}
"""Bare-produce rows besides the sidecar's own settings; all keep acks=all and idempotence."""

ALIVE: list[threading.Thread] = []


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.01
) -> float:
    """Poll until `predicate()` holds; return the perf_counter time seen. Raise at the deadline."""

    def check() -> bool:
        if ALIVE and not ALIVE[-1].is_alive():
            raise RuntimeError(f"the sidecar thread ended while waiting for {what}")
        return bool(predicate())

    wait_until(check, timeout, interval, what)
    return time.perf_counter()


def cpu_us(fn: Callable[[Any], object], items: Sequence[Any], repeat: int = 5) -> float:
    """Best-of-`repeat` CPU µs (process_time) per call of `fn` over `items`."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        for x in items:
            fn(x)
        best = min(best, time.process_time() - t0)
    return best / len(items) * 1e6


# -- report --------------------------------------------------------------------------------


@dataclass
class Row:
    figure: str
    value: str
    ratio: str = ""
    target: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)

    def add(self, figure: str, value: str, ratio: str = "", target: str = "", **data: Any) -> None:
        self.rows.append(Row(figure, value, ratio, target))
        self.data.update(data)
        extra = f"  [{ratio}]" if ratio else ""
        print(f"  {figure}: {value}{extra}" + (f"  target {target}" if target else ""), flush=True)

    def table(self) -> str:
        w1 = max(len(r.figure) for r in self.rows)
        w2 = max(len(r.value) for r in self.rows)
        w3 = max(len("ratio"), *(len(r.ratio) for r in self.rows))
        lines = [f"| {'figure':<{w1}} | {'value':>{w2}} | {'ratio':<{w3}} | target |"]
        lines.append(f"|{'-' * (w1 + 2)}|{'-' * (w2 + 1)}:|{'-' * (w3 + 2)}|---|")
        lines += [
            f"| {r.figure:<{w1}} | {r.value:>{w2}} | {r.ratio:<{w3}} | {r.target} |"
            for r in self.rows
        ]
        return "\n".join(lines)


def rate(n: int, s: float) -> str:
    return f"{n / s:,.0f}/s" if s > 0 else "-"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- broker and topics ------------------------------------------------------------------------


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else our own LocalKafka in a temporary directory."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        print(f"== broker: {external} (from {BOOTSTRAP_ENV})", flush=True)
        yield external
        return
    import kafka_local  # noqa: PLC0415  # deploy/local, on sys.path once common is imported

    with tempfile.TemporaryDirectory(prefix="bench-kafka-") as tmp:
        kafka = kafka_local.LocalKafka(Path(tmp), port=kafka_local.free_port(), heap="1g")
        t0 = time.monotonic()
        kafka.start(timeout=180)
        print(f"== broker: own LocalKafka {kafka.bootstrap} ({time.monotonic() - t0:.1f} s)")
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


def create_topics(bootstrap: str, name: str, partitions: int) -> Topics:
    run = uuid.uuid4().hex[:8]
    t = Topics(
        f"bench.{run}.{name}", f"bench.{run}.{name}.results", f"bench.{run}.{name}.dlq", partitions
    )
    admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="bench-admin")
    try:
        spec = {"num_partitions": partitions, "replication_factor": 1}
        admin.create_topics(
            {t.requests: spec, t.results: spec, t.dlq: spec}, wait_for_metadata=True
        )
    finally:
        admin.close()
    return t


class Offsets:
    """A group's committed offsets and a topic's end offsets, without joining any group."""

    def __init__(self, bootstrap: str, group_id: str | None = None) -> None:
        self._c = KafkaConsumer(
            bootstrap_servers=bootstrap.split(","), group_id=group_id, enable_auto_commit=False
        )

    def committed_total(self, topic: str, partitions: int) -> int:
        return sum(self._c.committed(TopicPartition(topic, p)) or 0 for p in range(partitions))

    def end_total(self, topic: str, partitions: int) -> int:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        return sum(self._c.end_offsets(tps).values())

    def close(self) -> None:
        self._c.close()


# -- phase 1: micro -----------------------------------------------------------------------------


def micro(k: int, report: Report) -> None:
    codec = Codec()
    events = [typical_event(i) for i in range(k)]
    encoded = [codec.encode_request(ev) for ev in events]
    results = [typical_result(ev, i) for i, ev in enumerate(events)]
    records = [codec._result_record(r) for r in results]
    schema = codec._result.schema

    def fastavro_write(rec: dict[str, Any]) -> bytes:
        buf = BytesIO()
        schemaless_writer(buf, schema, rec)
        return buf.getvalue()

    print(f"== micro (CPU µs per call, best of 5 over {k:,}; request {len(encoded[0])} B, "
          f"result {len(codec.encode_result(results[0]))} B)", flush=True)  # fmt: skip
    dec = cpu_us(codec.decode_request, encoded)
    val = cpu_us(lambda ev: validate_request(ev, MAX_REQUEST_BYTES), events)
    enc = cpu_us(codec.encode_result, results)
    ref = cpu_us(fastavro_write, records)
    report.add("micro: Codec.decode_request", f"{dec:.1f} µs", micro_decode_us=dec)
    report.add("micro: validate_request", f"{val:.1f} µs", micro_validate_us=val)
    report.add(
        "micro: Codec.encode_result",
        f"{enc:.1f} µs",
        f"{enc / ref:.2f} of fastavro",
        micro_encode_result_us=enc,
    )
    report.add(
        "micro: fastavro schemaless_writer, same record (prebuilt dict)",
        f"{ref:.1f} µs",
        "1.00",
        micro_fastavro_write_us=ref,
    )
    per_result, per_chunk = sink_micro(results[:2000])
    report.add(
        "micro: Sink.result, one call per result (null producer, metrics on)",
        f"{per_result:.1f} µs",
        "1.00",
        micro_sink_per_result_us=per_result,
    )
    report.add(
        "micro: Sink.results, one call per chunk, partition computed (null producer)",
        f"{per_chunk:.1f} µs",
        f"{per_chunk / per_result:.2f} of per result",
        micro_sink_per_chunk_us=per_chunk,
    )


def sink_micro(results: Sequence[Any]) -> tuple[float, float]:
    """CPU µs per result of the sink: each result its own call (the path before per-chunk
    delivery, the client placing it) vs one call per chunk with the partition computed."""
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from connector.core.partitions import Stats  # noqa: PLC0415
    from connector.core.results import Outgoing  # noqa: PLC0415
    from connector.metrics import Telemetry  # noqa: PLC0415
    from connector.stages.sink import Limits, Sink  # noqa: PLC0415

    class NullProducer:
        def send(self, *_args: Any, **_kwargs: Any) -> None:
            return None

    s = Settings(gemini_base_url="http://127.0.0.1:9", api_key="bench")
    out = [Outgoing(r.request_id.encode(), r) for r in results]

    def sink(partitions: int) -> Sink:
        telemetry = Telemetry(s, registry=CollectorRegistry())
        return Sink(
            s, NullProducer(), Codec(), Stats(), obs=telemetry,  # type: ignore[arg-type]
            limits=Limits(result_partitions=partitions),
        )  # fmt: skip

    one = sink(0)
    chunked = sink(4)
    per_result = cpu_us(lambda o: one.result(o.kafka_key, o.result), out)
    per_chunk = cpu_us(chunked.results, [out]) / len(out)
    return per_result, per_chunk


# -- phase 2: baselines ---------------------------------------------------------------------------


def bare_consume(
    bootstrap: str, topics: Topics, n: int, decode: bool = False, pipe: str | None = None
) -> float:
    """Bare group consumer over all N; returns first record → all committed (seconds).

    decode: Codec.decode_request + validate_request per record. pipe: produce one
    result-size record per request to that topic with the sidecar's producer settings,
    flushed before the commit.
    """
    codec = Codec()
    value = codec.encode_result(typical_result(typical_event(0), 0))
    producer = (
        KafkaProducer(bootstrap_servers=bootstrap.split(","), **PRODUCER_CONFIG) if pipe else None
    )
    c = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        group_id=f"bench-bare-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    try:
        if not c.partitions_for_topic(topics.requests):
            raise RuntimeError(f"no metadata for {topics.requests}")
        c.subscribe([topics.requests])
        first: float | None = None
        got = 0
        next_offsets: dict[TopicPartition, int] = {}
        deadline = time.monotonic() + 600
        while got < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare consumer read {got} of {n} records")
            batches = c.poll(timeout_ms=1000, max_records=500)
            if batches and first is None:
                first = time.perf_counter()
            for tp, recs in batches.items():
                got += len(recs)
                next_offsets[tp] = recs[-1].offset + 1
                if decode:
                    for r in recs:
                        validate_request(codec.decode_request(r.value), MAX_REQUEST_BYTES)
                if producer is not None:
                    for r in recs:
                        producer.send(pipe, value=value, key=r.key, partition=tp.partition)
        if producer is not None:
            producer.flush(timeout=600)
        c.commit({tp: OffsetAndMetadata(o, "", -1) for tp, o in next_offsets.items()})
        assert first is not None
        return time.perf_counter() - first
    finally:
        c.close()
        if producer is not None:
            producer.close()


RESULT_VALUES: list[bytes] = []


def bare_produce(
    bootstrap: str, topic: str, n: int, config: dict[str, Any], repeat: int = 2
) -> float:
    """N result-size records (keyed) with `config`; best of `repeat` first send → flushed (s).

    Values are 1,000 distinct typical results (ids, trace, offsets differ), cycled.
    """
    if not RESULT_VALUES:
        codec = Codec()
        RESULT_VALUES.extend(
            codec.encode_result(typical_result(typical_event(i), i)) for i in range(1000)
        )
    best = float("inf")
    for _ in range(repeat):
        p = KafkaProducer(bootstrap_servers=bootstrap.split(","), **config)
        try:
            p.send(topic, value=b"warm-up").get(timeout=60)  # metadata, producer id
            t0 = time.perf_counter()
            for i in range(n):
                p.send(topic, value=RESULT_VALUES[i % 1000], key=b"bench-%08d" % i)
            p.flush(timeout=600)
            best = min(best, time.perf_counter() - t0)
        finally:
            p.close()
    return best


# -- sidecar runs ----------------------------------------------------------------------


@contextlib.contextmanager
def sidecar_thread(sidecar: Sidecar, profile: Any = None) -> Iterator[Sidecar]:
    errors: list[BaseException] = []

    def target() -> None:
        try:
            if profile is not None:
                profile.start()
            try:
                sidecar.run()
            finally:
                if profile is not None:
                    profile.stop()
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
        with contextlib.suppress(Exception):
            sidecar.gemini.close()  # type: ignore[attr-defined]
    if thread.is_alive():
        raise RuntimeError("sidecar did not stop within 120 s")
    if errors:
        raise RuntimeError(f"sidecar crashed: {errors[0]!r}") from errors[0]


def settings_for(bootstrap: str, t: Topics, base_url: str, batch: int, **over: Any) -> Settings:
    return sidecar_settings(
        bootstrap,
        t.requests,
        t.results,
        t.dlq,
        f"bench-{uuid.uuid4().hex[:8]}",
        base_url,
        batch,
        over.pop("wait_s", 5.0),
        **over,
    )


@dataclass
class IntakeRun:
    took_in_s: float
    committed_s: float
    sizes: list[int]


def run_intake(
    bootstrap: str,
    t: Topics,
    n: int,
    batch: int,
    timeout: float,
    profile: Any = None,
    client: str = "kafka-python",
) -> IntakeRun:
    """Intake alone: jobs are accepted at once and never end (no delivery competes)."""
    base = "http://127.0.0.1:9"
    s = settings_for(
        bootstrap, t, base, batch, max_jobs=10**6, max_waiting_intents=10**6, poll_initial_s=3600,
        poll_max_s=3600, kafka_client=client,
    )  # fmt: skip
    gemini = HeldGemini("bench", base)
    offsets = Offsets(bootstrap, s.group_id)
    try:
        with sidecar_thread(TimedSidecar(s, gemini), profile) as sc:
            first = wait_for(lambda: sc.stats.consumed > 0, 120, "first record")
            took = wait_for(lambda: sc.stats.consumed >= n, timeout, "intake", 0.005)
            committed = wait_for(
                lambda: offsets.committed_total(t.requests, t.partitions) >= n,
                timeout,
                "commits",
                0.02,
            )
            wait_for(lambda: sum(gemini.sizes) >= n, timeout, "jobs created", 0.05)
    finally:
        offsets.close()
    return IntakeRun(took - first, committed - first, list(gemini.sizes))


@dataclass
class E2ERun:
    e2e_s: float
    results: int
    jobs: int
    passes: PassStats
    sizes: list[int]


def run_e2e(
    bootstrap: str,
    t: Topics,
    n: int,
    batch: int,
    emulator: EmulatorProcess,
    timeout: float,
    profile: Any = None,
    guarantee: str = "at_least_once",
    client: str = "kafka-python",
) -> E2ERun:
    s = settings_for(
        bootstrap, t, emulator.base_url, batch, processing_guarantee=guarantee,
        kafka_client=client,
    )  # fmt: skip
    eos = guarantee == "exactly_once"
    gemini = CountingGemini("bench", emulator.base_url, timeout_s=s.http_timeout_s)
    offsets = Offsets(bootstrap)
    results = 0
    try:
        with sidecar_thread(TimedSidecar(s, gemini), profile) as sc:
            first = wait_for(lambda: sc.stats.consumed > 0, 120, "first record")

            def all_results() -> bool:
                nonlocal results
                if eos:  # end offsets count transaction markers too: count what was sent
                    results = sc.stats.results_ok + sc.stats.results_error
                    return results >= n and sc.status().get("submitted", 1) == 0
                results = offsets.end_total(t.results, t.partitions)
                return results >= n

            done = wait_for(all_results, timeout, "all results", 0.05)
            wait_for(lambda: sc.passes[-1][0] > done, 120, "the pass after")  # type: ignore[attr-defined]
            passes = pass_stats(sc.passes, first, done)  # type: ignore[attr-defined]
            jobs = sc.stats.jobs_finished
    finally:
        offsets.close()
    return E2ERun(done - first, results, jobs, passes, list(gemini.sizes))


@dataclass
class FanoutRun:
    fanout_s: float
    passes: PassStats
    intake_s: float


def run_fanout(
    bootstrap: str,
    t: Topics,
    n: int,
    timeout: float,
    profile: Any = None,
    client: str = "kafka-python",
    jobs: int = 1,
) -> FanoutRun:
    """N requests in `jobs` file jobs of N/jobs each: RUNNING until all are created, then
    SUCCEEDED together."""
    base = "http://127.0.0.1:9"
    s = settings_for(
        bootstrap, t, base, n // jobs, wait_s=30.0, batch_inline_max_bytes=1_000_000,
        poll_initial_s=0.05, poll_max_s=0.05, kafka_client=client,
    )  # fmt: skip
    gemini = GatedGemini("bench", base, jobs=jobs)
    offsets = Offsets(bootstrap)
    try:
        with sidecar_thread(TimedSidecar(s, gemini), profile) as sc:
            first = wait_for(lambda: sc.stats.consumed > 0, 120, "first record")
            wait_for(gemini.created.is_set, timeout, "the big job(s) created", 0.05)
            created = time.perf_counter()
            gemini.release()
            wait_for(lambda: gemini.succeeded_at is not None, 60, "SUCCEEDED seen", 0.001)
            done = wait_for(
                lambda: offsets.end_total(t.results, t.partitions) >= n, timeout, "results", 0.02
            )
            assert gemini.succeeded_at is not None
            wait_for(lambda: sc.passes[-1][0] > done, 120, "the pass after")  # type: ignore[attr-defined]
            passes = pass_stats(sc.passes, gemini.succeeded_at, done)  # type: ignore[attr-defined]
    finally:
        offsets.close()
    return FanoutRun(done - gemini.succeeded_at, passes, created - first)


def run_inflight(bootstrap: str, batch: int, n: int, timeout: float) -> dict[str, Any]:
    """RSS per request in SUBMITTED jobs, in a subprocess (bench/inflight.py)."""
    t = create_topics(bootstrap, "inflight", 4)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "inflight.py"), bootstrap, t.requests, str(batch),
         str(n)],
        stdout=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        line = proc.stdout.readline()
        if not line.startswith("IDLE"):
            raise RuntimeError(f"inflight subprocess: {line!r}")
        produce_s = produce_requests(bootstrap, t.requests, 4, n, distinct=10_000)
        line = proc.stdout.readline()
        if not line.startswith("DONE"):
            raise RuntimeError(f"inflight subprocess: {line!r}")
        out: dict[str, Any] = json.loads(line[5:])
        out["produce_s"] = produce_s
        proc.wait(timeout=120)
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class EmulatorProcess:
    """The Gemini Batch API emulator in a subprocess on a free port (`base_url`, `stop()`)."""

    def __init__(self, **knobs: float) -> None:
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in knobs.items()]
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "connector.emulator", "--port=0", *flags],
            cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if not match:
            self._proc.kill()
            raise RuntimeError(f"emulator did not start: {line!r}")
        self.base_url = match.group(1)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def run_big_results(mb: int, timeout: float) -> dict[str, Any]:
    """Peak RSS growth delivering one `mb` MB results file, in a subprocess
    (bench/big_results.py: the emulator in another process, the sidecar on in-memory Kafka)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "big_results.py"), "--mb", str(mb)],
        capture_output=True, text=True, env=env, timeout=timeout, check=False,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            out: dict[str, Any] = json.loads(line[7:])
            return out
    raise RuntimeError(f"big_results.py failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")


@dataclass
class SustainedRun:
    seconds: float
    rate: float
    fed: int
    samples: list[tuple[float, float]]
    slope_mb_per_min: float
    sizes: list[int]
    passes: PassStats


def slope(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope (y per x) of (x, y) samples."""
    if len(samples) < 3:
        return 0.0
    xs, ys = zip(*samples, strict=True)
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in samples) / den if den else 0.0


def run_sustained(
    bootstrap: str,
    t: Topics,
    batch: int,
    emulator: EmulatorProcess,
    seconds: float,
    feed_rate: float,
) -> SustainedRun:
    """A steady feed at `feed_rate`/s for `seconds`; RSS sampled each 0.5 s (second half fit)."""
    s = settings_for(bootstrap, t, emulator.base_url, batch)
    gemini = CountingGemini("bench", emulator.base_url, timeout_s=s.http_timeout_s)
    stop = threading.Event()
    fed = 0
    codec = Codec()
    values = [codec.encode_request(typical_event(i)) for i in range(2_000)]

    def feed() -> None:
        nonlocal fed
        p = KafkaProducer(
            bootstrap_servers=bootstrap.split(","), linger_ms=20, batch_size=256 * 1024
        )
        t0 = time.monotonic()
        try:
            while not stop.is_set():
                due = int((time.monotonic() - t0) * feed_rate)
                while fed < due:
                    p.send(t.requests, value=values[fed % len(values)], key=b"s%09d" % fed,
                           partition=fed % t.partitions)  # fmt: skip
                    fed += 1
                time.sleep(0.01)  # pacing: the feed's steady rate
            p.flush(timeout=60)
        finally:
            p.close()

    samples: list[tuple[float, float]] = []
    with sidecar_thread(TimedSidecar(s, gemini)) as sc:
        feeder = threading.Thread(target=feed, name="feed", daemon=True)
        t0 = time.perf_counter()
        feeder.start()
        while (now := time.perf_counter()) - t0 < seconds:
            samples.append((now - t0, current_rss_mb()))
            time.sleep(0.5)  # pacing: one RSS sample every 0.5 s
        stop.set()
        feeder.join(timeout=60)
        end = time.perf_counter()
        passes = pass_stats(sc.passes, t0, end)  # type: ignore[attr-defined]
    half = [x for x in samples if x[0] >= seconds / 2]
    return SustainedRun(
        end - t0, feed_rate, fed, samples, slope(half) * 60, list(gemini.sizes), passes
    )


# -- main -----------------------------------------------------------------------------------------


def packing(sizes: Sequence[int], cap: int) -> tuple[float, float]:
    """Mean requests per job as a share of the cap, and jobs per 100k requests."""
    sizes = [x for x in sizes if x > 0]
    if not sizes:
        return 0.0, 0.0
    total = sum(sizes)
    return statistics.fmean(sizes) / cap, len(sizes) / total * 100_000


def available_clients() -> list[str]:
    """kafka-python, and confluent-kafka when its extra is installed."""
    try:
        import confluent_kafka  # noqa: F401, PLC0415  # optional extra
    except ImportError:
        return ["kafka-python"]
    return ["kafka-python", "confluent-kafka"]


def profiler_for(path: str | None) -> Any:
    if not path:
        return None
    from pyinstrument import Profiler  # noqa: PLC0415  # dev extra

    return Profiler(interval=0.001)


def write_profile(profiler: Any, path: str | None) -> None:
    if profiler is not None and path:
        Path(path).write_text(profiler.output_text(unicode=True, color=False))
        print(f"   profile written to {path}", flush=True)


def run_quix(bootstrap: str, partitions: int, n: int, consume_s: float, report: Report) -> float:
    """The Quix Streams application over the same N requests as JSON; returns its rate."""
    try:
        import quixstreams  # noqa: F401, PLC0415  # bench extra
    except ImportError:
        print("== Quix Streams not installed (pip install '.[bench]'): row skipped", flush=True)
        return 0.0
    print("== Quix Streams application (JSON in, a result per request out)", flush=True)
    q_t = create_topics(bootstrap, "quix", partitions)
    publish_json_requests(bootstrap, q_t.requests, partitions, n)
    offsets = Offsets(bootstrap)
    try:
        q_s = quix_app(
            bootstrap, q_t.requests, q_t.results, n,
            lambda: offsets.end_total(q_t.results, partitions),
        )  # fmt: skip
    finally:
        offsets.close()
    report.add(
        "Quix Streams application: JSON requests -> a result each, at-least-once",
        rate(n, q_s),
        f"{consume_s / q_s:.2f} of bare consume",
        quix_per_s=n / q_s,
    )
    return n / q_s


def sidecar_phases(
    bootstrap: str,
    args: argparse.Namespace,
    client: str,
    main_t: Topics,
    n: int,
    n_fan: int,
    dv_s: float,
    contract: tuple[float, float],
    emulator: EmulatorProcess,
    skip: set[str],
    report: Report,
    multi: bool,
) -> float:
    """Intake, end to end (and exactly-once), fan-out of the sidecar on `client`; returns
    its end-to-end rate. Ratios against the contract baselines of the same client."""
    pipe_s, prod_s = contract
    tag = f", {client}" if multi else ""

    def key(name: str) -> str:
        return f"{name}_{client}" if multi else name

    print(f"== sidecar intake{tag} (jobs accepted at once, never ending)", flush=True)
    prof = profiler_for(args.profile_intake)
    intake = run_intake(bootstrap, main_t, n, args.batch, args.timeout, prof, client)
    write_profile(prof, args.profile_intake and f"{args.profile_intake}.{client}")
    r_in = dv_s / intake.took_in_s
    report.add(
        f"sidecar intake{tag}: all N taken in",
        f"{rate(n, intake.took_in_s)} ({intake.took_in_s:.2f} s)",
        f"{r_in:.2f} of consume+decode+validate",
        f">= 0.9: {verdict(r_in >= 0.9)}",
        **{key("intake_per_s"): n / intake.took_in_s, key("intake_ratio"): r_in},
    )
    report.add(
        f"sidecar intake{tag}: all N committed",
        f"{rate(n, intake.committed_s)} ({intake.committed_s:.2f} s)",
        f"{dv_s / intake.committed_s:.2f} of consume+decode+validate",
        **{key("intake_committed_per_s"): n / intake.committed_s},
    )
    pk, jpk = packing(intake.sizes, args.batch)
    report.add(
        f"packing, backlog (intake run{tag}): requests per job / cap",
        f"{pk:.0%} ({len(intake.sizes)} jobs, {jpk:.0f} per 100k)",
        target=f">= 95%: {verdict(pk >= 0.95)}",
        **{key("packing_backlog"): pk, key("jobs_per_100k_backlog"): jpk},
    )

    e2e_rate = 0.0
    if "e2e" not in skip:
        print(f"== sidecar end to end{tag} (emulator)", flush=True)
        # Fresh topics: results are counted by end offsets, per client.
        e2e_t = create_topics(bootstrap, "e2e", args.partitions)
        produce_requests(bootstrap, e2e_t.requests, args.partitions, n)
        prof = profiler_for(args.profile)
        e2e = run_e2e(bootstrap, e2e_t, n, args.batch, emulator, args.timeout, prof, client=client)
        write_profile(prof, args.profile and f"{args.profile}.{client}")
        e2e_rate = n / e2e.e2e_s
        r_e2e = pipe_s / e2e.e2e_s
        report.add(
            f"sidecar end to end{tag}: all N results",
            f"{rate(n, e2e.e2e_s)} ({e2e.e2e_s:.2f} s, {e2e.jobs} jobs)",
            f"{r_e2e:.2f} of the contract pipe",
            f">= 0.6: {verdict(r_e2e >= 0.6)}",
            **{key("e2e_per_s"): e2e_rate, key("e2e_ratio"): r_e2e},
        )
        if e2e.results < n:
            report.add(f"sidecar end to end{tag}: RESULTS MISSING", f"{n - e2e.results:,}")
        p = e2e.passes
        report.add(
            f"loop pass during e2e{tag}: p50 / p99 / max",
            f"{p.p50 * 1e3:.0f} / {p.p99 * 1e3:.0f} / {p.max * 1e3:.0f} ms ({p.count})",
            target=f"p99 <= 1 s, max <= 2 s: {verdict(p.p99 <= 1.0 and p.max <= 2.0)}",
            **{key("e2e_passes"): asdict(p)},
        )

        if "eos" not in skip:
            print(f"== sidecar end to end{tag}, exactly-once mode (transactions)", flush=True)
            eos_t = create_topics(bootstrap, "eos", args.partitions)
            produce_requests(bootstrap, eos_t.requests, args.partitions, n)
            eos = run_e2e(
                bootstrap, eos_t, n, args.batch, emulator, args.timeout, None, "exactly_once",
                client,
            )  # fmt: skip
            r_eos = e2e.e2e_s / eos.e2e_s
            report.add(
                f"sidecar end to end{tag}, exactly_once: all N results",
                f"{rate(n, eos.e2e_s)} ({eos.e2e_s:.2f} s, {eos.jobs} jobs)",
                f"{r_eos:.2f} of at_least_once",
                f">= 0.8: {verdict(r_eos >= 0.8)}",
                **{key("eos_per_s"): n / eos.e2e_s, key("eos_vs_alo"): r_eos},
            )

    if "fanout" not in skip:
        print(f"== fan-out{tag}: one {n_fan:,}-request job, SUCCEEDED → last result", flush=True)
        fan_t = create_topics(bootstrap, "fanout", 1)
        produce_requests(bootstrap, fan_t.requests, 1, n_fan)
        prof = profiler_for(args.profile_fanout)
        fan = run_fanout(bootstrap, fan_t, n_fan, args.timeout, prof, client)
        write_profile(prof, args.profile_fanout and f"{args.profile_fanout}.{client}")
        r_fan = fan.fanout_s / prod_s
        report.add(
            f"fan-out{tag}: {n_fan:,} results, SUCCEEDED to last result",
            f"{fan.fanout_s:.2f} s ({rate(n_fan, fan.fanout_s)})",
            f"{r_fan:.2f}x contract produce",
            f"<= 1.5: {verdict(r_fan <= 1.5)}",
            **{key("fanout_s"): fan.fanout_s, key("fanout_ratio"): r_fan},
        )
        p = fan.passes
        report.add(
            f"loop pass during the fan-out{tag}: p50 / p99 / max",
            f"{p.p50 * 1e3:.0f} / {p.p99 * 1e3:.0f} / {p.max * 1e3:.0f} ms ({p.count})",
            target=f"p99 <= 1 s, max <= 2 s: {verdict(p.p99 <= 1.0 and p.max <= 2.0)}",
            **{key("fanout_passes"): asdict(p)},
        )
    if "interleave" not in skip:
        interleave(
            bootstrap, client, args.interleave_n, args.timeout, report, tag,
            args.profile_interleave, args.interleave_rounds,
        )  # fmt: skip
    return e2e_rate


INTERLEAVE_MODELS = (MODEL, "gemini-2.5-flash-lite")


def interleave(
    bootstrap: str,
    client: str,
    n: int,
    timeout: float,
    report: Report,
    tag: str,
    profile: str | None = None,
    rounds: int = 1,
) -> None:
    """N requests in one partition, two jobs of N/2 delivered at once: with one batch key
    (the jobs' offsets are two contiguous halves) and with two models alternating offset by
    offset (each job's offsets every other one: what real traffic looks like). Same size,
    same run: the ratio is what the interleaving costs the delivery. `rounds`: each way that
    many times, alternating, best of each (the machine is shared and noisy). `profile`: a
    path; each run's sidecar thread is profiled to `<path>.<client>.one` and `.two`."""
    best: dict[str, FanoutRun] = {}
    ways = (("one key", (MODEL,)), ("two keys interleaved", INTERLEAVE_MODELS)) * rounds
    for label, models in ways:
        print(f"== interleave{tag}: {n:,} requests, {label}", flush=True)
        t = create_topics(bootstrap, "interleave", 1)
        produce_requests(bootstrap, t.requests, 1, n, models=models)
        prof = profiler_for(profile)
        run = run_fanout(bootstrap, t, n, timeout, prof, client, jobs=2)
        write_profile(prof, profile and f"{profile}.{client}.{'two' if len(models) > 1 else 'one'}")
        print(f"   {run.fanout_s:.2f} s", flush=True)
        if label not in best or run.fanout_s < best[label].fanout_s:
            best[label] = run
    for label, run in best.items():
        p = run.passes
        report.add(
            f"interleave{tag}, {label}: {n:,} results in 2 jobs, SUCCEEDED to last result"
            + (f" (best of {rounds})" if rounds > 1 else ""),
            f"{run.fanout_s:.2f} s ({rate(n, run.fanout_s)})",
            f"passes p50/p99/max {p.p50 * 1e3:.0f}/{p.p99 * 1e3:.0f}/{p.max * 1e3:.0f} ms",
            **{f"interleave_{label.replace(' ', '_')}_s_{client}": run.fanout_s},
        )
    took = {label: run.fanout_s for label, run in best.items()}
    r = took["two keys interleaved"] / took["one key"]
    report.add(
        f"interleave{tag}: two keys interleaved vs one key",
        f"{r:.2f}x",
        target=f"<= 1.2x: {verdict(r <= 1.2)}",
        **{f"interleave_ratio_{client}": r},
    )


@contextlib.contextmanager
def per_result_delivery() -> Iterator[None]:
    """The delivery path before per-chunk work, for an A/B in one run: each result through
    `Sink.result` (own handle, stats, metrics) and placed by the client's partitioner."""
    from connector.stages.tracker import Tracker  # noqa: PLC0415

    def send(self: Any, entry: Any, outgoing: Any) -> list[Any]:
        return [self.ctx.sink.result(o.kafka_key, o.result) for o in outgoing]

    def read_limits(self: Any, admin: Any) -> None:
        original_read_limits(self, admin)
        self.limits = replace(self.limits, result_partitions=0)

    original_send, original_read_limits = Tracker.send, Startup.read_limits
    Tracker.send = send  # type: ignore[method-assign]
    Startup.read_limits = read_limits  # type: ignore[method-assign]
    try:
        yield
    finally:
        Tracker.send = original_send  # type: ignore[method-assign]
        Startup.read_limits = original_read_limits  # type: ignore[method-assign]


def fanout_ab(bootstrap: str, n_fan: int, timeout: float, report: Report, rounds: int) -> None:
    """The fan-out on kafka-python, per-result delivery vs per-chunk, alternating."""
    labels = ("per result", "per chunk")
    best = dict.fromkeys(labels, float("inf"))
    for _ in range(rounds):
        for label in labels:
            fan_t = create_topics(bootstrap, "fanout-ab", 1)
            produce_requests(bootstrap, fan_t.requests, 1, n_fan)
            with per_result_delivery() if label == "per result" else contextlib.nullcontext():
                fan = run_fanout(bootstrap, fan_t, n_fan, timeout)
            print(f"   {label}: {fan.fanout_s:.2f} s", flush=True)
            best[label] = min(best[label], fan.fanout_s)
    for label, secs in best.items():
        report.add(
            f"fan-out A/B, kafka-python, delivery {label}: {n_fan:,} results (best of {rounds})",
            f"{secs:.2f} s ({rate(n_fan, secs)})",
            f"{best['per result'] / secs:.2f}x per-result speed",
            **{f"fanout_ab_{label.replace(' ', '_')}_s": secs},
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="size", const="quick",
                      help="short sizes (default)")  # fmt: skip
    size.add_argument("--full", action="store_const", dest="size", const="full",
                      help="the issue's sizes: 100k, 1M in flight, 120 s sustained")  # fmt: skip
    parser.add_argument("--requests", type=int, help="N requests for intake and end to end")
    parser.add_argument("--fanout", type=int, help="requests in the one fan-out job")
    parser.add_argument("--inflight", type=int, help="requests held in SUBMITTED jobs (RSS)")
    parser.add_argument("--sustained-s", type=float, help="seconds of the sustained run")
    parser.add_argument("--bigfile-mb", type=int, help="size of the big results file (MB)")
    parser.add_argument(
        "--sustained-rate", type=float, help="feed rate (/s); default: half the e2e rate"
    )
    parser.add_argument("--micro", type=int, help="iterations of the micro figures")
    parser.add_argument("--partitions", type=int, default=4, help="request topic partitions")
    parser.add_argument("--batch", type=int, default=5000, help="sidecar batch_max_requests")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of phases to skip: "
        "e2e,eos,fanout,interleave,quix,inflight,bigfile,sustained",
    )
    parser.add_argument(
        "--only-interleave",
        action="store_true",
        help="run only the interleaved-keys rows (no micro figures, baselines, other phases)",
    )
    parser.add_argument(
        "--interleave", type=int, help="requests in the interleaved-keys runs (2 jobs)"
    )
    parser.add_argument(
        "--interleave-rounds",
        type=int,
        default=1,
        metavar="R",
        help="run each interleave way R times, alternating, best of each",
    )
    parser.add_argument(
        "--profile-interleave",
        metavar="FILE",
        help="pyinstrument the sidecar thread of each interleave run (FILE.<client>.one/.two)",
    )
    parser.add_argument("--profile", metavar="FILE", help="pyinstrument the e2e sidecar thread")
    parser.add_argument(
        "--profile-fanout", metavar="FILE", help="pyinstrument the fan-out sidecar thread"
    )
    parser.add_argument(
        "--profile-intake", metavar="FILE", help="pyinstrument the intake sidecar thread"
    )
    parser.add_argument(
        "--clients",
        default=",".join(available_clients()),
        help="Kafka clients to run the contract baselines and the sidecar on, in order "
        "(default: kafka-python, and confluent-kafka if installed)",
    )
    parser.add_argument(
        "--fanout-ab",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also run the fan-out with per-result and per-chunk delivery, alternating",
    )
    parser.add_argument("--json", default=str(ROOT / "bench" / "results" / "latest.json"))
    parser.add_argument("--timeout", type=float, default=900, help="deadline of each wait (s)")
    args = parser.parse_args(argv)
    mode = args.size or "quick"
    sz = SIZES[mode]
    n = args.requests or sz["requests"]
    n_fan = args.fanout or sz["fanout"]
    args.interleave_n = args.interleave or sz["interleave"]
    n_held = args.inflight or sz["inflight"]
    bigfile_mb = args.bigfile_mb or sz["bigfile_mb"]
    sustained_s = args.sustained_s if args.sustained_s is not None else sz["sustained"]
    skip = set(filter(None, args.skip.split(",")))
    clients = [c for c in args.clients.split(",") if c]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    configure_logs("ERROR", "console")
    logging.getLogger("kafka").setLevel(logging.CRITICAL)

    load0 = os.getloadavg()
    print(
        f"== bench {time.strftime('%Y-%m-%d %H:%M')} ({mode}) on {platform.node()}: "
        f"{os.cpu_count()} cores, load {load0[0]:.2f}, Python {platform.python_version()}, "
        f"N={n:,}, fan-out={n_fan:,}, in flight={n_held:,}, sustained={sustained_s:.0f} s, "
        f"partitions={args.partitions}, batch={args.batch}",
        flush=True,
    )
    report = Report()
    report.data.update(
        mode=mode, n=n, fanout_n=n_fan, inflight_n=n_held, sustained_s=sustained_s,
        partitions=args.partitions, batch=args.batch, producer_config=PRODUCER_CONFIG,
        started=time.strftime("%Y-%m-%dT%H:%M:%S"), load_start=load0,
    )  # fmt: skip
    if args.only_interleave:
        return only_interleave(args, clients, report, load0)
    micro(args.micro or sz["micro"], report)

    # In its own process, as Gemini is remote: its CPU is not the sidecar's (2 cores here).
    emulator = EmulatorProcess(
        queue_delay_s=0.0,
        processing_delay_s=0.05,
        per_request_delay_s=0.0,
        running_slots=100,
        enqueued_token_cap=10**12,
    )
    try:
        with broker() as bootstrap:
            main_t = create_topics(bootstrap, "main", args.partitions)
            produce_s = produce_requests(bootstrap, main_t.requests, args.partitions, n)
            print(f"== {n:,} requests published in {produce_s:.1f} s", flush=True)

            print("== baselines", flush=True)
            consume_s = bare_consume(bootstrap, main_t, n)
            report.add("baseline: bare consume + commit", rate(n, consume_s), "1.00",
                       baseline_consume_per_s=n / consume_s)  # fmt: skip
            dv_s = bare_consume(bootstrap, main_t, n, decode=True)
            report.add(
                "baseline: bare consume + decode + validate",
                rate(n, dv_s),
                f"{consume_s / dv_s:.2f} of bare consume",
                baseline_consume_decode_validate_per_s=n / dv_s,
            )
            pipe_s = bare_consume(bootstrap, main_t, n, pipe=main_t.dlq)
            report.add(
                "baseline: bare consume -> produce pipe (sidecar producer settings)",
                rate(n, pipe_s),
                f"{consume_s / pipe_s:.2f} of bare consume",
                baseline_pipe_per_s=n / pipe_s,
            )
            # The first producer run on a topic is slower (seen 20-35% in several runs): warm up.
            bare_produce(bootstrap, main_t.dlq, min(n_fan, 5_000), PRODUCER_CONFIG, repeat=1)
            prod_s = bare_produce(bootstrap, main_t.dlq, n_fan, PRODUCER_CONFIG)
            own = PRODUCER_CONFIG
            report.add(
                f"baseline: bare produce {n_fan:,} results, sidecar settings (linger "
                f"{own.get('linger_ms', 0)} ms, {own.get('batch_size', 16384) // 1024} KB, "
                f"{own.get('compression_type') or 'no compression'})",
                rate(n_fan, prod_s),
                "1.00",
                baseline_produce_per_s=n_fan / prod_s,
            )
            variants: dict[str, float] = {}
            for label, over in PRODUCER_VARIANTS.items():
                cfg = {**PRODUCER_CONFIG, **over}
                s_v = bare_produce(bootstrap, main_t.dlq, n_fan, cfg)
                variants[label] = n_fan / s_v
                report.add(
                    f"baseline: bare produce, {label}",
                    rate(n_fan, s_v),
                    f"{prod_s / s_v:.2f} of sidecar settings",
                )
            report.data["baseline_produce_variants_per_s"] = variants

            contract: dict[str, tuple[float, float]] = {}
            for client in clients:
                print(f"== contract baselines on {client}", flush=True)
                cp_s = contract_pipe(bootstrap, main_t.requests, main_t.dlq, n, client)
                report.add(
                    f"contract pipe, {client}: consume, decode+validate, encode, keyed send "
                    "with headers, flush + commit per poll",
                    rate(n, cp_s),
                    f"{consume_s / cp_s:.2f} of bare consume",
                    **{f"contract_pipe_per_s_{client}": n / cp_s},
                )
                contract_produce(bootstrap, main_t.dlq, min(n_fan, 5_000), client, repeat=1)
                cprod_s = contract_produce(bootstrap, main_t.dlq, n_fan, client)
                report.add(
                    f"contract produce {n_fan:,} results, {client}: encode + keyed send "
                    "with headers",
                    rate(n_fan, cprod_s),
                    f"{prod_s / cprod_s:.2f} of bare produce",
                    **{f"contract_produce_per_s_{client}": n_fan / cprod_s},
                )
                contract[client] = (cp_s, cprod_s)
            quix_rate = 0.0
            if "quix" not in skip:
                quix_rate = run_quix(bootstrap, args.partitions, n, consume_s, report)

            e2e_rates: dict[str, float] = {}
            for client in clients:
                e2e_rates[client] = sidecar_phases(
                    bootstrap, args, client, main_t, n, n_fan, dv_s, contract[client], emulator,
                    skip, report, multi=len(clients) > 1,
                )  # fmt: skip
            if len(e2e_rates) > 1 and "e2e" not in skip:
                base = e2e_rates.get("kafka-python", 0.0)
                for client, r in e2e_rates.items():
                    if client == "kafka-python" or not base:
                        continue
                    x = r / base
                    report.add(
                        f"sidecar end to end, {client} vs kafka-python",
                        f"{x:.2f}x",
                        target=f">= 3x: {verdict(x >= 3)}",
                        **{f"e2e_vs_kafka_python_{client}": x},
                    )
                    if quix_rate:
                        q = r / quix_rate
                        report.add(
                            f"sidecar end to end, {client} vs the Quix Streams application",
                            f"{q:.2f}",
                            target=f">= 0.5: {verdict(q >= 0.5)}",
                            **{f"e2e_vs_quix_{client}": q},
                        )
            e2e_rate = e2e_rates.get(clients[0], 0.0) if clients else 0.0
            if args.fanout_ab:
                print("== fan-out A/B: per-result vs per-chunk delivery (kafka-python)", flush=True)
                fanout_ab(bootstrap, n_fan, args.timeout, report, args.fanout_ab)

            if "inflight" not in skip:
                print(
                    f"== in flight: {n_held:,} requests in SUBMITTED jobs (subprocess)", flush=True
                )
                held = run_inflight(bootstrap, args.batch, n_held, args.timeout)
                per = (held["held_mb"] - held["idle_mb"]) * 2**20 / n_held
                report.add(
                    f"RSS per request in flight ({n_held:,} in {held['jobs']} SUBMITTED jobs)",
                    f"{per:.0f} B (idle {held['idle_mb']:.0f} MB, held {held['held_mb']:.0f} MB)",
                    target=f"<= 100 B: {verdict(per <= 100)}",
                    inflight=held,
                    inflight_bytes_per_request=per,
                )

            if "bigfile" not in skip:
                print(f"== big results file: {bigfile_mb:,} MB (subprocess)", flush=True)
                big = run_big_results(bigfile_mb, max(args.timeout, 3_600))
                report.add(
                    f"peak RSS growth delivering a {bigfile_mb:,} MB results file "
                    f"({big['responses']:,} x 100 KB)",
                    f"{big['peak_growth_mb']:.0f} MB (delivered in {big['delivery_s']:.1f} s, "
                    f"{big['passes']} passes)",
                    target=f"<= 256 MB: {verdict(big['peak_growth_mb'] <= 256)}",
                    bigfile=big,
                )

            if "sustained" not in skip and sustained_s > 0:
                feed = args.sustained_rate or max(200.0, round(e2e_rate / 2, -2) or 1000.0)
                print(f"== sustained: {sustained_s:.0f} s at {feed:,.0f} requests/s", flush=True)
                sus_t = create_topics(bootstrap, "sustained", args.partitions)
                sus = run_sustained(bootstrap, sus_t, args.batch, emulator, sustained_s, feed)
                rss = [m for _, m in sus.samples]
                report.add(
                    f"RSS over {sus.seconds:.0f} s sustained at {feed:,.0f}/s (sidecar process)",
                    f"{rss[0]:.0f} -> {rss[-1]:.0f} MB, slope {sus.slope_mb_per_min:+.1f} MB/min "
                    "(2nd half)",
                    target="slope ~ 0",
                    sustained_rss_samples=sus.samples,
                    sustained_slope_mb_per_min=sus.slope_mb_per_min,
                    sustained_fed=sus.fed,
                )
                pk, jpk = packing(sus.sizes, args.batch)
                per_part = feed / args.partitions * 5.0
                report.add(
                    "packing, steady feed: requests per job / cap",
                    f"{pk:.0%} ({len(sus.sizes)} jobs, {jpk:.0f} per 100k; "
                    f"rate x wait per partition = {min(1, per_part / args.batch):.0%})",
                    target=f">= 95%: {verdict(pk >= 0.95)}",
                    packing_sustained=pk,
                    jobs_per_100k_sustained=jpk,
                )
                p = sus.passes
                report.add(
                    "loop pass during the sustained run: p50 / p99 / max",
                    f"{p.p50 * 1e3:.0f} / {p.p99 * 1e3:.0f} / {p.max * 1e3:.0f} ms ({p.count})",
                    sustained_passes=asdict(p),
                )
    finally:
        emulator.stop()

    return finish(args, report, load0)


def only_interleave(
    args: argparse.Namespace, clients: list[str], report: Report, load0: tuple[float, ...]
) -> int:
    """The interleaved-keys rows alone, on each client (`--only-interleave`)."""
    with broker() as bootstrap:
        for client in clients:
            tag = f", {client}" if len(clients) > 1 else ""
            interleave(
                bootstrap, client, args.interleave_n, args.timeout, report, tag,
                args.profile_interleave, args.interleave_rounds,
            )  # fmt: skip
    return finish(args, report, load0)


def finish(args: argparse.Namespace, report: Report, load0: tuple[float, ...]) -> int:
    """The load average at the end, the table, and the JSON file."""
    load1 = os.getloadavg()
    report.data["load_end"] = load1
    print(f"\nload average {load0[0]:.2f} at start, {load1[0]:.2f} at end\n", flush=True)
    print(report.table(), flush=True)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report.data, indent=2, default=str) + "\n")
    print(f"\nJSON: {out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
