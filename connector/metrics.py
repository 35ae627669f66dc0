"""Prometheus metrics and the canonical job log line.

Mostly pull-based: `SnapshotCollector` turns what the loop publishes each pass (the status
counters and the frozen `View`) into series at scrape time, on the health thread, without
touching live state. `Telemetry` adds the few series a snapshot cannot carry (histograms of
job age, request-to-result time, loop passes and provider calls; counters by label for
results, tokens, cost, resubmissions and provider errors), fed by one-line hooks in the stages
and by thin wrappers around the Gemini, ledger and consumer ports. Each `Telemetry` has its
own registry, so several sidecars in one process (tests) never share series.

Labels are bounded: model, state, status, call, code, stage, partition. Never a request id,
job id or anything a sender controls beyond the model name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import IO, Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from connector import __version__
from connector.config import Settings
from connector.core.observe import TERMINAL_STATES, Observer, View, build_view
from connector.core.pricing import PriceTable, load_price_table, token_counts
from connector.core.records import (
    JobProgress,
    JobState,
    LedgerEntry,
    Record,
    RemoteJob,
    ResultEvent,
)
from connector.errors import ProviderError

log = structlog.get_logger("connector")

disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` series double the output and no dashboard uses them

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

PREFIX = "gemini_batch_connector_"
"""Every series' prefix: unique to this application, so no series can collide with another
exporter's (the CHANGELOG lists the renames from the earlier `connector_`)."""

# google.rpc status names: the only values the `reason` label of results may take.
RPC_STATUSES = frozenset(
    {
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    }
)

# Seconds: minutes to the 48 h a batch job may live (plus short ones for tests and demos).
JOB_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400, 172800)
PASS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

PROVIDER_CALLS = (
    "create",
    "get",
    "list",
    "upload",
    "download",
    "delete_file",
    "cancel",
    "delete_job",
)


def _code_label(exc: ProviderError) -> str:
    return str(exc.code) if exc.code else "transport"


@dataclass(frozen=True, slots=True)
class _ModelSeries:
    """One model's labelled children of the usage and cost counters."""

    tokens_in: Any
    tokens_out: Any
    cost: Any
    saving: Any


