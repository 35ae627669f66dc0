"""The moving parts of a chaos run: a broker we can restart, emulators, replicas, topic taps.

Everything here is a real process or a real client: the broker is `LocalKafka` (restarted on
the same port and data dir), each emulator is `python -m connector.emulator` (its own
process, so its CPU and its listening socket are its own), each replica is
`python -m connector run` spawned by `tests/integration/sidecar_harness.spawn`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT / "deploy" / "local", ROOT / "tests", ROOT / "tests" / "integration"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from kafka_local import LocalKafka, free_port  # noqa: E402
from sidecar_harness import Topics, spawn, status_of  # noqa: E402

from connector.testing import wait_until  # noqa: E402

FAKE_API_KEY = "AIzaChaosFakeKey-" + uuid.uuid4().hex
FAKE_SASL_PASSWORD = "sasl-chaos-secret-" + uuid.uuid4().hex
FAKE_REGISTRY_PASSWORD = "registry-chaos-secret-" + uuid.uuid4().hex
SECRETS = {
    "GEMINI_API_KEY": FAKE_API_KEY,
    "CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD": FAKE_SASL_PASSWORD,
    "CONNECTOR_SCHEMA_REGISTRY_PASSWORD": FAKE_REGISTRY_PASSWORD,
}
PROMPT_MARKER = "chaos-prompt-"
"""Every prompt the suite sends contains this: health output and logs are scanned for it."""


# The suite's own clients ride out broker restarts on purpose: their retry chatter is noise.
for _name in ("kafka", "kafka.cluster", "kafka.net", "kafka.consumer", "kafka.producer"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


def log(msg: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def wait_for(pred: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    """`wait_until` that answers False at the deadline instead of raising: a chaos phase goes
    on and reports what it then sees (a violation or a note), rather than stopping."""
    try:
        wait_until(pred, timeout=timeout, interval=interval)
    except TimeoutError:
        return False
    return True


# -- broker ------------------------------------------------------------------------------------


class Broker:
    """One LocalKafka we own: stop and start it on the same port and data dir."""

    def __init__(self, workdir: Path, heap: str = "768m") -> None:
        self.kafka = LocalKafka(workdir, port=free_port(), heap=heap)
        self.restarts = 0

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    def start(self) -> None:
        self.kafka.start(timeout=240)

    def restart(self, down_s: float = 3.0) -> float:
        """Controlled stop, a pause, start again; returns the seconds the broker was away."""
        began = time.monotonic()
        self.kafka.stop(grace=30)
        time.sleep(down_s)  # pacing: the outage itself, kept on purpose for down_s
        self.kafka.start(timeout=240)
        self.restarts += 1
        return time.monotonic() - began

    def stop(self) -> None:
        self.kafka.stop()


def admin_client(bootstrap: str) -> Any:
    from kafka import KafkaAdminClient

    return KafkaAdminClient(bootstrap_servers=bootstrap, client_id="chaos-admin")


def create_topics(bootstrap: str, specs: Mapping[str, tuple[int, dict[str, str]]]) -> None:
    admin = admin_client(bootstrap)
    try:
        admin.create_topics(
            {
                name: {"num_partitions": n, "replication_factor": 1, "configs": cfg}
                for name, (n, cfg) in specs.items()
            },
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def add_partitions(bootstrap: str, topic: str, total: int) -> None:
    from kafka.admin import NewPartitions

    admin = admin_client(bootstrap)
    try:
        admin.create_partitions({topic: NewPartitions(total_count=total)})
    finally:
        admin.close()


def new_topics(
    prefix: str, partitions: int, result_configs: dict[str, str] | None = None, bootstrap: str = ""
) -> Topics:
    tag = f"{prefix}-{uuid.uuid4().hex[:8]}"
    t = Topics(requests=f"{tag}.req", results=f"{tag}.res", dlq=f"{tag}.dlq", group=f"{tag}-g")
    create_topics(
        bootstrap,
        {
            t.requests: (partitions, {}),
            t.results: (partitions, dict(result_configs or {})),
            t.dlq: (partitions, {}),
        },
    )
    return t


# -- emulator ----------------------------------------------------------------------------------


class Emulator:
    """`python -m connector.emulator --port 0` with knobs as flags, never `--host`."""

    def __init__(self, log_path: Path, api_key: str = FAKE_API_KEY, **knobs: Any) -> None:
        self.log_path = log_path
        args = [sys.executable, "-m", "connector.emulator", "--port", "0", "--api-key", api_key]
        for k, v in knobs.items():
            args += ["--" + k.replace("_", "-"), str(v)]
        out = log_path.open("ab")
        self.proc = subprocess.Popen(
            args,
            cwd=str(ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        self.base_url = ""
        ok = wait_for(self._read_url, timeout=60, interval=0.2)
        if not ok:
            self.close()
            raise RuntimeError(f"emulator did not start: {log_path.read_text()[-2000:]}")
        self.listening = listening_sockets(self.proc.pid)
        """Where it listens, started without --host: checked to be loopback only."""

    def _read_url(self) -> bool:
        text = self.log_path.read_text(errors="replace")
        for line in text.splitlines():
            if "listening on " in line:
                self.base_url = line.split("listening on ", 1)[1].strip()
                return True
        if self.proc.poll() is not None:
            raise RuntimeError(f"emulator exited: {text[-2000:]}")
        return False

    def config(self, **knobs: Any) -> dict[str, Any]:
        r = httpx2.post(self.base_url + "/_emulator/config", json=knobs, timeout=10)
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def stats(self) -> dict[str, Any]:
        r = httpx2.get(self.base_url + "/_emulator/stats", timeout=30)
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """The TCP sockets process `pid` listens on, as (address, port), from /proc."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir() if fd_dir.exists() else []:
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out: list[tuple[str, int]] = []
    for table, v6 in (("tcp", False), ("tcp6", True)):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) < 10 or cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                continue
            addr_hex, port_hex = cols[1].split(":")
            out.append((_ip(addr_hex, v6), int(port_hex, 16)))
    return out


