"""The deterministic simulator: one seed, one world, one schedule of passes and faults.

`python -m tests.sim --seed N` replays seed N and prints its trace; `--seeds N` runs seeds
0..N-1 and prints the failing ones. Everything random comes from `random.Random(seed)`: the
world's shape, the schedule, the replicas' jitter and job-id nonces, the emulator's seed.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from unittest import mock

import orjson
import structlog

from connector.config import Settings
from connector.core.control import Command, Target, encode
from connector.core.records import Kind, RequestEvent
from connector.emulator import files as emu_files
from connector.emulator import jobs as emu_jobs
from connector.emulator.config import EmulatorConfig
from connector.testing import InProcessEmulator, ManualClock, MemoryKafka, MemoryLedger
from connector.testing_group import MemoryCluster
from tests.sim.invariants import (
    CONFLICT,
    CREATED_TWICE,
    EOS_DUPLICATE,
    LOST,
    TWO_JOBS,
    UNCOVERED,
    violations,
)
from tests.sim.world import HOOKED, KAFKA_HOOKED, Replica, World, warm_gemini

SESSION_TIMEOUT_S = 10.0
FAULT_STEPS = (20, 50)
"""How many scheduler actions the fault phase takes (drawn per seed)."""
QUIESCE_ROUNDS = 150
"""Rounds (every live replica steps, then 2 s pass) to drive a run to its end, faults off."""
ROUND_S = 2.0
EMULATOR_EPOCH_S = 1_700_000_000.0
CALL_WEIGHTS = {"create": 3, "commit_transaction": 4, "get": 2, "delete_job": 2}
"""How often an armed fault waits for each call (others: 1)."""


@dataclass
class Outcome:
    seed: int
    shape: dict[str, object]
    trace: list[str]
    violations: list[tuple[str, str]] = field(default_factory=list)
    requests: int = 0
    suspects: list[str] = field(default_factory=list)
    """Which findings of issue 16 the run's evidence points at (a heuristic; see
    docs/simulator.md); confirm by reading the trace."""
    notes: list[str] = field(default_factory=list)
    """What was left at the end (live ledger entries, provider jobs), for a failing seed."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        lines = [f"seed {self.seed}: {'ok' if self.ok else 'VIOLATED'} {self.shape}"]
        lines += [f"  ! {kind}: {detail}" for kind, detail in self.violations]
        if self.suspects:
            lines.append(f"  suspects: {', '.join(self.suspects)}")
        lines += [f"  left: {n}" for n in self.notes]
        lines += ["  trace:"] + [f"    {t}" for t in self.trace]
        lines.append(f"  replay: python -m tests.sim --seed {self.seed}")
        return "\n".join(lines)


def shape_of(rng: random.Random) -> dict[str, object]:
    """The world a seed draws: replicas, partitions, guarantee, load and provider limits."""
    return {
        "replicas": rng.randint(2, 4),
        "partitions": rng.randint(1, 3),
        "exactly_once": rng.random() < 0.5,
        "requests": rng.randint(3, 9),
        "batch": rng.randint(1, 4),
        "files": rng.random() < 0.3,
        "token_cap": rng.random() < 0.15,
        "big_results": rng.random() < 0.1,
        "steps": rng.randint(*FAULT_STEPS),
    }


def settings_for(shape: dict[str, object]) -> Settings:
    return Settings(
        gemini_base_url=InProcessEmulator.base_url,
        group_id="sim",
        processing_guarantee="exactly_once" if shape["exactly_once"] else "at_least_once",
        batch_max_requests=int(str(shape["batch"])),
        batch_max_wait_s=1.0,
        batch_inline_max_bytes=64 if shape["files"] else 1_000_000,
        http_timeout_s=10.0,
        pass_budget_s=5.0,
        poll_initial_s=1.0,
        poll_max_s=4.0,
        delivery_chunk_requests=2,
        max_failed_retries=2,
        max_attempts=4,
    )


