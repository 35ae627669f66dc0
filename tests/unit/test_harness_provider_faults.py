"""Provider faults, scripted with the emulator's knobs, through the whole sidecar (fast).

Each test runs `connector.testing.harness()`: the real Sidecar, the real Gemini adapter and
SDK, the emulator service in-process, in-memory Kafka and a manual clock.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import orjson

from connector.core.records import EntryState, ResultStatus
from connector.emulator import EmulatorConfig
from connector.emulator.messages import Body, Request
from connector.testing import TestHarness, harness

FAST = {"queue_delay_s": 0.5, "processing_delay_s": 1.0, "per_request_delay_s": 0.0, "seed": 3}


def emulator_stats(h: TestHarness) -> dict[str, Any]:
    assert h.emulator is not None
    req = Request("GET", "/_emulator/stats", {}, {}, Body(io.BytesIO(b""), 0), "http://x")
    return dict(orjson.loads(h.emulator.control.handle(req).body))


def calls(h: TestHarness, method: str) -> int:
    return int(emulator_stats(h).get("calls", {}).get(method, 0))


def live_files(h: TestHarness) -> set[str]:
    assert h.emulator is not None
    files, _ = h.emulator.service.files.list(1000, None)
    return {f.name for f in files}


def start(
    n: int, emu: dict[str, Any] | None = None, **settings: Any
) -> tuple[TestHarness, set[str]]:
    settings.setdefault("batch_max_wait_s", 0.5)
    h = harness(emulator_config=EmulatorConfig(**{**FAST, **(emu or {})}), **settings)
    h.consumer.assign(0)
    ids = {f"r{i}" for i in range(n)}
    for rid in sorted(ids):
        h.publish(rid, f"prompt {rid}")
    return h, ids


def answered(h: TestHarness, ids: set[str]) -> bool:
    return ids <= {e.request_id for e in h.result_events()}


def assert_all_ok_once(h: TestHarness, ids: set[str]) -> None:
    events = h.result_events()
    assert sorted(e.request_id for e in events) == sorted(ids), events
    bad = [(e.request_id, e.error) for e in events if e.status is not ResultStatus.OK]
    assert not bad, bad


def assert_one_job_per_name(h: TestHarness) -> None:
    assert h.emulator is not None
    created = h.emulator.created_by_display_name()
    assert created, "no job was created"
    assert max(created.values()) == 1, created


# -- 1. unclear create failures ------------------------------------------------------------


def test_create_that_lands_late_is_looked_up_after_one_http_timeout_not_created_twice() -> None:
    """504 at once, the job appears 3 s later: the lookup must wait the HTTP timeout (5 s)."""
    emu = {"create_land_delay_s": 3.0, "create_late_rate": 1.0}
    h, ids = start(3, emu, http_timeout_s=5.0, batch_inline_max_bytes=0)
    h.run_until(lambda: answered(h, ids), max_passes=60, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert_one_job_per_name(h)
    assert h.sidecar.stats.jobs_adopted == 1
    assert calls(h, "files.upload") == 1, "the kept input file is reused, not uploaded again"
    assert not live_files(h), "input and result files are deleted once results are out"


def test_create_whose_reply_is_lost_keeps_its_input_file_until_the_job_is_done() -> None:
    """503 after the job was made: adopted after the lookup; its input file survives till then."""
    h, ids = start(3, {"create_reply_lost_rate": 1.0}, http_timeout_s=5.0, batch_inline_max_bytes=0)
    h.run_until(lambda: calls(h, "batches.create") >= 1, max_passes=10, advance_s=0.5)
    intent = next(iter(h.sidecar.owned[0].jobs.values())).entry
    assert intent.state is EntryState.INTENT
    assert intent.input_file in live_files(h), "the job may still read its input file"
    # ...and a crash now would keep it too: the INTENT in the ledger names it.
    assert h.ledger.live(0)[intent.job_id].input_file == intent.input_file
    h.step(advance_s=4.0)
    assert calls(h, "batches.list") == 0, "looked up before one HTTP timeout had passed"
    h.run_until(lambda: answered(h, ids), max_passes=60, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert_one_job_per_name(h)
    assert h.sidecar.stats.jobs_adopted == 1
    assert intent.input_file not in live_files(h), "deleted once the job is done"


# -- 2. non-ASCII inline batches ------------------------------------------------------------

NON_ASCII = [
    "Привет, как дела? " * 55,  # Cyrillic: 2 UTF-8 bytes, 6 on the wire
    "你好世界今天天气很好。" * 55,  # CJK: 3 UTF-8 bytes, 6 on the wire
    "😀🚀 ok " * 120,  # emoji: 4 UTF-8 bytes, 12 on the wire (a surrogate pair)
]


def test_non_ascii_prompts_near_the_inline_limit_all_get_ok_results() -> None:
    """~20 KB of UTF-8 but ~50 KB as sent: sized by the bytes sent, they go through a file."""
    emu = {"max_inline_request_bytes": 32_000}
    h = harness(
        emulator_config=EmulatorConfig(**{**FAST, **emu}),
        batch_inline_max_bytes=30_000,
        batch_max_wait_s=0.5,
    )
    h.consumer.assign(0)
    ids = {f"intl-{i}" for i in range(9)}
    for i, rid in enumerate(sorted(ids)):
        h.publish(rid, NON_ASCII[i % 3])
    h.run_until(lambda: answered(h, ids), max_passes=40, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert_one_job_per_name(h)


def test_an_inline_create_refused_for_its_size_falls_back_to_a_file_job() -> None:
    """The provider's limit is below our estimate: 400 'payload size' → file job, never errors."""
    h, ids = start(12, {"max_inline_request_bytes": 600}, batch_inline_max_bytes=19_000_000)
    h.run_until(lambda: answered(h, ids), max_passes=40, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert_one_job_per_name(h)
    assert calls(h, "files.upload") == 1


# -- 3. the sidecar's own max-age cancel ----------------------------------------------------


class Crash(BaseException):
    """The process dies here (not an Exception: nothing may catch it)."""


class CancelThen:
    """The real adapter, whose next cancel lands but then loses its reply or crashes."""

    def __init__(self, h: TestHarness, then: BaseException) -> None:
        self.inner, self.h, self.then = h.gemini, h, then
        self.cancels = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def cancel(self, name: str) -> None:
        self.cancels += 1
        self.inner.cancel(name)
        assert self.h.emulator is not None
        self.h.emulator.update_config(queue_delay_s=0.5)  # the resubmitted halves run
        raise self.then


def restart(h: TestHarness) -> TestHarness:
    """A new process on the same Kafka and provider: the old one's memory is gone."""
    from connector.runner import Ports, Sidecar
    from connector.testing import MemoryLedger, MemoryReader, RecordingProducer, ScriptedConsumer

    producer = RecordingProducer(h.kafka)
    consumer = ScriptedConsumer(h.kafka, h.settings.request_topic)
    ledger = MemoryLedger(h.kafka, h.settings.ledger, producer, h.codec)
    reader = MemoryReader(h.kafka, h.settings.request_topic, h.codec)
    gemini = getattr(h.gemini, "inner", h.gemini)
    sidecar = Sidecar(h.settings, gemini, codec=h.codec, clock=h.clock, wall_ms=h.clock.wall_ms)
    sidecar.attach(Ports(consumer, producer, ledger, reader, total_partitions=1))
    consumer.assign(0)
    return TestHarness(
        sidecar, h.kafka, consumer, producer, ledger, reader, h.clock, gemini, h.emulator,
        h.settings, h.codec,
    )  # fmt: skip


def stuck_job(then: BaseException) -> tuple[TestHarness, set[str], CancelThen]:
    """Four requests in one job that stays PENDING past the maximum age (0.001 h = 3.6 s)."""
    h, ids = start(4, {"queue_delay_s": 3600.0}, max_job_age_h=0.001, http_timeout_s=2.0)
    wrapped = CancelThen(h, then)
    h.sidecar.gemini = h.sidecar.ctx.gemini = h.gemini = wrapped
    h.run_until(lambda: wrapped.cancels > 0, max_passes=40, advance_s=0.5)
    return h, ids, wrapped


def assert_resubmitted_split(h: TestHarness, ids: set[str]) -> None:
    assert_all_ok_once(h, ids)
    assert {e.attempt for e in h.result_events()} == {1}
    assert_one_job_per_name(h)
    assert h.emulator is not None
    assert len(h.emulator.created_by_display_name()) == 3  # the cancelled job and its halves


def test_own_max_age_cancel_whose_reply_is_lost_is_resubmitted_split_not_499() -> None:
    from connector.errors import ProviderRetryable

    h, ids, _ = stuck_job(ProviderRetryable("reply lost", 503, "UNAVAILABLE"))
    h.run_until(lambda: answered(h, ids), max_passes=60, advance_s=0.5)
    assert_resubmitted_split(h, ids)


def test_crash_between_own_max_age_cancel_and_ledger_write_resubmits_split_not_499() -> None:
    """The next owner finds the job CANCELLED; its entry's age says the cancel was ours."""
    h, ids = start(4, {"queue_delay_s": 3600.0}, max_job_age_h=0.001, http_timeout_s=2.0)
    wrapped = CancelThen(h, Crash())
    h.sidecar.gemini = h.sidecar.ctx.gemini = h.gemini = wrapped
    with contextlib.suppress(Crash):
        h.run_until(lambda: False, max_passes=40, advance_s=0.5)
    assert wrapped.cancels == 1
    h2 = restart(h)
    h2.run_until(lambda: answered(h2, ids), max_passes=60, advance_s=0.5)
    assert_resubmitted_split(h2, ids)


# -- 4. a finished job whose results file is gone -------------------------------------------


def test_finished_job_whose_results_file_expired_is_resubmitted_not_retried_forever() -> None:
    """output_file_ttl_s=0: the results file is gone (403) by the time it is downloaded."""
    h, ids = start(4, {"output_file_ttl_s": 0.0}, batch_inline_max_bytes=0)
    h.run_until(lambda: h.sidecar.stats.jobs_resubmitted >= 1, max_passes=40, advance_s=0.5)
    assert h.emulator is not None
    h.emulator.update_config(output_file_ttl_s=None)  # the halves' results stay
    h.run_until(lambda: answered(h, ids), max_passes=40, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert {e.attempt for e in h.result_events()} == {1}
    assert_one_job_per_name(h)
    assert h.sidecar.owned.count(EntryState.SUBMITTED) == 0, "no slot held by the first job"


def test_results_file_gone_on_every_attempt_ends_in_error_results_within_the_budget() -> None:
    h, ids = start(2, {"output_file_ttl_s": 0.0}, batch_inline_max_bytes=0, max_attempts=2)
    h.run_until(lambda: answered(h, ids), max_passes=80, advance_s=0.5)
    events = h.result_events()
    assert sorted(e.request_id for e in events) == sorted(ids)
    assert {e.error.status for e in events if e.error} == {"DEADLINE_EXCEEDED"}


# -- 5. a rotated API key --------------------------------------------------------------------


def test_rotated_api_key_is_an_outage_not_error_results() -> None:
    """Every call gets 400 API_KEY_INVALID: jobs wait (capped backoff) and the sidecar says so;
    once the key works again every request is answered OK, none with an error."""
    h, ids = start(3, {"api_key": "rotated-away"}, batch_inline_max_bytes=0)
    h.step(30, advance_s=1.0)
    assert h.result_events() == [], "an auth failure is never the requests' fault"
    assert h.sidecar.stats.provider_auth_failing
    assert h.sidecar.status()["provider_auth_failing"] is True
    h.sidecar.running = True
    assert not h.sidecar.ready(), "/readyz reports the outage"
    h.publish("late", "after the key broke")
    ids.add("late")
    assert h.emulator is not None
    h.emulator.update_config(api_key="test-key")
    h.run_until(lambda: answered(h, ids), max_passes=200, advance_s=1.0)
    assert_all_ok_once(h, ids)
    assert not h.sidecar.stats.provider_auth_failing


def test_auth_failure_while_polling_is_reported_and_waited_out() -> None:
    h, ids = start(3, {"queue_delay_s": 5.0})
    h.run_until(lambda: h.sidecar.stats.jobs_created == 1, max_passes=20, advance_s=0.5)
    assert h.emulator is not None
    h.emulator.update_config(api_key="rotated-away")
    h.step(20, advance_s=1.0)
    assert h.sidecar.stats.provider_auth_failing
    assert h.result_events() == []
    h.emulator.update_config(api_key=None)
    h.run_until(lambda: answered(h, ids), max_passes=200, advance_s=1.0)
    assert_all_ok_once(h, ids)
    assert not h.sidecar.stats.provider_auth_failing


# -- 6. cleanup after a 5xx -----------------------------------------------------------------


def test_cleanup_that_fails_transiently_is_retried_until_nothing_is_left_behind() -> None:
    """A quarter of all calls fail 500/503, deletes too: they are queued and tried again."""
    h, ids = start(
        12, {"transient_error_rate": 0.25}, batch_inline_max_bytes=0, batch_max_requests=2
    )
    h.run_until(lambda: answered(h, ids), max_passes=300, advance_s=0.5)
    assert_all_ok_once(h, ids)
    assert calls(h, "faults.transient") > 0
    h.run_until(
        lambda: not live_files(h) and emulator_stats(h)["batches"]["live"] == 0,
        max_passes=300,
        advance_s=1.0,
    )
