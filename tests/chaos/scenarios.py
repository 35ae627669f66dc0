"""The chaos phases. Each takes the shared broker and returns a `PhaseResult`.

1. `kills_and_stalls`: N requests through K replicas in one group over 6+ partitions, with
   SIGKILLs (restarted) and SIGSTOP/SIGCONT stalls longer than max.poll.interval.ms.
2. `broker_and_partitions`: a broker restart (same port and data dir) and more request
   partitions during the run; the new partitions get requests too.
3. `fault_storm`: every emulator fault knob at once; each request ends with one terminal
   result of the right status.
4. `hostile_input`: random, truncated, oversized and wrongly framed records (and requests
   that reference server-side resources) through a running sidecar; valid requests
   interleaved are answered.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from connector.core.codec import Codec
from connector.core.formats import confluent_frame
from connector.core.records import (
    BatchKey,
    EntryState,
    Kind,
    LedgerEntry,
    RequestEvent,
    ResultEvent,
    ResultStatus,
)
from connector.testing import wait_until

from .checks import Expect, PhaseResult, expect_ok, judge
from .infra import (
    Broker,
    Emulator,
    Publisher,
    Raw,
    Replicas,
    Tap,
    add_partitions,
    log,
    new_topics,
    prompt,
    sidecar_env,
    wait_for,
    wait_quiet,
)


@dataclass
class Config:
    requests: int = 2000
    duration_s: float = 30.0
    replicas: int = 3
    partitions: int = 6
    kills: int = 4
    stalls: int = 2
    max_poll_interval_ms: int = 10_000
    broker_restarts: int = 1
    partition_requests: int = 400
    storm_requests: int = 300
    hostile_records: int = 150
    fuzz_cases: int = 10_000
    guarantee: str = "at_least_once"
    settle_s: float = 60.0
    quiet_s: float = 60.0
    """Deadline for a phase's replicas and emulator to go idle before it is judged."""
    seed: int = 7
    workdir: Path = Path(".run/chaos")
    phases: tuple[str, ...] = ("fuzz", "kills", "broker", "storm", "hostile", "security")


@dataclass
class Shared:
    """What later phases (security) need from earlier ones."""

    log_paths: list[Path] = field(default_factory=list)
    emulators: list[Emulator] = field(default_factory=list)
    scanned: list[tuple[str, str]] = field(default_factory=list)
    taps: list[Tap] = field(default_factory=list)
    ledgers: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def scan(self, where: str, text: str) -> None:
        with self.lock:
            if len(self.scanned) < 5000:
                self.scanned.append((where, text))


def _guarantee_env(cfg: Config) -> dict[str, str]:
    return {"CONNECTOR_PROCESSING_GUARANTEE": cfg.guarantee}


def _isolation(cfg: Config) -> str:
    return "read_committed" if cfg.guarantee == "exactly_once" else "read_uncommitted"