def quiet_logs() -> None:
    """The sidecar's logs cost more than the simulation itself: keep only errors' absence."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))


def simulate(seed: int) -> Outcome:
    """Run seed `seed` to quiescence and check the invariants."""
    # The emulator names jobs and files with `secrets`; the sidecar orders some work by
    # those names, so a replay needs them drawn from the seed too.
    names = random.Random(seed ^ 0x5EED)
    warm_gemini()

    def new_id(length: int = 12) -> str:
        return "".join(names.choice(emu_files._ALPHABET) for _ in range(length))

    with (
        mock.patch.object(emu_jobs, "new_id", new_id),
        mock.patch.object(emu_files, "new_id", new_id),
    ):
        return _simulate(seed)


def _simulate(seed: int) -> Outcome:
    rng = random.Random(seed)
    shape = shape_of(rng)
    world = build(seed, shape, rng)
    out = Outcome(seed, shape, world.trace)
    requested: list[str] = []
    try:
        for slot in range(int(str(shape["replicas"]))):
            world.start(slot)
        _fault_phase(world, shape, requested)
        _quiesce(world, requested)
        out.violations = check(world, requested)
        if out.violations:
            out.notes = _notes(world)
            out.suspects = suspects(out, world)
    finally:
        world.emulator.close()
    out.requests = len(requested)
    return out


def build(seed: int, shape: dict[str, object], rng: random.Random) -> World:
    """The world of `shape`: topics, group, emulator, clock; no replica started yet."""
    s = settings_for(shape)
    n_parts = int(str(shape["partitions"]))
    kafka = MemoryKafka()
    for topic in (s.request_topic, s.ledger, s.result_topic, s.dlq_topic):
        kafka.create_topic(topic, n_parts)
    kafka.create_topic(s.control, 1)
    cluster = MemoryCluster(kafka, s.request_topic, SESSION_TIMEOUT_S)
    # A prompt's tokens are estimated at bytes/4: a cap of ~2 prompts means a batch of
    # three or more can never be admitted whole (finding A11).
    cap = 100 if shape["token_cap"] else 3_000_000
    emulator = InProcessEmulator(
        EmulatorConfig(seed=seed, queue_delay_s=0.5, processing_delay_s=2.0, enqueued_token_cap=cap)
    )
    world = World(s, ManualClock(), kafka, cluster, emulator, rng, [])
    # The emulator's clock is wall time plus an offset; on a loaded machine jobs would end
    # at other points of the schedule. Tie it to the world's manual clock instead.
    clock = world.clock
    emulator.service.clock.now = lambda: EMULATOR_EPOCH_S + clock.now  # type: ignore[method-assign]
    world.result_bytes = 2_000 if shape["big_results"] else 1_048_576
    world.on_freeze = _freeze
    world.on_rebalance = _rebalance
    return world


def check(world: World, requested: list[str]) -> list[tuple[str, str]]:
    """The invariants over what the world's topics and the emulator hold now."""
    s, kafka = world.settings, world.kafka
    results = [world.codec.decode_result(r.value or b"") for r in kafka.records(s.result_topic)]
    dead = [(r.key or b"").decode() for r in kafka.records(s.dlq_topic)]
    created = {
        k: v
        for k, v in world.emulator.created_by_display_name().items()
        if k not in world.deleted  # created again after a third party deleted it
    }
    out = violations(requested, results, dead, created, s.exactly_once)
    if world.uncovered:
        out.append((UNCOVERED, f"{len(world.uncovered)} times: {world.uncovered[0]}"))
    return out


_FROZEN_BEFORE_CREATE = re.compile(r" freeze (\S+) before create$")


