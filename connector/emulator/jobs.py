"""Batch jobs and their lifecycle on the emulator clock.

States are computed lazily: every read first replays the scheduler up to "now" as a small
discrete-event simulation (queue delay, a fixed number of running slots taken by the
highest `priority` first, processing time, expiry). Nothing runs in the background, so the
clock can jump 48 hours and every job lands exactly where the real timeline would put it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .clock import Clock
from .config import EmulatorConfig
from .faults import chance, triggered
from .files import new_id
from .wire import GRPC_CODE, ApiError, JsonObj

ACTIVE = ("PENDING", "RUNNING")
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED")
_INF = float("inf")


@dataclass(eq=False)
class Job:
    """One batch: its input, schedule, state and (once materialized) output."""

    job_id: str
    seq: int
    kind: str  # "generate" | "embed"
    model: str
    display_name: str
    priority: int
    created: float
    ready_at: float
    request_count: int
    tokens: int
    outcome: str  # the terminal state it will reach: SUCCEEDED, FAILED or EXPIRED
    inline: list[Any] | None = None
    input_file: str | None = None
    input_path: Path | None = None
    state: str = "PENDING"
    started: float | None = None
    due: float | None = None
    ended: float | None = None
    updated: float = 0.0
    error: JsonObj | None = None
    output: JsonObj | None = None
    succeeded: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        """`batches/ID`."""
        return f"batches/{self.job_id}"


def _outcome(cfg: EmulatorConfig, display_name: str, seq: int) -> str:
    """The terminal state a new job will reach: triggers first, then the seeded rates."""
    if triggered(cfg.job_expire_trigger, display_name):
        return "EXPIRED"
    if triggered(cfg.job_fail_trigger, display_name):
        return "FAILED"
    if chance(cfg.seed, "job_expiry", seq, cfg.job_expiry_rate):
        return "EXPIRED"
    if (
        cfg.job_failure_rate > 0
        and random.Random(f"{cfg.seed}:job:{seq}").random() < cfg.job_failure_rate
    ):
        return "FAILED"
    return "SUCCEEDED"


class JobStore:
    """All jobs, the scheduler and the limits checked at create."""

    def __init__(self, config: Callable[[], EmulatorConfig], clock: Clock) -> None:
        self._config = config
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._pending: list[Job] = []
        self._running: list[Job] = []
        self._seq = 0
        self.lock = threading.RLock()
        self.created_total = 0
        self.created_by_display_name: Counter[str] = Counter()

    # -- create ---------------------------------------------------------------------------

    def create(
        self,
        *,
        kind: str,
        model: str,
        display_name: str,
        priority: int,
        request_count: int,
        tokens: int,
        inline: list[Any] | None = None,
        input_file: str | None = None,
        input_path: Path | None = None,
        land_delay_s: float = 0.0,
    ) -> Job:
        """Enqueue a new job after the concurrency and enqueued-token checks (429).

        With `land_delay_s` the job is still in flight inside the service: it is created (and
        counted) now but exists for readers only that much later, as its createTime says.
        """
        cfg = self._config()
        with self.lock:
            now = self._clock.now()
            self._advance(now)
            landed = now + max(land_delay_s, 0.0)
            active = self._pending + self._running
            if len(active) >= cfg.max_concurrent_jobs:
                raise ApiError(
                    429,
                    f"Too many concurrent batch jobs: at most {cfg.max_concurrent_jobs} "
                    "may be pending or running.",
                )
            queued = sum(j.tokens for j in active if j.model == model)
            if queued + tokens > cfg.enqueued_token_cap:
                raise ApiError(
                    429,
                    f"Enqueued token limit of {cfg.enqueued_token_cap} for {model} exceeded "
                    f"({queued} queued, {tokens} requested).",
                )
            self._seq += 1
            outcome = _outcome(cfg, display_name, self._seq)
            job = Job(
                job_id=new_id(20),
                seq=self._seq,
                kind=kind,
                model=model,
                display_name=display_name,
                priority=priority,
                created=landed,
                ready_at=landed + cfg.queue_delay_s,
                request_count=request_count,
                tokens=tokens,
                outcome=outcome,
                inline=inline,
                input_file=input_file,
                input_path=input_path,
                updated=landed,
            )
            self._jobs[job.job_id] = job
            self._pending.append(job)
            self.created_total += 1
            self.created_by_display_name[display_name] += 1
            return job

    # -- reads ----------------------------------------------------------------------------

    def get(self, job_id: str) -> Job:
        """The job with its state brought up to date, or 404 (also while it has not landed)."""
        with self.lock:
            now = self._clock.now()
            self._advance(now)
            job = self._jobs.get(job_id)
        if job is None or job.created > now:
            raise ApiError(404, f"Batch batches/{job_id} not found.", "NOT_FOUND")
        return job

    def list(self, page_size: int, token: str | None) -> tuple[list[Job], str | None]:
        """Newest first; the token is the sequence number of the last job returned."""
        with self.lock:
            now = self._clock.now()
            self._advance(now)
            jobs = sorted(
                (j for j in self._jobs.values() if j.created <= now), key=lambda j: -j.seq
            )
        if token:
            try:
                after = int(token)
            except ValueError:
                raise ApiError(400, "Invalid page token.") from None
            jobs = [j for j in jobs if j.seq < after]
        page = jobs[:page_size]
        more = len(jobs) > page_size
        return page, (str(page[-1].seq) if more and page else None)

    def stats(self) -> JsonObj:
        """Counts for the control API."""
        with self.lock:
            now = self._clock.now()
            self._advance(now)
            landed = [j for j in self._jobs.values() if j.created <= now]
            by_state = Counter(j.state for j in landed)
            return {
                "created_total": self.created_total,
                "by_display_name": dict(self.created_by_display_name),
                "by_state": {f"BATCH_STATE_{s}": by_state.get(s, 0) for s in ACTIVE + TERMINAL},
                "live": len(landed),
                "active": sum(by_state.get(s, 0) for s in ACTIVE),
                "landing": len(self._jobs) - len(landed),
            }

    # -- mutations ------------------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        """Stop a pending or running job; terminal jobs answer 400 FAILED_PRECONDITION."""
        with self.lock:
            job = self.get(job_id)
            if job.state in TERMINAL:
                raise ApiError(
                    400,
                    f"Batch {job.name} is already in a terminal state ({job.state}).",
                    "FAILED_PRECONDITION",
                )
            self._finish(job, "CANCELLED", self._clock.now())
            return job

    def delete(self, job_id: str) -> None:
        """Forget a job; a pending or running one stops processing."""
        with self.lock:
            job = self.get(job_id)
            self._drop_active(job)
            del self._jobs[job_id]
        if job.input_path is not None:
            job.input_path.unlink(missing_ok=True)

    def force(self, job_id: str, state: str) -> Job:
        """Put a job into `state` now (control API)."""
        state = state.upper().removeprefix("BATCH_STATE_").removeprefix("JOB_STATE_")
        with self.lock:
            job = self.get(job_id)
            now = self._clock.now()
            if job.state in TERMINAL:
                raise ApiError(
                    400, f"Batch {job.name} is already {job.state}.", "FAILED_PRECONDITION"
                )
            if state == "RUNNING":
                if job.state != "PENDING":
                    raise ApiError(
                        400, f"Only a PENDING job can be forced to RUNNING ({job.state})."
                    )
                self._start(job, now)
            elif state in TERMINAL:
                self._finish(job, state, now)
            else:
                raise ApiError(400, f"Cannot force a job into state {state}.")
            return job

    def reset(self) -> None:
        """Forget every job (control API)."""
        with self.lock:
            for job in self._jobs.values():
                if job.input_path is not None:
                    job.input_path.unlink(missing_ok=True)
            self._jobs.clear()
            self._pending.clear()
            self._running.clear()

    # -- scheduler ------------------------------------------------------------------------

    def _advance(self, now: float) -> None:
        """Replay queue, start, finish and expiry events up to `now`, in time order."""
        cfg = self._config()
        while True:
            t_done = min((j.due or _INF for j in self._running), default=_INF)
            t_ready = _INF
            if len(self._running) < cfg.running_slots:
                t_ready = min((j.ready_at for j in self._pending), default=_INF)
            t_expire = min(
                (j.created + cfg.expiry_s for j in self._pending + self._running), default=_INF
            )
            t = min(t_done, t_ready, t_expire)
            if t > now:
                return
            for job in [j for j in self._pending + self._running if j.created + cfg.expiry_s <= t]:
                self._finish(job, "EXPIRED", job.created + cfg.expiry_s)
            for job in [j for j in self._running if (j.due or _INF) <= t]:
                self._finish(job, job.outcome, job.due or t)
            while len(self._running) < cfg.running_slots:
                ready = [j for j in self._pending if j.ready_at <= t]
                if not ready:
                    break
                self._start(max(ready, key=lambda j: (j.priority, -j.seq)), t)

    def _start(self, job: Job, t: float) -> None:
        cfg = self._config()
        self._pending.remove(job)
        self._running.append(job)
        job.state = "RUNNING"
        job.started = t
        job.due = t + cfg.processing_delay_s + cfg.per_request_delay_s * job.request_count
        job.updated = t

    def _finish(self, job: Job, state: str, t: float) -> None:
        self._drop_active(job)
        job.state = state
        job.ended = t
        job.updated = t
        if state != "SUCCEEDED":
            job.inline = None  # no output will ever be built: free the requests
            if job.input_path is not None:
                job.input_path.unlink(missing_ok=True)
        if state == "FAILED":
            job.error = {
                "code": GRPC_CODE["INTERNAL"],
                "message": "Batch failed (emulated job failure).",
            }
        elif state == "CANCELLED":
            job.error = {"code": GRPC_CODE["CANCELLED"], "message": "Batch was cancelled."}
        elif state == "EXPIRED":
            job.error = {
                "code": GRPC_CODE["DEADLINE_EXCEEDED"],
                "message": "Batch expired before it could be processed.",
            }

    def _drop_active(self, job: Job) -> None:
        if job in self._pending:
            self._pending.remove(job)
        if job in self._running:
            self._running.remove(job)
