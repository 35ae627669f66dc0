"""Promises under faults, on the fast doubles of `connector.testing` (no broker, no socket)."""

from __future__ import annotations

from connector.core.records import ResultStatus
from connector.emulator import EmulatorConfig
from connector.testing import TestHarness, harness

SLOW = EmulatorConfig(queue_delay_s=0.0, processing_delay_s=60.0, per_request_delay_s=0.0)
FAST = EmulatorConfig(queue_delay_s=0.0, processing_delay_s=1.0, per_request_delay_s=0.0)


def start(h: TestHarness, *partitions: int) -> TestHarness:
    h.consumer.assign(*(partitions or (0,)))
    return h


def created(h: TestHarness) -> int:
    assert h.emulator is not None
    return sum(h.emulator.created_by_display_name().values())


# -- deadlines ----------------------------------------------------------------------------


def test_deadline_passing_while_the_batch_is_open_gets_504_and_no_job() -> None:
    """Checked at seal: a request whose deadline passes in an open batch is not sent."""
    h = start(harness(emulator_config=FAST, batch_max_wait_s=5.0, poll_initial_s=1.0))
    h.publish("late", deadline_ms=h.clock.wall_ms() + 2_000)
    h.publish("fine")
    h.step()
    h.run_until(lambda: len(h.results()) == 2, max_passes=60)
    by_id = {r.request_id: r for r in h.result_events()}
    assert by_id["late"].status is ResultStatus.ERROR
    assert by_id["late"].error is not None
    assert (by_id["late"].error.code, by_id["late"].error.status) == (504, "DEADLINE_EXCEEDED")
    assert by_id["fine"].status is ResultStatus.OK
    assert created(h) == 1
    assert h.sidecar.stats.deadline_exceeded == 1
    assert h.committed() == 2


def test_deadline_passing_while_waiting_for_quota_gets_504_before_the_quota_frees() -> None:
    """Checked while an INTENT waits for quota: the answer does not wait for a free slot."""
    h = start(harness(emulator_config=SLOW, batch_max_wait_s=1.0, max_jobs=1, poll_initial_s=5.0))
    h.publish("first", group="a")
    h.run_until(lambda: created(h) == 1, max_passes=10)
    h.publish("waiting", group="b", deadline_ms=h.clock.wall_ms() + 5_000)
    h.run_until(h.results, max_passes=20)
    (r,) = h.result_events()
    assert r.request_id == "waiting"
    assert r.error is not None
    assert r.error.code == 504
    assert r.attempt == 0
    assert created(h) == 1


def test_deadline_passing_while_the_job_runs_gets_504_not_the_late_answer() -> None:
    """Checked at delivery: the job's answer for an expired request is replaced by a 504."""
    h = start(harness(emulator_config=SLOW, batch_max_wait_s=1.0, poll_initial_s=5.0))
    h.publish("late", deadline_ms=h.clock.wall_ms() + 10_000)
    h.publish("fine")
    h.run_until(lambda: len(h.results()) == 2, max_passes=200)
    by_id = {r.request_id: r for r in h.result_events()}
    assert by_id["fine"].status is ResultStatus.OK
    late = by_id["late"]
    assert late.status is ResultStatus.ERROR
    assert late.response_json is None
    assert late.error is not None
    assert late.error.code == 504
    assert late.batch_job is not None  # it was in the job; the answer came too late
    assert late.attempt == 0
    assert by_id["fine"].attempt == 0