def suspects(out: Outcome, world: World) -> list[str]:
    """Tag a failing run with the findings of issue 16 its evidence matches (heuristic):

    - A11: requests lost in a world with a small enqueued-token cap, a job left unadmitted;
    - A1: a create by a replica the group gave the partition away from, whose partition
      state was rebuilt after a Kafka failure (committed offset -1: its claim was unfenced);
    - A3: a job the sidecar deleted was resubmitted (`.../rN` created after its delete),
      unless claim-create explains the second create;
    - A2: a duplicate after an operator cancel, a 404 or a results file gone (the delivery
      cursor ignored);
    - A4: a job answering a duplicated request (or created twice) was created from an
      INTENT whose writer failed on Kafka (forgetting its partitions) after writing it and
      before any create of it: the retraction a lost partition owes was skipped;
    - claim-create: a display name created twice, the second time by a replica frozen
      right before its `create`, after a claim that was valid and fresh: the one window
      docs/design.md names in its crash table ("claim committed and create": nothing fences
      Gemini itself). Tagged, not excused: it is a second paid job.
    """
    kinds = {k for k, _ in out.violations}
    text = "\n".join(world.trace)
    tags: list[str] = []
    if LOST in kinds and out.shape["token_cap"]:
        tags.append("A11")
    dup = kinds & {TWO_JOBS, CREATED_TWICE, EOS_DUPLICATE, CONFLICT}
    if any(call == "create" and committed == -1 for _, call, _, committed in world.zombie_calls):
        tags.append("A1")
    frozen = {m.group(1) for line in world.trace if (m := _FROZEN_BEFORE_CREATE.search(line))}
    if CREATED_TWICE in kinds and any(
        call == "create" and committed != -1 and name in frozen
        for name, call, _, committed in world.zombie_calls
    ):
        tags.append("claim-create")
    deleted = {line.rsplit(" ", 1)[-1] for line in world.trace if " delete_job " in line}
    if "claim-create" not in tags and any(f"create {job}/r" in text for job in deleted):
        # Not when a zombie's create after a valid claim explains the second create: a
        # `.../rN` of a job that ended FAILED or EXPIRED follows its delete anyway (seed 1880).
        tags.append("A3")
    if dup and "claim-create" not in tags and _forgotten_intent_created(out, world):
        tags.append("A4")
    if (
        dup
        and not tags
        and any(w in text for w in ("operator cancels", "deleted (404)", "results file of"))
    ):
        tags.append("A2")
    if not tags:
        tags.append("unclassified")
    return tags


_BATCH = re.compile(r"batches/\w+")
_TWICE = re.compile(r":(\S+) created \d+ times")


def _forgotten_intent_created(out: Outcome, world: World) -> bool:
    """Finding A4's evidence: a job behind a duplicate (a request answered by two jobs, or
    a display name created twice) was created from an INTENT its writer forgot in a Kafka
    failure (the failure came after the INTENT landed and before the job's first create):
    nothing retracted it when that replica lost the partition, and the next owner created
    it next to its own job for the same requests."""
    details = "\n".join(d for _, d in out.violations)
    jobs = {world.created[b][1] for b in _BATCH.findall(details) if b in world.created}
    jobs |= set(_TWICE.findall(details))
    for job in jobs:
        if job not in world.intents:
            continue
        writer, written = world.intents[job]
        first_create = min((at for _, j, at in world.created.values() if j == job), default=0)
        if any(
            who == writer and written <= failed <= first_create
            for who, failed in world.kafka_failures
        ):
            return True
    return False


def _notes(world: World) -> list[str]:
    s = world.settings
    out = []
    for p in range(world.kafka.partitions[s.request_topic]):
        ledger = MemoryLedger(world.kafka, s.ledger, None, world.codec)  # type: ignore[arg-type]
        for e in ledger.load(p).values():
            out.append(f"ledger p{p} {e.job_id} {e.state.value} offsets={list(e.offsets)}")
    for job in _provider_jobs(world):
        out.append(
            f"provider {getattr(job, 'display_name', '')} {getattr(job, 'state', '')} "
            f"tokens={getattr(job, 'tokens', '')}"
        )
    calls = world.emulator.calls()
    out.append(f"provider calls {calls}")
    group = world.cluster.group
    for p in range(world.kafka.partitions[s.request_topic]):
        owner = group.owner(p)
        out.append(
            f"p{p}: end {len(world.kafka.records(s.request_topic, p))}, committed "
            f"{world.kafka.committed.get((s.request_topic, p))}, owner "
            f"{world.member_name(owner) if owner else None}"
        )
    for r in world.live():
        for p, st in sorted(r.sidecar.ctx.owned.items()):
            jobs = {j: (t.entry.state.value, list(t.entry.offsets)) for j, t in st.jobs.items()}
            out.append(
                f"{r.name} owns p{p}: committed {st.committed}, {st.watermark!r}, paused "
                f"{p in r.consumer.paused}, position {r.consumer.positions.get(p)}, jobs {jobs}"
            )
    return out


