"""Doubles of the loop's ports, for fast deterministic tests of the sidecar (and of yours).

Shipped in the package, as structlog and Dramatiq ship theirs, so users can test code around
the sidecar the same way:

- `MemoryKafka`: an in-memory log of topics and partitions (offsets, keys, values, headers),
  with a consumer group's committed offsets. The doubles below all read and write it.
- `ScriptedConsumer`: a `ConsumerPort` over `MemoryKafka`; tests script rebalances
  (`assign`, `revoke`, `lose`) that the loop sees as the real listener would report them.
  Like Kafka it refuses commits (and transactions) from a member dropped from the group.
  `connector.testing_group` has a group that decides rebalances itself (generations,
  member ids, session timeouts), for the simulator (tests/sim).
- `RecordingProducer`: a `ProducerPort` that appends to `MemoryKafka` on flush; `fail_next`
  makes acks fail, the way a broker outage or an oversized record does.
- `MemoryLedger`, `MemoryReader`: the ledger and the request re-read over `MemoryKafka`,
  with the real codec, so entries round-trip through the real Avro encoding.
- `ManualClock`: monotonic seconds and wall milliseconds that move only when told to.
- `emulated_gemini(...)`: the real `Gemini` adapter and the real google-genai SDK talking to
  the project's own emulator *service* in-process, through an httpx transport (no socket,
  no thread): the double cannot drift from the emulator because it is the emulator.
- `wait_until`: poll a condition with a deadline instead of sleeping a guessed time.
- `harness(...)`: a `Sidecar` wired to all of the above, ready for `step()`.
"""

from __future__ import annotations

import dataclasses
import io
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

import httpx2
import orjson
from google import genai

from connector.adapters.gemini import Gemini, check_claim, http_options
from connector.adapters.ledger import CLAIM_HEADER, marker_key, replay, stamp_headers
from connector.config import Settings
from connector.core import policy
from connector.core.codec import Codec
from connector.core.control import Command, Target, encode
from connector.core.formats import RequestDecoder
from connector.core.jsonl import jsonl_lines
from connector.core.ports import RebalanceEvent
from connector.core.records import (
    BatchKey,
    EntryState,
    Headers,
    JobInput,
    Kind,
    LedgerEntry,
    Record,
    RequestEvent,
    ResultEvent,
)
from connector.core.results import Original, correlation_key
from connector.core.spans import read_spans
from connector.emulator.config import EmulatorConfig
from connector.emulator.control import Control
from connector.emulator.messages import Body, Request, Response
from connector.emulator.service import Service
from connector.emulator.wire import ApiError
from connector.errors import (
    CommitFailed,
    Fenced,
    ProduceFailed,
    RegistryUnavailable,
)
from connector.runner import Ports, Sidecar

T = TypeVar("T")

__all__ = [
    "InProcessEmulator",
    "ManualClock",
    "MemoryControl",
    "MemoryKafka",
    "MemoryLedger",
    "MemoryReader",
    "RecordingProducer",
    "ScriptedConsumer",
    "TestHarness",
    "emulated_gemini",
    "harness",
    "wait_until",
]