def _ip(hexaddr: str, v6: bool) -> str:
    raw = bytes.fromhex(hexaddr)
    if not v6:
        return ".".join(str(b) for b in raw[::-1])
    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
    import ipaddress

    return str(ipaddress.IPv6Address(b"".join(words)))


# -- replicas ----------------------------------------------------------------------------------


@dataclass
class Slot:
    index: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False  # SIGSTOPped right now
    expected_exit: bool = False
    starts: int = 0


@dataclass
class Events:
    kills: int = 0
    stalls: int = 0
    stall_seconds: list[float] = field(default_factory=list)
    unexpected_exits: list[dict[str, Any]] = field(default_factory=list)
    sigterm_exit_codes: list[int] = field(default_factory=list)


class Replicas:
    """K `connector run` processes in one group; crashed ones are restarted (and counted)."""

    def __init__(
        self,
        env: Mapping[str, str],
        logdir: Path,
        count: int,
        name: str,
        scan: Callable[[str, str], None] | None = None,
    ) -> None:
        self.env = dict(env)
        self.name = name
        self.slots = [Slot(i, logdir / f"{name}-replica-{i}.log") for i in range(count)]
        self.events = Events()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._scan = scan
        self._watch = threading.Thread(target=self._watcher, name=f"{name}-watch", daemon=True)
        self._restart_delay: dict[int, float] = {}

    @property
    def log_paths(self) -> list[Path]:
        return [s.log_path for s in self.slots]

    def start(self) -> None:
        for s in self.slots:
            self._spawn(s)
        self._watch.start()

    def _spawn(self, s: Slot) -> None:
        s.proc = spawn(self.env, s.log_path)
        s.expected_exit = False
        s.stopped = False
        s.starts += 1

    def live(self) -> list[Slot]:
        return [s for s in self.slots if s.proc is not None and s.proc.poll() is None]

    def statuses(self) -> list[dict[str, Any]]:
        return [status_of(s.proc) for s in self.live() if not s.stopped and s.proc is not None]

    def owned_partitions(self) -> int:
        return sum(len(st.get("partitions") or []) for st in self.statuses())

    def busy(self, partitions: int) -> str:
        """Why the group is not idle yet, or "" once it is: every replica runs (none stopped,
        none waiting to be restarted) and, per its /status, holds no open batch, no INTENT and
        no SUBMITTED job, and the replicas own the `partitions` between them, each once (no
        rebalance under way, no stale snapshot of a partition that moved)."""
        owned: list[int] = []
        for s in self.slots:
            if s.proc is None or s.proc.poll() is not None:
                return f"replica {s.index} is not running"
            if s.stopped:
                return f"replica {s.index} is stopped"
            st = status_of(s.proc)
            if not st:
                return f"replica {s.index} does not answer /status"
            for key in ("open_requests", "intents", "submitted"):
                if st.get(key):
                    return f"replica {s.index} has {key}={st[key]}"
            owned += st.get("partitions") or []
        if sorted(owned) != list(range(partitions)):
            return f"replicas own partitions {sorted(owned)} of {partitions}"
        return ""

    def _watcher(self) -> None:
        """Restart processes that died on their own (a crash is an event, not the end)."""
        while not self._stop.is_set():
            with self._lock:
                for s in self.slots:
                    if s.proc is None or s.expected_exit or s.proc.poll() is None:
                        continue
                    code = s.proc.returncode
                    tail = s.log_path.read_text(errors="replace")[-1500:]
                    self.events.unexpected_exits.append(
                        {"replica": s.index, "code": code, "at": time.time(), "log_tail": tail}
                    )
                    delay = min(8.0, self._restart_delay.get(s.index, 0.5) * 2)
                    self._restart_delay[s.index] = delay
                    log(
                        f"{self.name}: replica {s.index} exited by itself (code {code}); "
                        f"restart in {delay:.0f} s"
                    )
                    s.proc = None
                    threading.Timer(delay, self._respawn, args=(s,)).start()
            self._sample_health()
            self._stop.wait(1.0)

    def _respawn(self, s: Slot) -> None:
        with self._lock:
            if self._stop.is_set() or s.proc is not None:
                return
            self._spawn(s)

    def _sample_health(self) -> None:
        """Read every health path of every live replica: scanned for secrets and prompts."""
        if self._scan is None:
            return
        for s in self.live():
            if s.stopped or s.proc is None:
                continue
            port = s.proc.health_port  # type: ignore[attr-defined]
            for path in ("/status", "/healthz", "/readyz", "/metrics"):
                try:
                    r = httpx2.get(f"http://127.0.0.1:{port}{path}", timeout=2)
                except httpx2.TransportError:
                    continue
                self._scan(f"{self.name}:{path}", r.text + "\n" + str(dict(r.headers)))

    def kill(self, index: int, down_s: float) -> None:
        """SIGKILL, then a fresh process after `down_s` (the kill is counted)."""
        with self._lock:
            s = self.slots[index]
            if s.proc is None or s.proc.poll() is not None:
                return
            s.expected_exit = True
            if s.stopped:
                s.proc.send_signal(signal.SIGCONT)
            s.proc.kill()
            s.proc.wait(timeout=30)
            self.events.kills += 1
            s.proc = None
        time.sleep(down_s)  # pacing: the replica stays dead for down_s on purpose
        with self._lock:
            if not self._stop.is_set() and s.proc is None:
                self._spawn(s)

    def stall(self, index: int, seconds: float) -> bool:
        """SIGSTOP for `seconds`, then SIGCONT: longer than max.poll.interval.ms, a zombie."""
        with self._lock:
            s = self.slots[index]
            if s.proc is None or s.proc.poll() is not None or s.stopped:
                return False
            s.proc.send_signal(signal.SIGSTOP)
            s.stopped = True
            proc = s.proc
        time.sleep(seconds)  # pacing: the freeze itself, past max.poll.interval.ms on purpose
        with self._lock:
            if s.proc is proc and proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
            s.stopped = False
        self.events.stalls += 1
        self.events.stall_seconds.append(seconds)
        return True

    def stop(self, timeout: float = 90) -> None:
        """SIGTERM everything (drain) and record the exit codes."""
        self._stop.set()
        with self._lock:
            for s in self.slots:
                if s.proc is not None and s.proc.poll() is None:
                    s.expected_exit = True
                    s.proc.send_signal(signal.SIGCONT)
                    s.proc.send_signal(signal.SIGTERM)
            for s in self.slots:
                if s.proc is None:
                    continue
                try:
                    self.events.sigterm_exit_codes.append(s.proc.wait(timeout=timeout))
                except subprocess.TimeoutExpired:
                    s.proc.kill()
                    s.proc.wait(timeout=30)
                    self.events.sigterm_exit_codes.append(-9)
        if self._watch.is_alive():
            self._watch.join(timeout=10)