# -- the fault phase -------------------------------------------------------------------------


def _publish(world: World, shape: dict[str, object], requested: list[str]) -> None:
    rng = world.rng
    rid = f"q{len(requested)}"
    prompt = f"prompt {rid} " + "x" * rng.randint(0, 40)
    if shape["big_results"] and rng.random() < 0.5:
        prompt += " EMULATOR_BIG_4000"
    body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    ev = RequestEvent(
        request_id=rid,
        model="gemini-2.5-flash",
        kind=Kind.GENERATE,
        body=orjson.dumps(body).decode(),
    )
    s = world.settings
    n = world.kafka.partitions[s.request_topic]
    rec = world.kafka.append(
        s.request_topic, world.codec.encode_request(ev), rid.encode(), partition=rng.randrange(n)
    )
    requested.append(rid)
    world.log(f"publish {rid} (p{rec.partition}@{rec.offset})")


def _freeze(world: World, r: Replica) -> None:
    """`r` stops mid-call past the session timeout: the group expels it, the others run on."""
    group = world.cluster.group
    others = [o for o in world.live() if o is not r]
    r.up = False  # no heartbeats, no passes while frozen
    try:
        for _ in range(int(SESSION_TIMEOUT_S / 2) + 1):
            world.advance(2.0)
        if r.consumer.member_id in group.members:
            group.expel(r.consumer.member_id)
            world.log(f"group expels {r.name} (poll interval passed)")
        for _ in range(world.rng.randint(2, 8)):
            for o in others:
                world.step(o)
            world.advance(world.rng.choice((0.5, 1.0, 3.0)))
    finally:
        r.up = True


def _rebalance(world: World, r: Replica) -> None:
    """While `r` is inside a call, the group starts to change: a replica joins (or, with
    four, one leaves); once `r`'s pass ends the others run a pass each; `r` learns of it at
    its next poll.

    Kafka's eager protocol completes the rebalance a join or a leave starts only once every
    live member has rejoined (or been expelled, `max.poll.interval.ms` later), and `r`, a
    live member inside its pass, rejoins at its next poll: nobody is handed `r`'s
    partitions before its pass ends, so its acked writes always precede the new owner's
    ledger load. So the change waits for the end of `r`'s pass (completing it at once let a
    new owner load the ledger before `r`'s INTENT landed: sim seed 10922). A member frozen
    past the session timeout is the simulator's freeze, not this."""

    def change() -> None:
        world.log(f"rebalance completes ({r.name}'s pass ended)")
        live = [o for o in world.live() if o is not r]
        if len(world.live()) < 4:
            live.append(world.start(_free_slot(world)))
        elif live:
            gone = world.rng.choice(live)
            _stop(world, gone)
            live.remove(gone)
        for o in live:
            world.step(o)

    world.after_pass.append((r, change))


def _stop(world: World, r: Replica) -> None:
    """SIGTERM: drain, then leave the group cleanly."""
    r.armed.clear()
    r.up = False
    r.sidecar.stop()
    try:
        r.sidecar._drain()  # what Sidecar.loop does on SIGTERM
    except Exception as exc:
        world.log(f"drain of {r.name} failed: {exc!r}")
    r.consumer.close()
    world.log(f"stop {r.name} (clean leave)")


def _provider_jobs(world: World) -> list[object]:
    jobs, _ = world.emulator.service.jobs.list(1000, None)
    return list(jobs)


def _provider_fault(world: World, kind: str) -> None:
    """Something happens at the provider to a job the sidecar knows."""
    rng = world.rng
    jobs = _provider_jobs(world)
    if not jobs:
        return
    job = rng.choice(jobs)
    name = getattr(job, "job_id", "")
    state = getattr(job, "state", "")
    store = world.emulator.service.jobs
    if kind in ("EXPIRED", "FAILED") and state in ("PENDING", "RUNNING"):
        store.force(name, kind)
        world.log(f"provider: {getattr(job, 'display_name', '')} forced {kind}")
    elif kind == "404":
        store.delete(name)
        world.deleted.add(str(getattr(job, "display_name", "")))
        world.log(f"provider: {getattr(job, 'display_name', '')} deleted (404)")
    elif kind == "file-gone" and state == "SUCCEEDED":
        output = getattr(job, "output", None) or {}
        file_name = output.get("responsesFile") if isinstance(output, dict) else None
        if file_name:
            try:
                world.emulator.service.files.delete(str(file_name))
            except Exception:  # already gone
                return
            world.log(f"provider: results file of {getattr(job, 'display_name', '')} gone")