def _poll_env(cfg: Config) -> dict[str, str]:
    ms = cfg.max_poll_interval_ms
    return {
        "CONNECTOR_KAFKA_MAX_POLL_INTERVAL_MS": str(ms),
        "CONNECTOR_KAFKA_SESSION_TIMEOUT_MS": str(ms),
        "CONNECTOR_KAFKA_HEARTBEAT_INTERVAL_MS": str(max(500, ms // 5)),
        # A pass budget plus one HTTP timeout must stay within half the poll interval (the
        # sidecar refuses to start otherwise): 2 s + 3 s for the 10 s interval used here.
        "CONNECTOR_PASS_BUDGET_S": "2",
    }


def _wait_answered(tap: Tap, ids: set[str], timeout: float) -> float:
    """Wait until every id has a result record (or the timeout); returns the seconds waited."""
    began = time.monotonic()
    codec = Codec()
    seen: set[str] = set()
    done_upto = 0

    def check() -> bool:
        nonlocal done_upto
        recs = tap.snapshot()
        for raw in recs[done_upto:]:
            try:
                if raw.value is not None:
                    seen.add(codec.decode_result(raw.value).request_id)
            except Exception:
                pass
        done_upto = len(recs)
        return ids <= seen

    wait_for(check, timeout, interval=1.0)
    return time.monotonic() - began


def _answered(tap: Tap, ids: set[str]) -> set[str]:
    codec = Codec()
    seen: set[str] = set()
    for raw in tap.snapshot():
        try:
            if raw.value is not None:
                seen.add(codec.decode_result(raw.value).request_id)
        except Exception:
            pass
    return ids & seen


def _start_replicas(replicas: Replicas, partitions: int, timeout: float = 120) -> None:
    replicas.start()
    ok = wait_for(lambda: replicas.owned_partitions() >= partitions, timeout, interval=1.0)
    if not ok:
        log(
            f"{replicas.name}: replicas own {replicas.owned_partitions()} of {partitions} "
            "partitions after start; going on"
        )


def _settle(
    res: PhaseResult,
    cfg: Config,
    replicas: Replicas,
    partitions: int,
    em: Emulator,
    taps: list[Tap],
) -> None:
    """Judge nothing before it is final: wait until the replicas and the emulator are idle
    (a late duplicate would be in the topics by then), stop the replicas (they drain), then
    wait until every tap has read its topic to the end. A deadline that passes is a note:
    the phase is judged on what the topics hold then."""
    waited, busy = wait_quiet(replicas, partitions, em, taps[0], cfg.quiet_s)
    res.figures["quiet_s"] = round(waited, 1)
    if busy:
        res.notes.append(f"not idle after {cfg.quiet_s:.0f} s before judging: {busy}")
    replicas.stop()
    for tap in taps:
        if not tap.caught_up(cfg.quiet_s):
            res.notes.append(f"{tap.topic}: not read to its end within {cfg.quiet_s:.0f} s")
        tap.close()


def _events_figures(res: PhaseResult, replicas: Replicas) -> None:
    ev = replicas.events
    res.figures.update(
        {
            "replicas": len(replicas.slots),
            "kills": ev.kills,
            "stalls": ev.stalls,
            "stall_seconds": [round(s, 1) for s in ev.stall_seconds],
            "unexpected_exits": len(ev.unexpected_exits),
            "sigterm_exit_codes": ev.sigterm_exit_codes,
        }
    )
    if ev.unexpected_exits:
        codes = Counter(e["code"] for e in ev.unexpected_exits)
        last = ev.unexpected_exits[-1]["log_tail"].strip().splitlines()[-3:]
        res.notes.append(
            f"replicas exited by themselves {len(ev.unexpected_exits)} times "
            f"(exit codes {dict(codes)}); last log lines: {last}"
        )
    bad_exit = [c for c in ev.sigterm_exit_codes if c != 0]
    if bad_exit:
        res.notes.append(f"SIGTERM at the end did not exit 0: {bad_exit}")


# -- 1. kills and stalls -------------------------------------------------------------------------


def kills_and_stalls(cfg: Config, broker: Broker, shared: Shared) -> PhaseResult:
    res = PhaseResult("kills_and_stalls")
    rng = random.Random(cfg.seed)
    wd = cfg.workdir
    em = Emulator(
        wd / "emulator-kills.log",
        queue_delay_s=0.2,
        processing_delay_s=0.5,
        per_request_delay_s=0,
        running_slots=16,
        latency_ms=20,
        seed=cfg.seed,
    )
    shared.emulators.append(em)
    topics = new_topics("kills", cfg.partitions, bootstrap=broker.bootstrap)
    shared.ledgers.append(f"{topics.group}.{topics.requests}.ledger")
    http_timeout = 3
    env = sidecar_env(
        topics,
        broker.bootstrap,
        em.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="25",
        CONNECTOR_BATCH_MAX_WAIT_S="2.5",
        CONNECTOR_HTTP_TIMEOUT_S=str(http_timeout),
        CONNECTOR_MAX_JOBS="24",
        **_poll_env(cfg),
        **_guarantee_env(cfg),
    )
    replicas = Replicas(env, wd, cfg.replicas, "kills", scan=shared.scan)
    shared.log_paths += replicas.log_paths
    tap = Tap(broker.bootstrap, topics.results, _isolation(cfg))
    tap.start()
    shared.taps.append(tap)
    _start_replicas(replicas, cfg.partitions)
    pub = Publisher(broker.bootstrap, topics.requests)
    began = time.monotonic()

    def publish() -> None:
        per_tick = max(1, int(cfg.requests / (cfg.duration_s * 10)))
        i = 0
        while i < cfg.requests:
            for _ in range(per_tick):
                if i >= cfg.requests:
                    break
                rid = f"K-{i:07d}"
                model = "gemini-2.5-flash" if rng.random() < 0.85 else "gemini-2.5-pro"
                group = "" if rng.random() < 0.9 else "rare"
                pub.request(rid, model, prompt(rid), group=group)
                i += 1
            target = began + cfg.duration_s * i / cfg.requests
            # pacing: the publisher spreads the requests evenly over duration_s
            time.sleep(max(0.0, target - time.monotonic()))
        pub.flush()

    stall_s = cfg.max_poll_interval_ms / 1000 + http_timeout + 4
    schedule = sorted(
        [("kill", rng.uniform(0.08, 0.95) * cfg.duration_s) for _ in range(cfg.kills)]
        + [("stall", rng.uniform(0.08, 0.85) * cfg.duration_s) for _ in range(cfg.stalls)],
        key=lambda e: e[1],
    )
    workers: list[threading.Thread] = []

    def chaos() -> None:
        for what, at in schedule:
            # pacing: each kill or stall happens at its scheduled time into the run
            time.sleep(max(0.0, began + at - time.monotonic()))
            try:
                free = wait_until(lambda: _free(replicas), timeout=20, interval=0.5)
            except TimeoutError:
                log(f"kills: no replica free for a {what}")
                continue
            if what == "kill":
                idx = rng.choice(free)
                log(f"kills: SIGKILL replica {idx}")
                t = threading.Thread(target=replicas.kill, args=(idx, rng.uniform(0.5, 3.0)))
            else:
                # Prefer a replica with INTENTs waiting: a zombie with work in hand.
                busy = [
                    i
                    for i in free
                    if (replicas.slots[i].proc is not None) and _intents(replicas, i) > 0
                ]
                idx = rng.choice(busy or free)
                secs = stall_s + rng.uniform(0, 3)
                log(f"kills: SIGSTOP replica {idx} for {secs:.0f} s")
                t = threading.Thread(target=replicas.stall, args=(idx, secs))
            t.start()
            workers.append(t)

    pt = threading.Thread(target=publish, name="publish")
    ct = threading.Thread(target=chaos, name="chaos")
    pt.start()
    ct.start()
    pt.join()
    ct.join()
    for t in workers:
        t.join()
    res.figures["publish_s"] = round(time.monotonic() - began, 1)
    expected: dict[str, Expect] = dict.fromkeys(pub.acked, expect_ok)
    log(f"kills: {len(pub.acked)} requests acked; waiting for results")
    waited = _wait_answered(tap, set(expected), cfg.settle_s + cfg.requests / 100)
    res.figures["settle_s"] = round(waited, 1)
    _settle(res, cfg, replicas, cfg.partitions, em, [tap])
    pub.close()
    stats = em.stats()
    judge(res, expected, tap.snapshot(), stats["batches"]["by_display_name"], cfg.guarantee)
    res.figures["publish_failed"] = len(pub.failed)
    _events_figures(res, replicas)
    em.close()
    return res


def _free(replicas: Replicas) -> list[int]:
    """Replicas running and not stopped: free for a kill or a stall."""
    return [
        s.index
        for s in replicas.slots
        if s.proc is not None and s.proc.poll() is None and not s.stopped
    ]


def _intents(replicas: Replicas, index: int) -> int:
    from sidecar_harness import status_of

    proc = replicas.slots[index].proc
    if proc is None:
        return 0
    st = status_of(proc)
    return int(st.get("intents") or 0)


# -- 2. broker restart and partition increase --------------------------------------------------


def broker_and_partitions(cfg: Config, broker: Broker, shared: Shared) -> PhaseResult:
    res = PhaseResult("broker_and_partitions")
    rng = random.Random(cfg.seed + 1)
    wd = cfg.workdir
    parts = 4
    added = 2
    em = Emulator(
        wd / "emulator-broker.log",
        queue_delay_s=0.2,
        processing_delay_s=0.5,
        per_request_delay_s=0,
        running_slots=16,
        seed=cfg.seed,
    )
    shared.emulators.append(em)
    topics = new_topics("broker", parts, bootstrap=broker.bootstrap)
    shared.ledgers.append(f"{topics.group}.{topics.requests}.ledger")
    env = sidecar_env(
        topics,
        broker.bootstrap,
        em.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="20",
        CONNECTOR_BATCH_MAX_WAIT_S="1.5",
        CONNECTOR_STARTUP_TIMEOUT_S="300",
        CONNECTOR_HTTP_TIMEOUT_S="3",
        **_poll_env(cfg),
        **_guarantee_env(cfg),
    )
    replicas = Replicas(env, wd, 2, "broker", scan=shared.scan)
    shared.log_paths += replicas.log_paths
    tap = Tap(broker.bootstrap, topics.results, _isolation(cfg))
    tap.start()
    shared.taps.append(tap)
    _start_replicas(replicas, parts)
    n = cfg.partition_requests
    n1 = int(n * 0.6)
    duration = min(90.0, max(20.0, cfg.duration_s / 2))
    pubs = [Publisher(broker.bootstrap, topics.requests)]
    new_partition_ids: set[str] = set()
    before_ids: list[str] = []
    began = time.monotonic()

    def publish(first: int, last: int, partitions: int, span: float) -> None:
        pub = pubs[-1]
        t0 = time.monotonic()
        for i in range(first, last):
            rid = f"B-{i:06d}"
            p = i % partitions
            if p >= parts:
                new_partition_ids.add(rid)
            if partitions == parts:
                before_ids.append(rid)
            pub.request(rid, "gemini-2.5-flash", prompt(rid), partition=p)
            # pacing: the publisher spreads the requests evenly over `span`
            time.sleep(max(0.0, t0 + span * (i + 1 - first) / (last - first) - time.monotonic()))
        pub.flush()

    # Part 1: requests flow while the broker restarts; all of them must be answered.
    pt = threading.Thread(target=publish, args=(0, n1, parts, duration), name="publish-broker")
    pt.start()
    downs: list[float] = []
    for k in range(cfg.broker_restarts):
        at = duration * (0.25 + 0.5 * k / max(1, cfg.broker_restarts))
        # pacing: each broker restart happens at its scheduled time into the publishing
        time.sleep(max(0.0, began + at - time.monotonic()))
        log("broker: restarting the broker (same port, same data dir)")
        downs.append(broker.restart(down_s=rng.uniform(2, 5)))
        log(f"broker: back after {downs[-1]:.0f} s")
    pt.join()
    acked1 = {rid for rid in before_ids if rid in pubs[0].acked}
    waited1 = _wait_answered(tap, acked1, cfg.settle_s)
    answered1 = _answered(tap, acked1)
    res.figures["lost_across_broker_restarts"] = len(acked1 - answered1)
    log(
        f"broker: {len(answered1)} of {len(acked1)} answered across the restart(s) "
        f"({waited1:.0f} s); request topic {parts} -> {parts + added} partitions"
    )
    # Part 2: more partitions; the rest of the requests go to old and new partitions alike.
    add_partitions(broker.bootstrap, topics.requests, parts + added)
    pubs.append(Publisher(broker.bootstrap, topics.requests))
    publish(n1, n, parts + added, duration / 2)
    acked: dict[str, tuple[int, int]] = {}
    for p in pubs:
        p.flush()
        acked.update(p.acked)
    expected: dict[str, Expect] = dict.fromkeys(acked, expect_ok)
    log(
        f"broker: {len(acked)} requests acked ({len(new_partition_ids & set(acked))} on new "
        "partitions); waiting for results"
    )
    waited = _wait_answered(tap, set(expected), cfg.settle_s)
    res.figures["settle_s"] = round(waited, 1)
    _settle(res, cfg, replicas, parts + added, em, [tap])
    for p in pubs:
        p.close()
    stats = em.stats()
    by_id = judge(res, expected, tap.snapshot(), stats["batches"]["by_display_name"], cfg.guarantee)
    on_new = new_partition_ids & set(acked)
    answered_new = {rid for rid in on_new if rid in by_id}
    res.figures.update(
        {
            "broker_restarts": len(downs),
            "broker_down_s": [round(d, 1) for d in downs],
            "partitions_before": parts,
            "partitions_after": parts + added,
            "requests_on_new_partitions": len(on_new),
            "answered_on_new_partitions": len(answered_new),
            "tap_errors": len(tap.errors),
        }
    )
    if res.figures["lost_across_broker_restarts"]:
        res.violations.append(
            f"broker restart: {res.figures['lost_across_broker_restarts']} of {len(acked1)} "
            f"requests published around the restart(s) were not answered within "
            f"{cfg.settle_s:.0f} s"
        )
    if len(answered_new) < len(on_new):
        res.violations.append(
            f"new partitions: {len(on_new) - len(answered_new)} of {len(on_new)} requests "
            f"published to partitions added during the run were never answered"
        )
    _events_figures(res, replicas)
    em.close()
    return res


# -- 3. provider fault storm -------------------------------------------------------------------

RESULT_TOPIC_MAX_BYTES = 1_000_000
BIG_RESPONSE = 2_000_000


def _job_level(r: ResultEvent) -> bool:
    """A job-level give-up (FAILED past its retries, EXPIRED past its attempts)."""
    e = r.error
    return (
        e is not None
        and e.message.startswith("batch job ")
        and (
            (e.code == 500 and e.status == "INTERNAL")
            or (e.code == 504 and e.status == "DEADLINE_EXCEEDED")
        )
    )


def _random_request_error(r: ResultEvent) -> bool:
    """request_error_rate: a per-request 500 INTERNAL, which may hit any request (a triggered
    one included, before its trigger is looked at)."""
    e = r.error
    return e is not None and e.code == 500 and e.status == "INTERNAL"


def _expect_plain(r: ResultEvent) -> str | None:
    if r.status is ResultStatus.OK:
        return None
    e = r.error
    if e is not None and (_job_level(r) or (e.code == 500 and e.status == "INTERNAL")):
        return None  # request_error_rate: a per-request 500 INTERNAL
    return f"plain request: ERROR {e and e.code} {e and e.status} {e and e.message[:100]}"


def _expect_code(code: int) -> Expect:
    def check(r: ResultEvent) -> str | None:
        e = r.error
        if (
            r.status is ResultStatus.ERROR
            and e is not None
            and (e.code == code or _job_level(r) or _random_request_error(r))
        ):
            return None
        return (
            f"EMULATOR_FAIL_{code}: expected ERROR {code}, got {r.status.value} "
            f"{e and e.code} {e and e.message[:100]}"
        )

    return check


def _expect_too_big(r: ResultEvent) -> str | None:
    e = r.error
    if r.status is ResultStatus.ERROR and e is not None:
        text = f"{e.status} {e.message}".lower()
        sized = any(w in text for w in ("large", "size", "limit", "bytes", "exceed"))
        if sized or _job_level(r) or _random_request_error(r):
            return None
    return (
        f"response over the results topic limit: expected a size ERROR, got "
        f"{r.status.value} {e and e.code} {e and e.message[:100]}"
    )


def fault_storm(cfg: Config, broker: Broker, shared: Shared) -> PhaseResult:
    res = PhaseResult("fault_storm")
    rng = random.Random(cfg.seed + 2)
    wd = cfg.workdir
    http_timeout = 3
    knobs = {
        "request_error_rate": 0.10,
        "transient_error_rate": 0.05,
        "rate_limit_rate": 0.0,  # 429 storms are switched on and off below
        "job_failure_rate": 0.10,
        "job_expiry_rate": 0.10,
        "create_reply_lost_rate": 0.10,
        "create_late_rate": 0.10,
        "create_land_delay_s": http_timeout / 3,  # lands well within the client's timeout
        "queue_delay_s": 0.3,
        "processing_delay_s": 2.0,  # slow jobs
        "per_request_delay_s": 0.002,
        "running_slots": 12,
        "latency_ms": 30,
        "seed": cfg.seed,
    }
    em = Emulator(wd / "emulator-storm.log", **knobs)
    shared.emulators.append(em)
    parts = 3
    topics = new_topics(
        "storm",
        parts,
        bootstrap=broker.bootstrap,
        result_configs={"max.message.bytes": str(RESULT_TOPIC_MAX_BYTES)},
    )
    shared.ledgers.append(f"{topics.group}.{topics.requests}.ledger")
    env = sidecar_env(
        topics,
        broker.bootstrap,
        em.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="20",
        CONNECTOR_BATCH_MAX_WAIT_S="1.5",
        CONNECTOR_HTTP_TIMEOUT_S=str(http_timeout),
        **_poll_env(cfg),
        **_guarantee_env(cfg),
    )
    replicas = Replicas(env, wd, 2, "storm", scan=shared.scan)
    shared.log_paths += replicas.log_paths
    tap = Tap(broker.bootstrap, topics.results, _isolation(cfg))
    tap.start()
    shared.taps.append(tap)
    _start_replicas(replicas, parts)
    pub = Publisher(broker.bootstrap, topics.requests)
    classes: dict[str, str] = {}
    n = cfg.storm_requests
    duration = min(90.0, max(15.0, cfg.duration_s / 3))
    began = time.monotonic()
    storming = threading.Event()

    def storms() -> None:
        on = False
        while not storming.is_set():
            on = not on
            em.config(rate_limit_rate=0.6 if on else 0.0)
            storming.wait(4.0)  # pacing: a 429 storm switches on or off every 4 s
        em.config(rate_limit_rate=0.0)

    st = threading.Thread(target=storms, name="429-storms")
    st.start()
    for i in range(n):
        rid = f"S-{i:06d}"
        roll = rng.random()
        if roll < 0.03:
            cls, extra = "fail400", "EMULATOR_FAIL"
        elif roll < 0.06:
            cls, extra = "fail503", "EMULATOR_FAIL_503"
        elif roll < 0.08:
            cls, extra = "big", f"EMULATOR_BIG_{BIG_RESPONSE}"
        else:
            cls, extra = "plain", ""
        classes[rid] = cls
        pub.request(rid, "gemini-2.5-flash", prompt(rid, extra))
        # pacing: the publisher spreads the requests evenly over the storm
        time.sleep(max(0.0, began + duration * (i + 1) / n - time.monotonic()))
    pub.flush()
    storm_for = time.monotonic() - began
    log(f"storm: {len(pub.acked)} requests acked; waiting for results")
    expect_for = {
        "plain": _expect_plain,
        "fail400": _expect_code(400),
        "fail503": _expect_code(503),
        "big": _expect_too_big,
    }
    expected: dict[str, Expect] = {rid: expect_for[classes[rid]] for rid in pub.acked}
    waited = _wait_answered(tap, set(expected), cfg.settle_s)
    storming.set()
    st.join()
    res.figures["settle_s"] = round(waited, 1)
    _settle(res, cfg, replicas, parts, em, [tap])
    pub.close()
    stats = em.stats()
    by_id = judge(res, expected, tap.snapshot(), stats["batches"]["by_display_name"], cfg.guarantee)
    per_class: dict[str, dict[str, int]] = {}
    for rid, cls in classes.items():
        if rid not in expected:
            continue
        row = per_class.setdefault(cls, {"sent": 0, "answered": 0, "ok": 0, "error": 0})
        row["sent"] += 1
        if rid in by_id:
            row["answered"] += 1
            row["ok" if by_id[rid][0].status is ResultStatus.OK else "error"] += 1
    faults = {k: v for k, v in stats.get("calls", {}).items() if k.startswith("faults.")}
    res.figures.update(
        {
            "storm_s": round(storm_for, 1),
            "by_class": per_class,
            "faults_fired": faults,
            "emulator_job_states": stats["batches"].get("by_state", {}),
            "creates": stats.get("calls", {}).get("batches.create", 0),
        }
    )
    _events_figures(res, replicas)
    em.close()
    return res


# -- 4. hostile input through a running sidecar --------------------------------------------------


@dataclass
class Hostile:
    tag: str
    kind: str
    value: bytes | None
    key: bytes | None
    headers: list[tuple[str, bytes]]
    request_id: str | None = None  # decodable: an error result is owed too
    expect_dlq: bool = True


ORIGIN_HEADERS = [("origin", b"chaos-hostile"), ("binary", b"\xff\x00\xfe")]
RESOURCE_REFS: list[tuple[str, str, dict[str, Any]]] = [
    (
        "fileUri of another project (gs)",
        "gemini-2.5-flash",
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "summarise"},
                        {
                            "fileData": {
                                "fileUri": "gs://other-project-bucket/secret.pdf",
                                "mimeType": "application/pdf",
                            }
                        },
                    ],
                }
            ]
        },
    ),
    (
        "fileUri of the Files API",
        "gemini-2.5-flash",
        {
            "contents": [
                {
                    "role": "user",
                    "parts": [
                        {"text": "summarise"},
                        {
                            "fileData": {
                                "fileUri": "https://generativelanguage.googleapis.com/v1beta/files/"
                                "other-tenant-upload",
                                "mimeType": "text/plain",
                            }
                        },
                    ],
                }
            ]
        },
    ),
    (
        "file_uri files/ name",
        "gemini-2.5-flash",
        {
            "contents": [
                {"parts": [{"file_data": {"file_uri": "files/batch-someone-elses-output"}}]}
            ]
        },
    ),
    (
        "cachedContent of another tenant",
        "gemini-2.5-flash",
        {
            "contents": [{"role": "user", "parts": [{"text": "continue"}]}],
            "cachedContent": "cachedContents/other-tenant-cache",
        },
    ),
    (
        "tunedModels of another project",
        "tunedModels/other-project-model",
        {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]},
    ),
]