class Telemetry(Observer):
    """One sidecar's event series and job log; `registry` is what /metrics serves."""

    def __init__(
        self,
        settings: Settings | None = None,
        prices: PriceTable | None = None,
        clock: Callable[[], float] = time.monotonic,
        registry: CollectorRegistry | None = None,
        wall_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.settings = settings or Settings(gemini_base_url="http://unset.invalid")
        self.prices = prices or load_price_table(self.settings.price_table)
        self.clock = clock
        self.wall_ms = wall_ms
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self.progress: dict[str, JobProgress] = {}
        """Latest `batchStats` per provider job, written by the loop thread only."""
        self.polled_at: float | None = None
        self._outcomes: dict[str, str] = {}
        r = self.registry
        self.results = Counter(
            "gemini_batch_connector_results",
            "Results produced, by status (OK|ERROR) and google.rpc reason ('' for OK).",
            ["status", "reason"],
            registry=r,
        )
        self.invalid = Counter(
            "gemini_batch_connector_requests_invalid",
            "Decoded requests refused by validation (each also gets an error result).",
            registry=r,
        )
        self.dead_lettered = Counter(
            "gemini_batch_connector_requests_dead_lettered",
            "Records copied to the dead-letter topic, by stage (VALUE_CONVERTER|VALIDATION).",
            ["stage"],
            registry=r,
        )
        self.request_to_result = Histogram(
            "gemini_batch_connector_request_to_result_seconds",
            "Time from a request's created_ms to its result (requests with created_ms only).",
            ["status"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.job_age = Histogram(
            "gemini_batch_connector_job_age_seconds",
            "Age of a job (since its INTENT) when the provider reported a terminal state.",
            ["state"],
            buckets=JOB_BUCKETS,
            registry=r,
        )
        self.resubmissions = Counter(
            "gemini_batch_connector_resubmissions",
            "Jobs resubmitted, by reason (expired: split in halves; failed: retried whole).",
            ["reason"],
            registry=r,
        )
        self.provider_errors = Counter(
            "gemini_batch_connector_provider_errors",
            "Failed Gemini calls by call and HTTP code (429: throttled; 'transport': no answer).",
            ["call", "code"],
            registry=r,
        )
        self.provider_seconds = Histogram(
            "gemini_batch_connector_provider_call_seconds",
            "Duration of Gemini calls, by call.",
            ["call"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "gemini_batch_connector_tokens",
            "Tokens reported in results' usage, by model and type (input|output; output "
            "includes thinking tokens).",
            ["model", "type"],
            registry=r,
        )
        self.cost = Counter(
            "gemini_batch_connector_estimated_cost_usd",
            "Estimated spend at the Batch API price (USD), by model (price table estimate).",
            ["model"],
            registry=r,
        )
        self.saving = Counter(
            "gemini_batch_connector_estimated_savings_usd",
            "Estimated saving against the interactive API price (USD), by model.",
            ["model"],
            registry=r,
        )
        self.unpriced = Counter(
            "gemini_batch_connector_unpriced_results",
            "Results with token usage whose model has no price in the table, by model.",
            ["model"],
            registry=r,
        )
        self.loop_pass = Histogram(
            "gemini_batch_connector_loop_pass_seconds",
            "Work time of one loop pass, from the consumer poll returning to the publish.",
            buckets=PASS_BUCKETS,
            registry=r,
        )
        self._result_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._model_children: dict[str, _ModelSeries] = {}
        for call in PROVIDER_CALLS:
            self.provider_seconds.labels(call)
        for state in TERMINAL_STATES:
            self.job_age.labels(state)
        for reason in ("expired", "failed"):
            self.resubmissions.labels(reason)

    # -- hooks the stages call -------------------------------------------------------

    def result(self, result: ResultEvent) -> None:
        """Count one produced result (the labelled children are looked up once per label
        set: prometheus' `labels()` costs ~2 µs)."""
        self.result_chunk((result,))

    def result_chunk(self, results: Sequence[ResultEvent]) -> None:
        """A chunk of results: each labelled counter is incremented once per chunk, tokens
        and costs summed per model first (pricing stays per result: a price tier depends
        on the request's size)."""
        counted: dict[tuple[str, str], int] = {}
        usage: dict[str, list[float]] = {}  # model: input, output, cost, saving
        for r in results:
            err = r.error
            status = r.status.value
            key = (status, "" if status == "OK" or err is None else err.status)
            counted[key] = counted.get(key, 0) + 1
            if r.request_created_ms > 0 and r.completed_ms >= r.request_created_ms:
                self._children(key)[1].observe((r.completed_ms - r.request_created_ms) / 1000)
            if r.usage is None:
                continue
            model = r.model.removeprefix("models/")
            if r.cost_usd is not None:  # priced as it was built, from the same table
                usd = r.cost_usd
                tokens_in, tokens_out = token_counts(r.usage)
                saving = self.prices.saving_usd(usd)
            else:
                cost = self.prices.cost(model, r.usage)
                if cost is None:
                    self._usage_unpriced(model, r)
                    continue
                usd, tokens_in, tokens_out = cost.batch_usd, cost.input_tokens, cost.output_tokens
                saving = cost.saving_usd
            sums = usage.get(model)
            if sums is None:
                sums = usage[model] = [0, 0, 0.0, 0.0]
            sums[0] += tokens_in
            sums[1] += tokens_out
            sums[2] += usd
            sums[3] += max(saving, 0.0)
        for key, n in counted.items():
            self._children(key)[0].inc(n)
        for model, (n_in, n_out, total_usd, total_saving) in usage.items():
            m = self._model(model)
            m.tokens_in.inc(n_in)
            m.tokens_out.inc(n_out)
            m.cost.inc(total_usd)
            m.saving.inc(total_saving)

    def _children(self, key: tuple[str, str]) -> tuple[Any, Any]:
        counted = self._result_children.get(key)
        if counted is None:
            status, reason = key
            label = reason if not reason or reason in RPC_STATUSES else "UNKNOWN"
            counted = self._result_children[key] = (
                self.results.labels(status, label),
                self.request_to_result.labels(status),
            )
        return counted

    def _model(self, model: str) -> _ModelSeries:
        m = self._model_children.get(model)
        if m is None:
            m = self._model_children[model] = _ModelSeries(
                self.tokens.labels(model, "input"),
                self.tokens.labels(model, "output"),
                self.cost.labels(model),
                self.saving.labels(model),
            )
        return m

    def _usage_unpriced(self, model: str, r: ResultEvent) -> None:
        self.unpriced.labels(model).inc()  # rare: a model missing from the table
        u = r.usage
        assert u is not None
        m = self._model(model)
        m.tokens_in.inc(max(u.prompt_tokens, 0))
        m.tokens_out.inc(max(u.total_tokens - u.prompt_tokens, u.candidates_tokens, 0))

    def dead_letter(self, stage: str) -> None:
        self.dead_lettered.labels(stage).inc()
        if stage == "VALIDATION":
            self.invalid.inc()

    def job_ended(self, entry: LedgerEntry, state: JobState, outcome: str) -> None:
        if entry.job_id in self._outcomes:
            return  # seen already: fetching its results failed and is being retried
        now_ms = self.wall_ms()
        self.job_age.labels(state.value).observe(max(0.0, (now_ms - entry.created_ms) / 1000))
        if outcome == "resubmit":
            self.resubmissions.labels(state.value.lower()).inc()
        self._outcomes[entry.job_id] = outcome
        self.progress.pop(entry.provider_job or "", None)
        _job_log(entry).info("job transition", state=state.value, outcome=outcome)

    # -- wrappers around the ports ---------------------------------------------------

    def wrap_gemini(self, gemini: Any) -> Any:
        return ObservedGemini(gemini, self)

    def wrap_ports(self, ports: Any) -> Any:
        return replace(
            ports,
            consumer=ObservedConsumer(ports.consumer, self),
            ledger=ObservedLedger(ports.ledger, self),
        )

    def ledger_write(self, entry: LedgerEntry) -> None:
        _job_log(entry).info("job transition", state=entry.state.value)

    def ledger_tombstone(self, entry: LedgerEntry) -> None:
        outcome = self._outcomes.pop(entry.job_id, "closed")
        _job_log(entry).info("job transition", state="CLOSED", outcome=outcome)

    # -- the view published each pass ------------------------------------------------

    def view(self, sidecar: Any) -> View:
        """Build the pass's view from the sidecar's live state (on the loop thread)."""
        if self.polled_at is not None:
            self.loop_pass.observe(max(0.0, self.clock() - self.polled_at))
            self.polled_at = None
        consumer = getattr(sidecar, "consumer", None)
        highwaters_fn = getattr(consumer, "highwaters", None)
        highwaters = highwaters_fn() if callable(highwaters_fn) else {}
        batcher = sidecar.batcher
        return build_view(
            sidecar.owned,
            len(batcher),
            sidecar.budget,
            sidecar.wall_ms(),
            highwaters=highwaters,
            progress=self.progress,
            paused=bool(getattr(sidecar, "paused", False)),
        )

    def collector(self, snapshot: Callable[[], Any]) -> SnapshotCollector:
        """Register the pull-based collector over `snapshot()` (the loop's latest)."""
        c = SnapshotCollector(snapshot, self.settings)
        self.registry.register(c)
        return c

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def _job_log(entry: LedgerEntry) -> Any:
    """The canonical job logger: the same bound fields on every transition of a job."""
    return log.bind(
        job_id=entry.job_id,
        partition=entry.key.partition,
        model=entry.key.model,
        kind=entry.key.kind.value,
        batch_job=entry.provider_job,
        requests=len(entry.offsets),
        attempt=entry.attempt,
    )


class ObservedGemini:
    """The Gemini port, timed and counted per call; `get` also keeps `batchStats`."""

    def __init__(self, inner: Any, telemetry: Telemetry) -> None:
        self._inner = inner
        self._t = telemetry

    def _call(self, call: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except ProviderError as exc:
            self._t.provider_errors.labels(call, _code_label(exc)).inc()
            raise
        finally:
            self._t.provider_seconds.labels(call).observe(time.monotonic() - t0)

    def create(self, *args: Any, **kwargs: Any) -> str:
        return str(self._call("create", self._inner.create, *args, **kwargs))

    def get(self, name: str) -> RemoteJob:
        job: RemoteJob = self._call("get", self._inner.get, name)
        progress = getattr(job, "progress", None)
        if progress is not None:
            self._t.progress[name] = progress
        return job

    def find_by_display_names(self, wanted: set[str]) -> dict[str, str]:
        if not wanted:
            return dict(self._inner.find_by_display_names(wanted))
        return dict(self._call("list", self._inner.find_by_display_names, wanted))

    def upload_jsonl(self, lines: Iterator[bytes], display_name: str) -> str:
        return str(self._call("upload", self._inner.upload_jsonl, lines, display_name))

    def upload_file(self, f: IO[bytes], display_name: str) -> str:
        return str(self._call("upload", self._inner.upload_file, f, display_name))

    def download(self, file_name: str) -> bytes:
        return bytes(self._call("download", self._inner.download, file_name))

    def download_to(self, file_name: str, out: IO[bytes]) -> None:
        self._call("download", self._inner.download_to, file_name, out)

    def delete_file(self, file_name: str) -> None:
        self._call("delete_file", self._inner.delete_file, file_name)

    def cancel(self, name: str) -> None:
        self._call("cancel", self._inner.cancel, name)

    def delete_job(self, name: str) -> None:
        self._call("delete_job", self._inner.delete_job, name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ObservedLedger:
    """The ledger port; every write and tombstone is a job transition in the log."""

    def __init__(self, inner: Any, telemetry: Telemetry) -> None:
        self._inner = inner
        self._t = telemetry

    def load(self, partition: int) -> dict[str, LedgerEntry]:
        return dict(self._inner.load(partition))

    def write(self, entry: LedgerEntry, producer: Any = None) -> Any:
        handle = self._inner.write(entry, producer)
        self._t.ledger_write(entry)
        return handle

    def write_stamped(self, entry: LedgerEntry, epoch: int, producer: Any = None) -> Any:
        handle = self._inner.write_stamped(entry, epoch, producer)
        self._t.ledger_write(entry)
        return handle

    def tombstone(self, entry: LedgerEntry, producer: Any = None) -> Any:
        handle = self._inner.tombstone(entry, producer)
        self._t.ledger_tombstone(entry)
        return handle

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ObservedConsumer:
    """The consumer port; notes when a poll returns, so a pass's work time can be measured."""

    def __init__(self, inner: Any, telemetry: Telemetry) -> None:
        self._inner = inner
        self._t = telemetry

    def poll(self, timeout_s: float) -> list[Record]:
        records: list[Record] = self._inner.poll(timeout_s)
        self._t.polled_at = self._t.clock()
        return records

    def rebalance_events(self) -> list[tuple[str, set[int]]]:
        return list(self._inner.rebalance_events())

    def commit(self, offsets: Mapping[int, int]) -> None:
        self._inner.commit(offsets)

    def rewind(self, partitions: Iterable[int]) -> dict[int, int]:
        return dict(self._inner.rewind(partitions))

    def assignment(self) -> set[int]:
        return set(self._inner.assignment())

    def pause(self, partitions: Iterable[int]) -> None:
        self._inner.pause(partitions)

    def resume_all(self) -> None:
        self._inner.resume_all()

    def close(self) -> None:
        self._inner.close()

    def highwaters(self) -> dict[int, int]:
        fn = getattr(self._inner, "highwaters", None)
        return dict(fn()) if callable(fn) else {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# Status counters (from `Stats`) exported as counters: status key -> (name, help).
STAT_COUNTERS: Mapping[str, tuple[str, str]] = {
    "consumed": (
        "gemini_batch_connector_requests_consumed",
        "Request records consumed (owned partitions).",
    ),
    "jobs_created": ("gemini_batch_connector_jobs_created", "Gemini batch jobs created."),
    "jobs_adopted": (
        "gemini_batch_connector_jobs_adopted",
        "Jobs found at the provider by display name after a crash and adopted.",
    ),
    "jobs_finished": (
        "gemini_batch_connector_jobs_finished",
        "Jobs whose results (or error results) were produced and tombstoned.",
    ),
    "results_too_large": (
        "gemini_batch_connector_results_too_large",
        "Results replaced by a 413 error result: they did not fit the results topic.",
    ),
    "jobs_quarantined": (
        "gemini_batch_connector_jobs_quarantined",
        "Jobs given up after repeated unexpected errors (500 error results).",
    ),
    "spool_waits": (
        "gemini_batch_connector_spool_waits",
        "Times a file job's input or a results download waited for free spool space.",
    ),
}


class SnapshotCollector(Collector):
    """Series computed at scrape time from the loop's latest published snapshot."""

    def __init__(self, snapshot: Callable[[], Any], settings: Settings) -> None:
        self._snapshot = snapshot
        self._settings = settings

    def describe(self) -> Iterable[Metric]:
        return []  # unchecked collector: names are documented in README's Operations

    def collect(self) -> Iterable[Metric]:
        snap = self._snapshot()
        status: Mapping[str, Any] = getattr(snap, "status", {}) or {}
        view: View | None = getattr(snap, "view", None)
        yield from self._info()
        for key, (name, help_) in STAT_COUNTERS.items():
            if key in status:
                c = CounterMetricFamily(name, help_)
                c.add_metric([], float(status[key]))
                yield c
        auth = GaugeMetricFamily(
            "gemini_batch_connector_provider_auth_failing",
            "1 while Gemini refuses the API key (401, 403, API_KEY_INVALID): jobs wait.",
        )
        auth.add_metric([], 1.0 if status.get("provider_auth_failing") else 0.0)
        yield auth
        if view is None:
            return
        # A timestamp, not an age: an age computed at scrape time hides a stalled exporter,
        # while `time() - timestamp` keeps growing however the scrape goes.
        last = GaugeMetricFamily(
            "gemini_batch_connector_last_pass_timestamp_seconds",
            "Unix time at which the loop last completed a pass (liveness).",
        )
        last.add_metric([], view.now_ms / 1000)
        yield last
        yield from self._inflight(view)
        yield from self._partitions(view)
        yield from self._quota(view)

    def _info(self) -> Iterator[Metric]:
        s = self._settings
        info = InfoMetricFamily(
            "gemini_batch_connector_build", "Version and identity of this sidecar."
        )
        info.add_metric(
            [],
            {
                "version": __version__,
                "group_id": s.group_id,
                "request_topic": s.request_topic,
            },
        )
        yield info

    def _inflight(self, view: View) -> Iterator[Metric]:
        jobs: dict[str, int] = {"INTENT": 0, "SUBMITTED": 0}
        reqs: dict[str, int] = {"open": view.open_requests, "INTENT": 0, "SUBMITTED": 0}
        oldest: dict[str, int] = {}
        for j in view.jobs:
            jobs[j.state] = jobs.get(j.state, 0) + 1
            reqs[j.state] = reqs.get(j.state, 0) + j.requests
            oldest[j.state] = min(oldest.get(j.state, j.created_ms), j.created_ms)
        g = GaugeMetricFamily(
            "gemini_batch_connector_inflight_jobs",
            "Live jobs in the ledger, by state.",
            labels=["state"],
        )
        for state, n in sorted(jobs.items()):
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily(
            "gemini_batch_connector_inflight_requests",
            "Requests not yet answered: open (batching), in INTENT or SUBMITTED jobs.",
            labels=["state"],
        )
        for state, n in sorted(reqs.items()):
            g.add_metric([state], n)
        yield g
        g = GaugeMetricFamily(
            "gemini_batch_connector_oldest_job_created_timestamp_seconds",
            "Unix time the oldest live job of a state was recorded (INTENT); no series when "
            "there is none.",
            labels=["state"],
        )
        for state, created_ms in sorted(oldest.items()):
            g.add_metric([state], created_ms / 1000)
        yield g
        done = GaugeMetricFamily(
            "gemini_batch_connector_job_progress_ratio",
            "Share of requests the provider finished in SUBMITTED jobs (batchStats), by model.",
            labels=["model"],
        )
        per_model: dict[str, list[int]] = {}
        for j in view.jobs:
            if j.progress is not None and j.progress.total > 0:
                acc = per_model.setdefault(j.model, [0, 0])
                acc[0] += j.progress.succeeded + j.progress.failed
                acc[1] += j.progress.total
        for model, (finished, total) in sorted(per_model.items()):
            done.add_metric([model], finished / total)
        yield done

    def _partitions(self, view: View) -> Iterator[Metric]:
        assigned = GaugeMetricFamily(
            "gemini_batch_connector_assigned_partitions", "Request partitions this replica owns."
        )
        assigned.add_metric([], len(view.partitions))
        yield assigned
        # kafka_exporter's labels, so one dashboard or alert can take either source.
        labels = ["consumergroup", "topic", "partition"]
        lag = GaugeMetricFamily(
            "gemini_batch_connector_consumergroup_lag",
            "Records behind per owned request partition: end offset (as last fetched) - committed.",
            labels=labels,
        )
        committed = GaugeMetricFamily(
            "gemini_batch_connector_consumergroup_current_offset",
            "Committed offset per owned request partition.",
            labels=labels,
        )
        group, topic = self._settings.group_id, self._settings.request_topic
        for p in view.partitions:
            if p.committed >= 0:
                committed.add_metric([group, topic, str(p.partition)], p.committed)
            if p.lag is not None:
                lag.add_metric([group, topic, str(p.partition)], p.lag)
        yield committed
        yield lag
        paused = GaugeMetricFamily(
            "gemini_batch_connector_consumption_paused", "1 while consumption is paused for quota."
        )
        paused.add_metric([], 1.0 if view.paused else 0.0)
        yield paused

    def _quota(self, view: View) -> Iterator[Metric]:
        enq = GaugeMetricFamily(
            "gemini_batch_connector_enqueued_tokens",
            "Estimated tokens of SUBMITTED jobs, by model (counts against the token budget).",
            labels=["model"],
        )
        cap = GaugeMetricFamily(
            "gemini_batch_connector_token_budget",
            "This replica's share of the enqueued-token cap, by model.",
            labels=["model"],
        )
        for model in sorted(view.enqueued_tokens):
            enq.add_metric([model], view.enqueued_tokens[model])
        for model in sorted(view.token_caps):
            cap.add_metric([model], view.token_caps[model])
        yield enq
        yield cap
        jobs = GaugeMetricFamily(
            "gemini_batch_connector_max_jobs", "This replica's share of the concurrent-job limit."
        )
        jobs.add_metric([], view.max_jobs)
        yield jobs


def metric_names(registry: CollectorRegistry) -> Sequence[str]:
    """Every family name a scrape of `registry` returns (for docs and tests)."""
    return sorted({m.name for m in registry.collect()})