def _cancel(world: World, requested: list[str]) -> None:
    rng = world.rng
    s = world.settings
    jobs = _provider_jobs(world)
    if jobs and rng.random() < 0.5:
        display = str(getattr(rng.choice(jobs), "display_name", ""))
        target, ident = Target.JOB, display.split(":", 1)[-1]
    elif requested:
        target, ident = Target.REQUEST, rng.choice(requested)
    else:
        return
    cmd = Command(target, ident, "sim", world.clock.wall_ms(), "sim")
    world.kafka.append(s.control, encode(cmd), cmd.key.encode(), partition=0)
    world.log(f"operator cancels {target.value} {ident}")


def _arm(world: World, fault: str) -> None:
    rng = world.rng
    live = world.live()
    if not live:
        return
    r = rng.choice(live)
    # The claim (commit_transaction) and the create are where ownership must be proven:
    # strike there most often.
    calls = (*HOOKED, *KAFKA_HOOKED, "any")
    call = rng.choices(calls, [CALL_WEIGHTS.get(c, 1) for c in calls])[0]
    when = "before" if call in KAFKA_HOOKED else rng.choice(("before", "after"))
    r.armed.append((fault, call, when))
    world.log(f"arm {fault} of {r.name} at {when} {call}")


def _fault_phase(world: World, shape: dict[str, object], requested: list[str]) -> None:
    rng = world.rng
    s = world.settings
    emulator = world.emulator
    n_requests = int(str(shape["requests"]))
    outage_left = 0
    outage_began = 0.0
    isolated_left = 0
    isolated: Replica | None = None
    knob_left = 0
    actions: list[tuple[float, str]] = [
        (40, "pass"),
        (10, "advance"),
        (12, "publish"),
        (3, "kill"),
        (3, "arm-kill"),
        (3, "arm-freeze"),
        (2, "arm-rebalance"),
        (1.5, "outage"),
        (1.5, "join-or-leave"),
        (1, "grow"),
        (1.5, "cancel"),
        (2, "provider-knob"),
        (1, "EXPIRED"),
        (1, "FAILED"),
        (1, "404"),
        (1, "file-gone"),
        (2, "restart"),
    ]
    names = [a for _, a in actions]
    # Swarm testing: each seed turns some faults off and makes others three times as
    # likely, so rare combinations (an outage, then a freeze before a claim) come up.
    scale = [1 if a in ("pass", "advance", "publish") else rng.choice((0, 1, 1, 3)) for a in names]
    weights = [w * k for (w, _), k in zip(actions, scale, strict=True)]
    world.log(
        f"swarm: off {[a for a, k in zip(names, scale, strict=True) if k == 0]}, "
        f"x3 {[a for a, k in zip(names, scale, strict=True) if k == 3]}"
    )
    for _ in range(int(str(shape["steps"]))):
        action = rng.choices(names, weights)[0]
        if action == "pass":
            live = world.live()
            if live:
                r = rng.choice(live)
                world.log(f"pass {r.name}")
                world.step(r)
        elif action == "advance":
            world.advance(rng.choice((0.5, 1.0, 2.0, 5.0)))
        elif action == "publish" and len(requested) < n_requests:
            _publish(world, shape, requested)
        elif action == "kill" and world.live():
            world.kill(rng.choice(world.live()))
        elif action == "arm-kill":
            _arm(world, "kill")
        elif action == "arm-freeze":
            _arm(world, "freeze")
        elif action == "arm-rebalance" and not world.cluster.down:
            _arm(world, "rebalance")
        elif action == "outage" and not world.cluster.down:
            world.cluster.down = True
            outage_began = world.clock.now
            outage_left = rng.randint(2, 8)
            world.log("kafka outage begins")
        elif action == "join-or-leave" and not world.cluster.down:
            live = world.live()
            if len(live) < 4 and (len(live) < 2 or rng.random() < 0.5):
                world.start(_free_slot(world))
            elif live:
                _stop(world, rng.choice(live))
        elif action == "grow":
            group = world.cluster.group
            if group.partitions() < 4 and not world.cluster.down:
                n = group.partitions() + 1
                for topic in (s.ledger, s.result_topic, s.dlq_topic):
                    world.kafka.create_topic(topic, n)
                group.add_partitions(n)
                world.log(f"request topic grows to {n} partitions")
        elif action == "cancel":
            _cancel(world, requested)
        elif action == "provider-knob" and knob_left == 0:
            knob = rng.choice(
                (
                    {"transient_error_rate": 0.5},
                    {"create_reply_lost_rate": 1.0},
                    {"create_late_rate": 1.0, "create_land_delay_s": 8.0},
                    {"rate_limit_rate": 1.0},
                )
            )
            emulator.update_config(**knob)
            knob_left = rng.randint(2, 6)
            world.log(f"provider fault {knob}")
        elif action in ("EXPIRED", "FAILED", "404", "file-gone"):
            _provider_fault(world, action)
        elif action == "restart" and not world.cluster.down:
            dead = {r.slot for r in world.replicas if not r.up} - {r.slot for r in world.live()}
            if dead:
                world.start(min(dead))
        if outage_left:
            outage_left -= 1
            if outage_left == 0:
                world.cluster.down = False
                world.log("kafka outage ends")
                if world.live() and rng.random() < 0.5:
                    # One replica still cannot reach the group coordinator for a while.
                    isolated = rng.choice(world.live())
                    isolated.consumer.isolated = True
                    isolated_left = rng.randint(3, 12)
                    world.log(f"{isolated.name} cut off from the group coordinator")
                    member = isolated.consumer.member_id
                    if member in world.cluster.group.members:
                        # Its session lapsed in the outage; the others rejoin without it.
                        world.log(f"group expels {isolated.name} (session lapsed in the outage)")
                        world.cluster.group.expel(member or "")
                if world.clock.now - outage_began > SESSION_TIMEOUT_S:
                    # No heartbeat reached the coordinator: every member's session ended.
                    for member in list(world.cluster.group.members):
                        world.log(f"group expels {world.member_name(member)} (outage)")
                        world.cluster.group.expel(member)
        if isolated_left:
            isolated_left -= 1
            if isolated_left == 0 and isolated is not None:
                isolated.consumer.isolated = False
                world.log(f"{isolated.name} reaches the group coordinator again")
        if knob_left:
            knob_left -= 1
            if knob_left == 0:
                _calm(world)
    while len(requested) < n_requests:
        _publish(world, shape, requested)