# -- topic taps --------------------------------------------------------------------------------


@dataclass
class Raw:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class Tap(threading.Thread):
    """Reads a topic from the beginning into memory, following new partitions and restarts."""

    def __init__(
        self, bootstrap: str, topic: str, isolation_level: str = "read_uncommitted"
    ) -> None:
        super().__init__(name=f"tap-{topic}", daemon=True)
        self.bootstrap = bootstrap
        self.topic = topic
        self.isolation_level = isolation_level
        self.records: list[Raw] = []
        self.positions: dict[int, int] = {}
        """Per partition, the offset the tap reads next (past markers and aborted records)."""
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[str] = []

    def run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level=self.isolation_level,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        assigned: set[int] = set()
        last_refresh = 0.0
        try:
            while not self._halt.is_set():
                if time.monotonic() - last_refresh > 3:
                    last_refresh = time.monotonic()
                    try:
                        parts = consumer.partitions_for_topic(self.topic) or set()
                    except Exception as exc:  # broker away: try again later
                        self.errors.append(repr(exc))
                        parts = set()
                    if parts - assigned:
                        assigned |= parts
                        tps = [TopicPartition(self.topic, p) for p in sorted(assigned)]
                        consumer.assign(tps)
                        new = [TopicPartition(self.topic, p) for p in parts]
                        consumer.seek_to_beginning(*new)
                try:
                    batches = consumer.poll(timeout_ms=500) if assigned else {}
                except Exception as exc:
                    self.errors.append(repr(exc))
                    # pacing: the broker is away (a restart); poll again in a second
                    self._halt.wait(1.0)
                    continue
                got = [
                    Raw(r.partition, r.offset, r.key, r.value, list(r.headers or []))
                    for recs in batches.values()
                    for r in recs
                ]
                positions = self._positions(consumer, assigned)
                with self._lock:
                    self.records.extend(got)
                    self.positions.update(positions)
                if not assigned:
                    # pacing: the topic has no partitions yet; the loop looks again (above)
                    self._halt.wait(0.5)
        finally:
            consumer.close()

    def _positions(self, consumer: Any, assigned: set[int]) -> dict[int, int]:
        from kafka import TopicPartition

        out: dict[int, int] = {}
        for p in assigned:
            try:  # known after a fetch; never blocks (timeout 0)
                pos = consumer.position(TopicPartition(self.topic, p), timeout_ms=0)
            except Exception:
                continue
            if pos is not None:
                out[p] = pos
        return out

    def snapshot(self) -> list[Raw]:
        with self._lock:
            return list(self.records)

    def caught_up(self, timeout: float) -> bool:
        """Wait until the tap has read everything the topic holds now: its end offsets as a
        reader with the tap's isolation level sees them. False at the deadline."""
        ends = EndOffsets(self.bootstrap, self.topic, self.isolation_level)
        try:
            if not wait_for(lambda: ends.read() is not None, timeout, interval=1.0):
                return False
        finally:
            ends.close()
        target = ends.last or {}

        def reached() -> bool:
            with self._lock:
                return all(self.positions.get(p, 0) >= end for p, end in target.items())

        return wait_for(reached, timeout, interval=0.2)

    def close(self) -> None:
        self._halt.set()
        self.join(timeout=30)