def _hostile_records(
    rng: random.Random, codec: Codec, n: int, max_request_bytes: int
) -> list[Hostile]:
    def event(rid: str, body: str, model: str = "gemini-2.5-flash") -> RequestEvent:
        return RequestEvent(rid, model, Kind.GENERATE, body, "", 0, None, {"chaos": "1"}, 0)

    valid = codec.encode_request(event("x", orjson.dumps(prompt("x")).decode()))
    ledger = codec.encode_ledger(
        LedgerEntry(
            "p0-1-x",
            BatchKey(0, "gemini-2.5-flash", Kind.GENERATE),
            (1, 2),
            1,
            "g:p0-1-x",
            EntryState.INTENT,
            False,
            3,
            1,
            2,
        )
    )
    result = codec.encode_result(ResultEvent("r", ResultStatus.OK, "m", Kind.GENERATE, "{}"))
    out: list[Hostile] = []
    for i in range(n):
        tag = f"H-{i:05d}"
        k = i % 14
        key = tag.encode()
        hdr = list(ORIGIN_HEADERS)
        if k == 0:
            out.append(Hostile(tag, "random bytes", rng.randbytes(rng.randint(1, 300)), key, hdr))
        elif k == 1:
            cut = rng.randint(1, len(valid) - 1)
            out.append(Hostile(tag, "truncated avro", valid[:cut], key, hdr))
        elif k == 2:
            big = "x" * (max_request_bytes + 50_000)
            body = orjson.dumps(prompt(tag, big)).decode()
            out.append(
                Hostile(
                    tag,
                    "oversized request",
                    codec.encode_request(event(tag, body)),
                    key,
                    hdr,
                    request_id=tag,
                )
            )
        elif k == 3:
            out.append(
                Hostile(
                    tag, "confluent frame, no registry", confluent_frame(1, valid[10:]), key, hdr
                )
            )
        elif k == 4:
            out.append(
                Hostile(
                    tag,
                    "unknown fingerprint",
                    b"\xc3\x01" + rng.randbytes(8) + valid[10:],
                    key,
                    hdr,
                )
            )
        elif k == 5:
            out.append(Hostile(tag, "ledger entry in the request topic", ledger, key, hdr))
        elif k == 6:
            out.append(Hostile(tag, "result event in the request topic", result, key, hdr))
        elif k == 7:
            out.append(
                Hostile(
                    tag,
                    "json with unknown field",
                    orjson.dumps({"request_id": tag, "model": "m", "body": {}, "evil": 1}),
                    key,
                    hdr,
                )
            )
        elif k == 8:
            depth = (300, 5000)[(i // 14) % 2]
            out.append(
                Hostile(
                    tag,
                    f"json body nested {depth} deep",
                    b'{"request_id": "' + tag.encode() + b'", "model": "m", "body": '
                    b'{"contents": ' + b"[" * depth + b"]" * depth + b"}}",
                    key,
                    hdr,
                )
            )
        elif k == 9:
            out.append(Hostile(tag, "empty value", b"", key, hdr))
        elif k == 10:
            out.append(Hostile(tag, "null value (tombstone)", None, key, hdr))
        elif k == 11:
            out.append(
                Hostile(
                    tag,
                    "body not JSON",
                    codec.encode_request(event(tag, "{not json")),
                    key,
                    hdr,
                    request_id=tag,
                )
            )
        elif k == 12:
            out.append(
                Hostile(
                    tag,
                    "bad model name",
                    codec.encode_request(
                        event(tag, orjson.dumps(prompt(tag)).decode(), model="../../etc/passwd")
                    ),
                    key,
                    hdr,
                    request_id=tag,
                )
            )
        else:
            mutated = bytearray(valid)
            for _ in range(3):
                mutated[rng.randrange(10, len(mutated))] = rng.randrange(256)
            out.append(
                Hostile(
                    tag,
                    "bit-flipped avro (may still decode)",
                    bytes(mutated),
                    key,
                    hdr,
                    expect_dlq=False,
                )
            )
    return out


def hostile_input(cfg: Config, broker: Broker, shared: Shared) -> PhaseResult:
    res = PhaseResult("hostile_input")
    rng = random.Random(cfg.seed + 3)
    wd = cfg.workdir
    codec = Codec()
    max_request_bytes = 200_000
    em = Emulator(
        wd / "emulator-hostile.log",
        queue_delay_s=0.1,
        processing_delay_s=0.3,
        per_request_delay_s=0,
        seed=cfg.seed,
    )
    shared.emulators.append(em)
    parts = 3
    topics = new_topics("hostile", parts, bootstrap=broker.bootstrap)
    shared.ledgers.append(f"{topics.group}.{topics.requests}.ledger")
    env = sidecar_env(
        topics,
        broker.bootstrap,
        em.base_url,
        CONNECTOR_BATCH_MAX_REQUESTS="10",
        CONNECTOR_BATCH_MAX_WAIT_S="1.0",
        CONNECTOR_MAX_REQUEST_BYTES=str(max_request_bytes),
        **_guarantee_env(cfg),
    )
    replicas = Replicas(env, wd, 1, "hostile", scan=shared.scan)
    shared.log_paths += replicas.log_paths
    tap = Tap(broker.bootstrap, topics.results, _isolation(cfg))
    dlq = Tap(broker.bootstrap, topics.dlq, _isolation(cfg))
    tap.start()
    dlq.start()
    shared.taps += [tap, dlq]
    _start_replicas(replicas, parts)
    hostile = _hostile_records(rng, codec, cfg.hostile_records, max_request_bytes)
    pub = Publisher(broker.bootstrap, topics.requests)
    valid_ids: list[str] = []
    ref_ids: dict[str, str] = {}
    sequence: list[tuple[str, Any]] = []
    for rec in hostile:  # valid, hostile, valid, hostile...: the partition must keep flowing
        sequence.append(("valid", None))
        sequence.append(("hostile", rec))
    sequence.append(("valid", None))
    # Resource references go first and are awaited, so a poison record later in the stream
    # cannot hide whether they were refused.
    for j, ref in enumerate(RESOURCE_REFS):
        p = j % parts
        label, model, body = ref
        rid = f"R-{j:03d}"
        ref_ids[rid] = label
        pub.request(rid, model, body, partition=p)
    pub.flush()
    _wait_answered(tap, set(ref_ids) & set(pub.acked), 45)
    for i, (what, item) in enumerate(sequence):
        p = i % parts
        if what == "hostile":
            pub.send(item.tag, item.value, item.key, partition=p, headers=item.headers)
        else:
            rid = f"V-{i:05d}"
            valid_ids.append(rid)
            pub.request(rid, "gemini-2.5-flash", prompt(rid), partition=p)
    pub.flush()
    owed_results = {rid for rid in valid_ids if rid in pub.acked}
    owed_results |= {rec.request_id for rec in hostile if rec.request_id and rec.tag in pub.acked}
    owed_results |= {rid for rid in ref_ids if rid in pub.acked}
    log(
        f"hostile: {len(hostile)} hostile records, {len(valid_ids)} valid, {len(ref_ids)} "
        "resource references sent"
    )
    waited = _wait_answered(tap, owed_results, cfg.settle_s)

    wait_for(lambda: len(dlq.snapshot()) >= sum(1 for x in hostile if x.expect_dlq), 15)
    res.figures["settle_s"] = round(waited, 1)
    _settle(res, cfg, replicas, parts, em, [tap, dlq])
    pub.close()
    stats = em.stats()

    def expect_valid(r: ResultEvent) -> str | None:
        return expect_ok(r)

    def expect_error(r: ResultEvent) -> str | None:
        return None if r.status is ResultStatus.ERROR else "invalid request answered OK"

    def expect_ref(r: ResultEvent) -> str | None:
        if r.status is ResultStatus.ERROR and r.error and r.error.message:
            return None
        return f"resource reference ({ref_ids.get(r.request_id)}) was not refused: {r.status.value}"

    expected: dict[str, Expect] = {}
    for rid in valid_ids:
        if rid in pub.acked:
            expected[rid] = expect_valid
    for rec in hostile:
        if rec.request_id and rec.tag in pub.acked:
            expected[rec.request_id] = expect_error
    for rid in ref_ids:
        if rid in pub.acked:
            expected[rid] = expect_ref
    # bit-flipped records that still decode are answered under whatever id they carry
    judge(
        res,
        expected,
        [r for r in tap.snapshot() if _rid(codec, r) in expected],
        stats["batches"]["by_display_name"],
        cfg.guarantee,
    )

    # dead letters: one per hostile record, at its coordinates, value and headers unchanged
    dl_by_coord: dict[tuple[int, int], list[Raw]] = {}
    for r in dlq.snapshot():
        try:
            coord = (
                int(_hdr(r, "__connect.errors.partition") or -1),
                int(_hdr(r, "__connect.errors.offset") or -1),
            )
        except ValueError:
            coord = (-1, -1)
        dl_by_coord.setdefault(coord, []).append(r)
    missing: dict[str, int] = Counter()
    bad_prov: list[str] = []
    found = 0
    for rec in hostile:
        if not rec.expect_dlq or rec.tag not in pub.acked:
            continue
        coord = pub.acked[rec.tag]
        got = dl_by_coord.get(coord)
        if not got:
            missing[rec.kind] += 1
            continue
        found += 1
        d = got[0]
        problems = []
        if _hdr(d, "__connect.errors.topic") != topics.requests:
            problems.append("topic header")
        if not _hdr(d, "__connect.errors.exception.class.name"):
            problems.append("exception class header")
        if (d.value or b"") != (rec.value or b""):
            problems.append("value changed")
        if d.key != rec.key:
            problems.append("key changed")
        for k, v in rec.headers:
            if (k, v) not in d.headers:
                problems.append(f"original header {k} lost")
        if problems:
            bad_prov.append(f"{rec.kind}: {', '.join(problems)}")
    dl_dups = sum(len(v) - 1 for v in dl_by_coord.values() if len(v) > 1)
    refs_refused = sum(1 for rid in ref_ids if rid in expected)
    res.figures.update(
        {
            "hostile_records": len(hostile),
            "dead_letters": len(dlq.snapshot()),
            "dead_letters_matched": found,
            "dead_letters_missing": dict(missing),
            "dead_letter_duplicates": dl_dups,
            "valid_interleaved": len(valid_ids),
            "resource_references": refs_refused,
        }
    )
    if missing:
        res.violations.append(
            f"poison records: {sum(missing.values())} hostile records never "
            f"reached the dead-letter topic, by kind: {dict(missing)}"
        )
    if bad_prov:
        res.violations.append(
            f"dead-letter provenance: {len(bad_prov)} records (e.g. {bad_prov[:3]})"
        )
    _events_figures(res, replicas)
    em.close()
    return res


def _hdr(r: Raw, name: str) -> str | None:
    for k, v in r.headers:
        if k == name:
            return v.decode("utf-8", "replace") if v is not None else None
    return None


def _rid(codec: Codec, r: Raw) -> str | None:
    try:
        return codec.decode_result(r.value or b"").request_id
    except Exception:
        return None