# -- waiting ------------------------------------------------------------------------------


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call `predicate` until it returns something truthy and return that value.

    Raises `TimeoutError` after `timeout` seconds, naming `message` (a string or a callable,
    so the failure can show the latest state) and the last value seen. The predicate is always
    called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(
                f"timed out after {timeout:.1f} s waiting for {text}; last {value!r}"
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# -- time ---------------------------------------------------------------------------------


class ManualClock:
    """Monotonic seconds (`clock()`) and wall milliseconds (`wall_ms()`) moved by `advance`."""

    def __init__(self, start: float = 1_000.0, wall_ms: int = 1_700_000_000_000) -> None:
        self.now = start
        self._wall_ms = wall_ms

    def __call__(self) -> float:
        return self.now

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._wall_ms += int(seconds * 1000)


# -- Kafka --------------------------------------------------------------------------------


class MemoryKafka:
    """Topics of partitions of records, and one group's committed offsets."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[Record]] = defaultdict(list)
        self.partitions: dict[str, int] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.generation = 0
        """The consumer group's current generation (a member with an older one is a zombie)."""
        self.log_start: dict[tuple[str, int], int] = {}
        """Offsets below this per (topic, partition) were deleted (see `delete_before`)."""
        self._ts = 0

    def delete_before(self, topic: str, partition: int, offset: int) -> None:
        """Retention: records below `offset` are gone; a consumer behind jumps to it."""
        self.log_start[(topic, partition)] = offset

    def create_topic(self, topic: str, partitions: int) -> None:
        self.partitions[topic] = partitions

    def append(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> Record:
        n = self.partitions.setdefault(topic, 1)
        p = partition if partition is not None else (zlib.crc32(key) % n if key else 0)
        log = self.logs[(topic, p)]
        self._ts += 1
        rec = Record(topic, p, len(log), key, value, list(headers or []), self._ts)
        log.append(rec)
        return rec

    def records(self, topic: str, partition: int | None = None) -> list[Record]:
        """Every record of a topic (one partition, or all in partition order)."""
        if partition is not None:
            return list(self.logs.get((topic, partition), []))
        return [r for (t, _), log in sorted(self.logs.items()) if t == topic for r in log]


class ScriptedConsumer:
    """A `ConsumerPort` that reads `MemoryKafka` and reports the rebalances a test scripts."""

    def __init__(self, kafka: MemoryKafka, topic: str, max_records: int = 500) -> None:
        self.kafka = kafka
        self.topic = topic
        self.max_records = max_records
        self.assigned: set[int] = set()
        self.paused: set[int] = set()
        self.positions: dict[int, int] = {}
        self.events: list[RebalanceEvent] = []
        self.commits: list[dict[int, int]] = []
        self.fail_commits = 0
        """Refuse this many commits, as a group does during a rebalance."""
        self.generation = kafka.generation

    # scripting
    def _rebalanced(self) -> None:
        self.kafka.generation += 1
        self.generation = self.kafka.generation

    def drop_from_group(self) -> None:
        """The group moves on without this member and tells it nothing (a stalled replica).

        Its transactions are refused from now on (KIP-447); it still believes it owns its
        partitions until a test scripts the revocation it would see on its next poll.
        """
        self.kafka.generation += 1

    def assign(self, *partitions: int) -> None:
        self._rebalanced()
        self.assigned |= set(partitions)
        for p in partitions:
            self.positions[p] = self.kafka.committed.get((self.topic, p), 0)
        self.events.append(("assigned", set(partitions)))

    def revoke(self, *partitions: int) -> None:
        self._rebalanced()
        self.assigned -= set(partitions)
        self.events.append(("revoked", set(partitions)))

    lose = revoke
    """A lost partition (session timeout) reaches the loop as a revocation."""

    # ConsumerPort
    def poll(self, timeout_s: float) -> list[Record]:
        out: list[Record] = []
        for p in sorted(self.assigned - self.paused):
            log = self.kafka.logs.get((self.topic, p), [])
            # Out of range (deleted): reset to the earliest offset, as auto_offset_reset does.
            pos = max(self.positions.get(p, 0), self.kafka.log_start.get((self.topic, p), 0))
            take = log[pos : pos + self.max_records - len(out)]
            out.extend(take)
            self.positions[p] = pos + len(take)
            if len(out) >= self.max_records:
                break
        return out

    def rebalance_events(self) -> list[RebalanceEvent]:
        events, self.events = self.events, []
        return events

    def highwaters(self) -> dict[int, int]:
        """End offsets of the assigned partitions, as a fetch would report them (for lag)."""
        return {p: len(self.kafka.logs.get((self.topic, p), [])) for p in self.assigned}

    def commit(self, offsets: Mapping[int, int]) -> None:
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise CommitFailed("commit refused: rebalance in progress (scripted)")
        if self.generation != self.kafka.generation:
            # Kafka refuses a commit from a member the group moved on without (a zombie):
            # CommitFailedError / IllegalGeneration, which the adapter maps to this.
            raise CommitFailed(
                f"commit refused: generation {self.generation} is stale "
                f"(group at {self.kafka.generation})"
            )
        self.commits.append(dict(offsets))
        for p, o in offsets.items():
            self.kafka.committed[(self.topic, p)] = o

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        starts = {p: self.kafka.committed.get((self.topic, p), 0) for p in partitions}
        self.positions.update(starts)
        return starts

    def assignment(self) -> set[int]:
        return set(self.assigned)

    def transaction_offsets(self, offsets: Mapping[int, int]) -> tuple[object, object]:
        return dict(offsets), self.generation

    def pause(self, partitions: Iterable[int]) -> None:
        self.paused |= set(partitions)

    def resume_all(self) -> None:
        self.paused.clear()

    def resume(self, partitions: Iterable[int]) -> None:
        self.paused -= set(partitions)

    def seek(self, partition: int, offset: int) -> None:
        self.positions[partition] = offset

    def close(self) -> None:
        self.assigned.clear()


@dataclass(slots=True)
class _Handle:
    topic: str
    value: bytes | None
    key: bytes | None
    headers: Headers
    partition: int | None
    done: bool = False
    exc: BaseException | None = None
    record: Record | None = None

    def ok(self) -> bool:
        return self.done and self.exc is None

    def error(self) -> BaseException | None:
        return self.exc


class RecordingProducer:
    """A `ProducerPort`: sends become records of `MemoryKafka` when flushed (and acked).

    With a `transactional_id` it is a `TransactionalProducerPort`: acked records stay in the
    open transaction and reach `MemoryKafka` (what a read_committed reader sees) only when
    `commit_transaction` succeeds; a consumer whose generation is stale gets `Fenced`.
    """

    def __init__(self, kafka: MemoryKafka, transactional_id: str | None = None) -> None:
        self.kafka = kafka
        self.transactional_id = transactional_id or ""
        self.in_transaction: list[_Handle] = []
        self.commits = 0
        self.aborts = 0
        self.pending: list[_Handle] = []
        self.fail_next = 0
        """Fail the acks of this many of the next sends (records are not written)."""
        self.fail_when: Callable[[str, bytes | None], BaseException | None] | None = None
        """Per-record failure: return an exception to refuse that record (e.g. too large)."""
        self.flushes = 0
        self.stray_aborts = 0
        """Transactions `begin_transaction` found holding sends of a failed unit, aborted."""

    def begin_transaction(self) -> None:
        """Start a unit of work: sends a failed unit left in the transaction are aborted."""
        if self.pending or self.in_transaction:
            self.stray_aborts += 1
            self._abort()

    def resend(self, handle: Any) -> _Handle:
        """Send `handle`'s record again (its transaction was aborted)."""
        return self.send(handle.topic, handle.value, handle.key, handle.headers, handle.partition)

    def send(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None = None,
        headers: Headers | None = None,
        partition: int | None = None,
    ) -> _Handle:
        h = _Handle(topic, value, key, list(headers or []), partition)
        self.pending.append(h)
        return h

    def flush_and_check(self, sent: Sequence[Any], timeout_s: float = 60.0) -> None:
        self.flushes += 1
        for h in self.pending:
            exc: BaseException | None = None
            if self.fail_next > 0:
                self.fail_next -= 1
                exc = ProduceFailed("scripted produce failure")
            elif self.fail_when is not None:
                exc = self.fail_when(h.topic, h.value)
            h.done, h.exc = True, exc
            if exc is None and self.transactional_id:
                self.in_transaction.append(h)
            elif exc is None:
                h.record = self.kafka.append(h.topic, h.value, h.key, h.headers, h.partition)
        self.pending = []
        for h in sent:
            if not h.ok():
                raise ProduceFailed(f"produce failed: {h.error()!r}")

    def commit_transaction(
        self, sent: Sequence[Any], offsets: Mapping[int, int], consumer: Any
    ) -> None:
        assert self.transactional_id, "not a transactional producer"
        try:
            self.flush_and_check(sent)
        except ProduceFailed:
            self._abort()
            raise
        if offsets:
            tps, generation = consumer.transaction_offsets(offsets)
            if generation != self.kafka.generation:
                self._abort()
                raise Fenced(f"transaction refused: generation {generation} is stale (scripted)")
            for p, o in tps.items():
                self.kafka.committed[(consumer.topic, p)] = o
        for h in self.in_transaction:
            h.record = self.kafka.append(h.topic, h.value, h.key, h.headers, h.partition)
        self.in_transaction = []
        self.commits += 1

    def abort_transaction(self) -> None:
        self._abort()

    def _abort(self) -> None:
        self.in_transaction = []
        self.pending = []
        self.aborts += 1

    def close(self, timeout_s: float = 10.0) -> None:
        self.pending = []


class MemoryLedger:
    """A `LedgerPort` over a compacted topic of `MemoryKafka`, with the real codec (and the
    real adapter's replay, epoch headers and take-over markers)."""

    def __init__(self, kafka: MemoryKafka, topic: str, producer: RecordingProducer, codec: Codec):
        self.kafka, self.topic, self.producer, self.codec = kafka, topic, producer, codec
        self._marked: dict[int, dict[str, int]] = {}

    def load(self, partition: int) -> dict[str, LedgerEntry]:
        records = self.kafka.records(self.topic, partition)
        live, self._marked[partition] = replay(records, self.codec, f"{self.topic}[{partition}]")
        return live

    def marked(self, partition: int, request_topic: str) -> int:
        return self._marked.get(partition, {}).get(request_topic, 0)

    def mark(self, partition: int, request_topic: str, epoch: int, producer: Any) -> _Handle:
        headers = stamp_headers(epoch)
        handle: _Handle = producer.send(
            self.topic, None, key=marker_key(request_topic), headers=headers, partition=partition
        )
        return handle

    def write(self, entry: LedgerEntry, producer: Any = None) -> _Handle:
        return self.write_stamped(entry, 0, producer)

    def write_stamped(self, entry: LedgerEntry, epoch: int, producer: Any = None) -> _Handle:
        value = self.codec.encode_ledger(entry)
        key = entry.job_id.encode()
        p = entry.key.partition
        handle: _Handle = (producer or self.producer).send(
            self.topic, value, key=key, headers=stamp_headers(epoch), partition=p
        )
        return handle

    def tombstone(self, entry: LedgerEntry, producer: Any = None) -> _Handle:
        key = entry.job_id.encode()
        handle: _Handle = (producer or self.producer).send(
            self.topic, None, key=key, partition=entry.key.partition
        )
        return handle

    def claim(self, entry: LedgerEntry, producer: Any, by: str) -> _Handle:
        value = self.codec.encode_ledger(entry)
        key = entry.job_id.encode()
        p = entry.key.partition
        headers = [(CLAIM_HEADER, by.encode())]
        handle: _Handle = producer.send(self.topic, value, key=key, headers=headers, partition=p)
        return handle

    def live(self, partition: int) -> dict[str, LedgerEntry]:
        """The live entries now (what a new owner would load)."""
        return self.load(partition)


class MemoryControl:
    """A `ControlPort` over the control topic of `MemoryKafka`: every poll returns what was
    appended since the last one (from the beginning at the first)."""

    def __init__(self, kafka: MemoryKafka, topic: str, producer: RecordingProducer) -> None:
        self.kafka, self.topic, self.producer = kafka, topic, producer
        self.positions: dict[int, int] = {}

    def poll(self) -> list[Record]:
        out: list[Record] = []
        for p in range(self.kafka.partitions.get(self.topic, 1)):
            log = self.kafka.logs.get((self.topic, p), [])
            out.extend(log[self.positions.get(p, 0) :])
            self.positions[p] = len(log)
        return out

    def retire(self, key: str) -> _Handle:
        return self.producer.send(self.topic, None, key=key.encode(), partition=0)

    def close(self) -> None:
        pass

    def pending(self) -> dict[str, bytes]:
        """The commands not retired yet (what compaction would keep), by key."""
        live: dict[str, bytes] = {}
        for rec in self.kafka.records(self.topic):
            key = (rec.key or b"").decode()
            if rec.value is None:
                live.pop(key, None)
            else:
                live[key] = rec.value
        return live


class MemoryReader:
    """A `RequestReaderPort` over the request topic of `MemoryKafka`.

    Like the real reader it reads only the contiguous ranges of the wanted offsets;
    `reads` records each call's offsets and `fetched` counts the records it touched, so
    tests can check that re-reads stay chunked and sparse.
    """

    def __init__(
        self,
        kafka: MemoryKafka,
        topic: str,
        codec: Codec,
        decode: Callable[[bytes], RequestEvent] | None = None,
    ) -> None:
        self.kafka, self.topic, self.codec = kafka, topic, codec
        self.decode = decode or codec.decode_request
        self.deleted_below: dict[int, int] = {}
        """Offsets below this per partition are gone (retention), as a test decides."""
        self.reads: list[tuple[int, list[int]]] = []
        """(partition, offsets asked for) of every read, in order."""
        self.fetched = 0
        """Records read from the log, over all reads (those inside the spans read through,
        as `adapters.reread` reads them: other jobs' records in a span count too)."""
        self.retained: set[int] | None = None
        """The partitions of the last `retain` call (None before any)."""

    def read(self, partition: int, offsets: Iterable[int]) -> dict[int, Original]:
        wanted = sorted(set(offsets))
        self.reads.append((partition, wanted))
        log = self.kafka.logs.get((self.topic, partition), [])
        floor = self.deleted_below.get(partition, 0)
        out: dict[int, Original] = {}
        keep = set(wanted)
        for start, stop in read_spans(wanted):
            for o in range(max(start, floor), min(stop, len(log))):
                self.fetched += 1
                if o not in keep:
                    continue
                rec = log[o]
                try:
                    event = self.decode(rec.value or b"")
                except RegistryUnavailable:
                    raise
                except Exception:  # undecodable (or hostile bytes): answered DATA_LOSS
                    event = None
                out[o] = Original(partition, o, rec.key, event)
        return out

    def retain(self, partitions: Collection[int]) -> None:
        self.retained = set(partitions)


# -- Gemini -------------------------------------------------------------------------------


class InProcessEmulator:
    """The emulator's service and control API behind an httpx transport: no socket, no thread."""

    base_url = "http://emulator.invalid"

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.service = Service(config or EmulatorConfig())
        self.control = Control(self.service)
        self.transport = httpx2.MockTransport(self._handle)

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        data = request.read()
        headers = {k: v for k, v in request.headers.items()}
        req = Request(
            method=request.method,
            path=unquote(request.url.path),
            query=dict(parse_qsl(request.url.query.decode(), keep_blank_values=True)),
            headers=_CaseInsensitive(headers),
            body=Body(io.BytesIO(data), len(data)),
            origin=self.base_url,
        )
        try:
            if req.path.startswith("/_emulator/"):
                resp = self.control.handle(req)
            else:
                resp = self.service.handle(req)
        except ApiError as exc:
            resp = Response.json(exc.body(), exc.code)
        body = resp.file.read_bytes() if resp.file is not None else resp.body
        out_headers = {"content-type": resp.content_type, **resp.headers}
        return httpx2.Response(resp.status, headers=out_headers, content=body)

    # the knobs, as on EmulatorServer
    def update_config(self, **changes: Any) -> EmulatorConfig:
        return self.service.update_config(changes)

    def advance_clock(self, seconds: float) -> float:
        return self.service.clock.advance(seconds)

    def created_by_display_name(self) -> dict[str, int]:
        """How many jobs were created under each display name (2+ means paid twice)."""
        return dict(self.stats()["batches"]["by_display_name"])

    def stats(self) -> dict[str, Any]:
        """Same as `GET /_emulator/stats`: batches, files, calls per API method, clock."""
        stats = self.control.handle(
            Request("GET", "/_emulator/stats", {}, {}, Body(io.BytesIO(b""), 0), self.base_url)
        )
        out: dict[str, Any] = orjson.loads(stats.body)
        return out

    def calls(self) -> dict[str, int]:
        """API calls answered so far, per method (`batches.create`, `batches.list`, ...)."""
        return self.service.call_counts()

    def force_state(self, name: str, state: str) -> dict[str, Any]:
        """Force a PENDING/RUNNING job (`batches/ID` or `ID`) into `state`, as on the server."""
        return self.control.force(name, state)

    def close(self) -> None:
        self.service.files.close()


class _CaseInsensitive(dict[str, str]):
    def get(self, key: str, default: Any = None) -> Any:
        lower = key.lower()
        for k, v in self.items():
            if k.lower() == lower:
                return v
        return default


def emulated_gemini(
    emulator: InProcessEmulator | None = None, timeout_s: float = 60.0
) -> tuple[Gemini, InProcessEmulator]:
    """The real adapter and SDK, wired to the emulator service in-process."""
    emu = emulator or InProcessEmulator()
    client = genai.Client(
        api_key="test-key",
        http_options=http_options(
            emu.base_url,
            "v1beta",
            timeout_s,
            httpx_client=httpx2.Client(
                transport=emu.transport,
                base_url=emu.base_url,
                event_hooks={"request": [check_claim]},
            ),
        ),
    )
    return Gemini(api_key="test-key", client=client), emu


# -- the whole sidecar --------------------------------------------------------------------


@dataclass
class TestHarness:
    """A `Sidecar` on doubles. `step()` runs one pass; everything is inspectable.

    `restart()` plays a crash: it returns the next owner, a fresh `Sidecar` on the same
    `MemoryKafka`, emulator and clocks, while whatever the old one had not flushed is lost.
    `entry`, `seed_ledger`, `seed_committed` and `create_job` set up exactly what a dead
    owner left behind (ledger entries, committed offsets, jobs at the provider).
    """

    __test__ = False  # not a pytest test class

    sidecar: Sidecar
    kafka: MemoryKafka
    consumer: ScriptedConsumer
    producer: RecordingProducer
    ledger: MemoryLedger
    reader: MemoryReader
    clock: ManualClock
    gemini: Any
    emulator: InProcessEmulator | None
    settings: Settings
    codec: Codec = field(default_factory=Codec)
    schema_by_id: Callable[[int], Any] | None = None
    result_schema_id: int | None = None
    txn: RecordingProducer | None = None
    """The transactional producer: claims, and every send in exactly-once mode."""
    control: MemoryControl | None = None
    """The control topic the sidecar reads operator commands from."""

    def cancel(
        self, job: str | None = None, request: str | None = None, reason: str = "", by: str = ""
    ) -> Record:
        """Write a cancel command to the control topic, as `connector cancel` does."""
        target, ident = (Target.JOB, job) if job is not None else (Target.REQUEST, request)
        assert ident is not None, "cancel needs a job or a request id"
        cmd = Command(target, ident, reason, self.clock.wall_ms(), by)
        return self.kafka.append(self.settings.control, encode(cmd), cmd.key.encode(), partition=0)

    def step(self, n: int = 1, advance_s: float = 0.0) -> None:
        """Run `n` passes, moving both clocks by `advance_s` before each."""
        for _ in range(n):
            if advance_s:
                self.advance(advance_s)
            self.sidecar.step()

    def advance(self, seconds: float) -> None:
        """Move the sidecar's clock and the emulator's clock together."""
        self.clock.advance(seconds)
        if self.emulator is not None:
            self.emulator.advance_clock(seconds)

    def publish(
        self,
        request_id: str,
        prompt: str = "hello",
        model: str = "gemini-2.5-flash",
        partition: int = 0,
        **fields: Any,
    ) -> Record:
        """Append a valid request event to the request topic (its Kafka key is the id)."""
        body = fields.pop("body", None) or {
            "contents": [{"role": "user", "parts": [{"text": prompt}]}]
        }
        ev = RequestEvent(
            request_id=request_id,
            model=model,
            kind=fields.pop("kind", Kind.GENERATE),
            body=orjson.dumps(body).decode(),
            **fields,
        )
        value = self.codec.encode_request(ev)
        return self.kafka.append(
            self.settings.request_topic, value, request_id.encode(), partition=partition
        )

    def run_until(
        self, predicate: Callable[[], Any], max_passes: int = 200, advance_s: float = 1.0
    ) -> None:
        """Step (moving time by `advance_s` per pass) until `predicate()` holds."""
        for _ in range(max_passes):
            if predicate():
                return
            self.step(advance_s=advance_s)
        if not predicate():
            raise AssertionError(f"condition not reached in {max_passes} passes")

    def result_events(self) -> list[Any]:
        return [self.codec.decode_result(r.value or b"") for r in self.results()]

    def results(self) -> list[Record]:
        return self.kafka.records(self.settings.result_topic)

    def dead_letters(self) -> list[Record]:
        return self.kafka.records(self.settings.dlq_topic)

    def committed(self, partition: int = 0) -> int:
        return self.kafka.committed.get((self.settings.request_topic, partition), 0)

    def results_by_id(self) -> dict[str, list[ResultEvent]]:
        """Every result produced so far, grouped by request id (duplicates show as 2+)."""
        out: dict[str, list[ResultEvent]] = defaultdict(list)
        for r in self.result_events():
            out[r.request_id].append(r)
        return dict(out)

    def publish_raw(
        self,
        value: bytes | None,
        key: bytes | None = None,
        partition: int = 0,
        headers: Headers | None = None,
    ) -> Record:
        """Append any bytes to the request topic (e.g. an undecodable record)."""
        return self.kafka.append(self.settings.request_topic, value, key, headers, partition)

    # -- what a dead owner left behind ---------------------------------------------------

    def entry(
        self,
        job_id: str,
        offsets: Sequence[int],
        state: EntryState = EntryState.INTENT,
        partition: int = 0,
        model: str = "gemini-2.5-flash",
        kind: Kind = Kind.GENERATE,
        **fields: Any,
    ) -> LedgerEntry:
        """A ledger entry as a previous owner of `partition` would have written it."""
        now_ms = self.clock.wall_ms()
        values: dict[str, Any] = {
            "job_id": job_id,
            "key": BatchKey(partition, model, kind),
            "offsets": tuple(offsets),
            "attempt": 1,
            "display_name": policy.display_name(self.settings.group_id, job_id),
            "state": state,
            "use_file": False,
            "est_tokens": 10 * len(offsets),
            "created_ms": now_ms,
            "updated_ms": now_ms,
        }
        values.update(fields)
        return LedgerEntry(**values)

    def seed_ledger(self, *entries: LedgerEntry) -> None:
        """Write ledger entries and wait for their acks, as a previous owner did."""
        self.producer.flush_and_check([self.ledger.write(e) for e in entries])

    def seed_tombstone(self, *entries: LedgerEntry) -> None:
        """Tombstone ledger entries (acked), as a previous owner did once a job ended."""
        self.producer.flush_and_check([self.ledger.tombstone(e) for e in entries])

    def seed_committed(self, offset: int, partition: int = 0) -> None:
        """The consumer group's committed offset for a request partition."""
        self.kafka.committed[(self.settings.request_topic, partition)] = offset

    def job_inputs(self, entry: LedgerEntry) -> list[JobInput]:
        """The requests of `entry` with their correlation keys, as the submitter sends them."""
        out: list[JobInput] = []
        for o in self.reader.read(entry.key.partition, entry.offsets).values():
            if o.event is None:
                continue
            key = correlation_key(o.offset)
            meta = {"key": key, "request_id": o.event.request_id}
            out.append(JobInput(key, orjson.loads(o.event.body), meta))
        return out

    def create_job(self, entry: LedgerEntry) -> str:
        """Create `entry`'s job at the provider (real adapter and SDK), as a previous owner did.

        Returns the job's `batches/ID`. File jobs are uploaded first, like the submitter does.
        """
        inputs = self.job_inputs(entry)
        k, name = entry.key, entry.display_name
        if policy.uses_file(entry):
            file_name = self.gemini.upload_jsonl(jsonl_lines(inputs), name)
            job: str = self.gemini.create(k.model, k.kind, name, k.priority, file_name=file_name)
        else:
            job = self.gemini.create(k.model, k.kind, name, k.priority, inline=inputs)
        return job

    def restart(self, *assign: int, **overrides: Any) -> TestHarness:
        """A crash, then the next owner: a fresh `Sidecar` on the same Kafka, emulator, clock.

        Sends the old owner had not flushed are lost (as in a crash); its consumer and
        sidecar are left alone (call nothing on them after this). The new owner gets the
        same settings (with `overrides`) and is assigned `assign` partitions, if any.
        """
        self.producer.pending = []
        settings = dataclasses.replace(self.settings, **overrides) if overrides else self.settings
        nxt = _wire(
            settings,
            self.kafka,
            self.gemini,
            self.emulator,
            self.clock,
            self.codec,
            self.sidecar.total_partitions,
            self.schema_by_id,
            self.result_schema_id,
        )
        if assign:
            nxt.consumer.assign(*assign)
        return nxt


def harness(
    settings: Settings | None = None,
    partitions: int = 1,
    gemini: Any = None,
    emulator_config: EmulatorConfig | None = None,
    clock: ManualClock | None = None,
    schema_by_id: Callable[[int], Any] | None = None,
    result_schema_id: int | None = None,
    kafka: MemoryKafka | None = None,
    emulator: InProcessEmulator | None = None,
    ledger_max_message_bytes: int = 1_048_576,
    **overrides: Any,
) -> TestHarness:
    """A sidecar on in-memory Kafka and the in-process emulator (or the `gemini` given).

    Pass the `kafka`, `clock`, `gemini` and `emulator` of an earlier harness to start a
    successor process on the same topics, commits and provider (a restart after a crash).
    """
    s = settings or Settings(gemini_base_url="http://emulator.invalid", **overrides)
    codec = Codec()
    return _wire(
        s,
        kafka,
        gemini,
        emulator,
        clock or ManualClock(),
        codec,
        partitions,
        schema_by_id,
        result_schema_id,
        emulator_config,
        ledger_max_message_bytes,
    )


def _wire(
    s: Settings,
    kafka: MemoryKafka | None,
    gemini: Any,
    emulator: InProcessEmulator | None,
    clock: ManualClock,
    codec: Codec,
    partitions: int,
    schema_by_id: Callable[[int], Any] | None = None,
    result_schema_id: int | None = None,
    emulator_config: EmulatorConfig | None = None,
    ledger_max_message_bytes: int = 1_048_576,
) -> TestHarness:
    if kafka is None:
        kafka = MemoryKafka()
        for topic in (s.request_topic, s.ledger, s.result_topic, s.dlq_topic):
            kafka.create_topic(topic, partitions)
        kafka.create_topic(s.control, 1)
    txn = RecordingProducer(kafka, transactional_id=f"{s.group_id}.test")
    producer = txn if s.exactly_once else RecordingProducer(kafka)
    consumer = ScriptedConsumer(kafka, s.request_topic)
    ledger = MemoryLedger(kafka, s.ledger, producer, codec)
    reader = MemoryReader(kafka, s.request_topic, codec, RequestDecoder(codec, schema_by_id).decode)
    control = MemoryControl(kafka, s.control, producer)
    if gemini is None:
        gemini, emulator = emulated_gemini(emulator or InProcessEmulator(emulator_config))
    sidecar = Sidecar(s, gemini, codec=codec, clock=clock, wall_ms=clock.wall_ms)
    sidecar.attach(
        Ports(
            consumer,
            producer,
            ledger,
            reader,
            total_partitions=partitions,
            txn=txn,
            schema_by_id=schema_by_id,
            result_schema_id=result_schema_id,
            ledger_max_message_bytes=ledger_max_message_bytes,
            control=control,
        )
    )
    # Jitter from a seeded generator: the same test makes the same polls on every run.
    sidecar.ctx.rand = random.Random(0)
    h = TestHarness(
        sidecar, kafka, consumer, producer, ledger, reader, clock, gemini, emulator, s, codec
    )
    h.schema_by_id, h.result_schema_id, h.txn = schema_by_id, result_schema_id, txn
    h.control = control
    return h


def headers_of(rec: Record) -> dict[str, bytes]:
    """A record's headers as a dict (the last value of a repeated header wins)."""
    return dict(rec.headers)