class EndOffsets:
    """A topic's end offsets as a reader with `isolation_level` sees them (one consumer,
    reused across reads): the high watermark, or the last stable offset for read_committed."""

    def __init__(self, bootstrap: str, topic: str, isolation_level: str) -> None:
        from kafka import KafkaConsumer

        self.topic = topic
        self.last: dict[int, int] | None = None
        self._consumer = KafkaConsumer(
            bootstrap_servers=bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level=isolation_level,
        )

    def read(self) -> dict[int, int] | None:
        """The end offsets now, or None while the broker does not answer."""
        from kafka import TopicPartition

        try:
            parts = self._consumer.partitions_for_topic(self.topic)
            if not parts:
                return None  # no metadata yet: every topic here has partitions
            tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
            ends = self._consumer.end_offsets(tps, timeout_ms=10_000)
        except Exception:
            return None
        self.last = {tp.partition: int(o) for tp, o in ends.items()}
        return self.last

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._consumer.close()


def emulator_busy(stats: Mapping[str, Any]) -> str:
    """Why the emulator may still produce results or duplicates, or "" when it will not:
    no job is pending, running or still landing (a create answered late), and no upload or
    create is being answered."""
    batches = stats.get("batches") or {}
    for key in ("active", "landing"):
        if batches.get(key):
            return f"emulator has {batches[key]} {key} jobs"
    calls = stats.get("in_flight") or {}
    for call in ("files.upload", "batches.create", "batches.create_embeddings"):
        if calls.get(call):
            return f"emulator is answering {calls[call]} {call}"
    return ""