def _free_slot(world: World) -> int:
    used = {r.slot for r in world.live()}
    return min(set(range(8)) - used)


def _calm(world: World) -> None:
    world.emulator.update_config(
        transient_error_rate=0.0,
        create_reply_lost_rate=0.0,
        create_late_rate=0.0,
        rate_limit_rate=0.0,
    )
    world.log("provider calm")


def _quiesce(world: World, requested: list[str]) -> None:
    """Faults off: Kafka up, provider calm, armed faults dropped, dead slots restarted; run
    until every request is answered (and a little longer, so late duplicates show)."""
    world.cluster.down = False
    for r in world.replicas:
        r.consumer.isolated = False
    _calm(world)
    for r in world.replicas:
        r.armed.clear()
    if not world.live():
        world.start(0)
    world.log("quiesce")
    answered_at: int | None = None
    answered = _answered(world)
    for i in range(QUIESCE_ROUNDS):
        for r in world.live():
            world.step(r)
        world.advance(ROUND_S)
        if answered_at is None and answered(set(requested)):
            answered_at = i
        if answered_at is not None and i - answered_at >= 4:
            break
    world.log(f"quiesced after {i + 1} rounds")


def _answered(world: World) -> Callable[[set[str]], bool]:
    s = world.settings

    def check(wanted: set[str]) -> bool:
        seen = {(r.key or b"").decode() for r in world.kafka.records(s.dlq_topic)}
        for r in world.kafka.records(s.result_topic):
            seen.add(world.codec.decode_result(r.value or b"").request_id)
        return wanted <= seen

    return check
