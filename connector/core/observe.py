"""What operators see: hooks the stages call, and the read-only view the loop publishes.

`Observer` is a no-op base: the stages call it at the few moments a pull-based collector
cannot see (a result produced, a dead letter, a job ended), and the runner asks it to wrap
ports and to build the `View` published with each pass. `connector.metrics.Telemetry` is the
real one (Prometheus series and the canonical job log line); tests may pass this base.

The `View` is plain frozen data, built on the loop's thread, so the health thread (status,
metrics, the HTML page) never touches live state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, TypeVar

from connector.core.partitions import Partitions
from connector.core.quota import Budget
from connector.core.records import EntryState, JobProgress, JobState, LedgerEntry, ResultEvent

T = TypeVar("T")

__all__ = ["JobView", "Observer", "PartitionView", "View", "build_view", "job_view"]


class Observer:
    """Hooks for metrics and the job log; every method here does nothing."""

    def result(self, result: ResultEvent) -> None:
        """A result is about to be produced (OK or ERROR)."""

    def result_chunk(self, results: Sequence[ResultEvent]) -> None:
        """A chunk of results is about to be produced (the delivery's hot path)."""
        for r in results:
            self.result(r)

    def dead_letter(self, stage: str) -> None:
        """A record goes to the dead-letter topic (`VALUE_CONVERTER` or `VALIDATION`)."""

    def job_ended(self, entry: LedgerEntry, state: JobState, outcome: str) -> None:
        """A job reached a terminal provider state; `outcome` is what the policy decided."""

    def wrap_gemini(self, gemini: T) -> T:
        return gemini

    def wrap_ports(self, ports: T) -> T:
        return ports

    def view(self, sidecar: Any) -> View | None:
        """The read-only view to publish with this pass (None: nothing to publish)."""
        return None


@dataclass(frozen=True, slots=True)
class JobView:
    """One live job as status pages show it."""

    job_id: str
    partition: int
    model: str
    kind: str
    priority: int
    group: str
    requests: int
    state: str
    attempt: int
    est_tokens: int
    created_ms: int
    updated_ms: int
    provider_job: str | None
    progress: JobProgress | None = None

    def age_s(self, now_ms: int) -> float:
        return max(0.0, (now_ms - self.created_ms) / 1000)

    def as_dict(self, now_ms: int) -> dict[str, Any]:
        p = self.progress
        return {
            "job_id": self.job_id,
            "partition": self.partition,
            "model": self.model,
            "kind": self.kind,
            "priority": self.priority,
            "group": self.group,
            "requests": self.requests,
            "state": self.state,
            "attempt": self.attempt,
            "est_tokens": self.est_tokens,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
            "age_s": round(self.age_s(now_ms), 1),
            "provider_job": self.provider_job,
            "progress": None
            if p is None
            else {
                "total": p.total,
                "succeeded": p.succeeded,
                "failed": p.failed,
                "pending": p.pending,
                "fraction": p.fraction,
            },
        }


def job_view(entry: LedgerEntry, progress: JobProgress | None = None) -> JobView:
    k = entry.key
    return JobView(
        job_id=entry.job_id,
        partition=k.partition,
        model=k.model,
        kind=str(k.kind.value),
        priority=k.priority,
        group=k.group,
        requests=len(entry.offsets),
        state=str(entry.state.value),
        attempt=entry.attempt,
        est_tokens=entry.est_tokens,
        created_ms=entry.created_ms,
        updated_ms=entry.updated_ms,
        provider_job=entry.provider_job,
        progress=progress,
    )


@dataclass(frozen=True, slots=True)
class PartitionView:
    """One owned request partition: where its commits stand and how far behind it is."""

    partition: int
    committed: int
    """Next offset to read after a restart (-1: nothing committed by this owner yet)."""
    highwater: int | None
    """The end of the partition as last seen by the consumer's fetches (None: unknown)."""
    jobs: int

    @property
    def lag(self) -> int | None:
        if self.highwater is None or self.committed < 0:
            return None
        return max(0, self.highwater - self.committed)


@dataclass(frozen=True, slots=True)
class View:
    """Everything the health thread shows, frozen at the end of a pass."""

    now_ms: int
    jobs: tuple[JobView, ...] = ()
    partitions: tuple[PartitionView, ...] = ()
    open_requests: int = 0
    max_jobs: int = 0
    token_caps: Mapping[str, int] = field(default_factory=dict)
    """This replica's enqueued-token cap per model with live or open work."""
    enqueued_tokens: Mapping[str, int] = field(default_factory=dict)
    """Estimated tokens of SUBMITTED jobs per model (what counts against the cap)."""
    paused: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_caps", MappingProxyType(dict(self.token_caps)))
        object.__setattr__(self, "enqueued_tokens", MappingProxyType(dict(self.enqueued_tokens)))


def build_view(
    owned: Partitions,
    open_requests: int,
    budget: Budget,
    now_ms: int,
    highwaters: Mapping[int, int] | None = None,
    progress: Mapping[str, JobProgress] | None = None,
    paused: bool = False,
    open_models: Iterable[str] = (),
) -> View:
    """Copy what status pages need out of the loop's live state (O(jobs), once per pass)."""
    highwaters = highwaters or {}
    progress = progress or {}
    jobs: list[JobView] = []
    enqueued: dict[str, int] = {}
    parts: list[PartitionView] = []
    for p in sorted(owned):
        st = owned[p]
        for t in st.jobs.values():
            e = t.entry
            jobs.append(job_view(e, progress.get(e.provider_job or "")))
            if e.state is EntryState.SUBMITTED:
                enqueued[e.key.model] = enqueued.get(e.key.model, 0) + e.est_tokens
        committed = st.committed
        if committed < 0 and st.watermark is not None:
            committed = st.watermark.committable()
        parts.append(PartitionView(p, committed, highwaters.get(p), len(st.jobs)))
    models = {j.model for j in jobs} | set(open_models)
    for m in models:
        enqueued.setdefault(m, 0)
    jobs.sort(key=lambda j: (j.partition, j.created_ms, j.job_id))
    return View(
        now_ms=now_ms,
        jobs=tuple(jobs),
        partitions=tuple(parts),
        open_requests=open_requests,
        max_jobs=budget.max_jobs,
        token_caps={m: budget.token_cap(m) for m in models},
        enqueued_tokens=enqueued,
        paused=paused,
    )


TERMINAL_STATES = tuple(s.value for s in JobState if s.terminal)
"""Provider states a job ends in (labels of the job-age histogram)."""