def wait_quiet(
    replicas: Replicas,
    partitions: int,
    emulator: Emulator,
    results: Tap,
    timeout: float,
) -> tuple[float, str]:
    """Wait until nothing is left that could still write a result or create a job: the group
    is idle (`Replicas.busy`), so is the emulator (`emulator_busy`), and the results topic's
    end offsets did not move across two reads a second apart.

    Replaces a fixed grace period before judging: a late duplicate (a zombie's create, a
    re-delivery after a rebalance) comes from work some replica or the emulator still holds,
    and is in the topics and the emulator's counts once they are all idle. Returns the
    seconds waited and, if the deadline passed first, what was still busy ("" when quiet).
    """
    began = time.monotonic()
    ends = EndOffsets(results.bootstrap, results.topic, results.isolation_level)
    why = ""
    previous: dict[int, int] | None = None

    def quiet() -> bool:
        nonlocal why, previous
        why = replicas.busy(partitions) or emulator_busy(emulator.stats())
        now = ends.read()
        moved = now is None or now != previous
        previous = now
        if not why and moved:
            why = "results topic end offsets still moving"
        return not why

    try:
        wait_for(quiet, timeout, interval=1.0)
    finally:
        ends.close()
    return time.monotonic() - began, why


def read_topics(bootstrap: str, topics: list[str], timeout: float = 30) -> list[tuple[str, Raw]]:
    """Every record of `topics` up to their end offsets now (one consumer for all)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    out: list[tuple[str, Raw]] = []
    try:
        tps = [
            TopicPartition(t, p)
            for t in topics
            for p in sorted(consumer.partitions_for_topic(t) or [])
        ]
        if not tps:
            return out
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(consumer.position(tp) < end[tp] for tp in tps):
            for tp, recs in consumer.poll(timeout_ms=500).items():
                out += [
                    (tp.topic, Raw(r.partition, r.offset, r.key, r.value, list(r.headers or [])))
                    for r in recs
                ]
    finally:
        consumer.close()
    return out


# -- publishing --------------------------------------------------------------------------------


class Publisher:
    """An idempotent producer that remembers which sends the broker acknowledged."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaProducer

        from connector.core.codec import Codec

        self.topic = topic
        self.codec = Codec()
        self.acked: dict[str, tuple[int, int]] = {}
        self.failed: dict[str, str] = {}
        self.raw_acked: list[tuple[str, int, int]] = []
        self._lock = threading.Lock()
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            max_request_size=8 * 1024 * 1024,
            delivery_timeout_ms=180_000,
            request_timeout_ms=30_000,
        )

    def send(
        self,
        tag: str,
        value: bytes | None,
        key: bytes | None,
        partition: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        fut = self._producer.send(
            self.topic, value=value, key=key, partition=partition, headers=headers or []
        )

        def ok(md: Any) -> None:
            with self._lock:
                self.acked[tag] = (md.partition, md.offset)

        def bad(exc: BaseException) -> None:
            with self._lock:
                self.failed[tag] = repr(exc)

        fut.add_callback(ok)
        fut.add_errback(bad)

    def request(
        self,
        rid: str,
        model: str,
        body: Mapping[str, Any] | str,
        kind: str = "generate",
        *,
        group: str = "",
        priority: int = 0,
        partition: int | None = None,
    ) -> None:
        import orjson

        from connector.core.records import Kind, RequestEvent

        text = body if isinstance(body, str) else orjson.dumps(body).decode()
        ev = RequestEvent(
            rid,
            model,
            Kind(kind),
            text,
            group,
            priority,
            None,
            {"chaos": "1"},
            int(time.time() * 1000),
        )
        self.send(rid, self.codec.encode_request(ev), rid.encode(), partition)

    def flush(self, timeout: float = 180) -> None:
        self._producer.flush(timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._producer.flush(timeout=60)
        self._producer.close()


def prompt(rid: str, extra: str = "") -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": f"{PROMPT_MARKER}{rid} {extra}"}]}]}


def sidecar_env(topics: Topics, bootstrap: str, base_url: str, **extra: str) -> dict[str, str]:
    """The harness's env plus the fake secrets (scanned for later) and the chaos timings."""
    env = topics.env(bootstrap, base_url)
    env.update(SECRETS)
    env.update(
        {
            "CONNECTOR_KAFKA_SASL_PLAIN_USERNAME": "chaos-user",
            "CONNECTOR_SCHEMA_REGISTRY_USERNAME": "chaos-registry-user",
            "CONNECTOR_STATUS_INTERVAL_S": "5",
            # New request partitions are seen within seconds (kafka-python's default: 5 min).
            "CONNECTOR_KAFKA_METADATA_MAX_AGE_MS": "5000",
            # Only the replicas write the ledger, with 30 s transactions: one open for 90 s
            # is hanging (a broker restart skipped its markers) and is aborted within a phase.
            "CONNECTOR_HANGING_TRANSACTION_AFTER_S": "90",
        }
    )
    env.update(extra)
    return env


def choose(rng: random.Random, items: Iterable[Any]) -> Any:
    seq = list(items)
    return rng.choice(seq) if seq else None
