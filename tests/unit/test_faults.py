"""Promises under faults, on the fast doubles of `connector.testing` (no broker, no socket)."""

from __future__ import annotations

import pytest

from connector.core.records import ResultStatus
from connector.emulator import EmulatorConfig
from connector.errors import ProduceFailed, RecordTooLarge
from connector.stages.sink import Limits, record_size
from connector.testing import TestHarness, harness, headers_of

SLOW = EmulatorConfig(queue_delay_s=0.0, processing_delay_s=60.0, per_request_delay_s=0.0)
FAST = EmulatorConfig(queue_delay_s=0.0, processing_delay_s=1.0, per_request_delay_s=0.0)


def start(h: TestHarness, *partitions: int) -> TestHarness:
    """Assign the partitions and run the pass that takes them over."""
    h.consumer.assign(*(partitions or (0,)))
    h.step()
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


# -- records too large for their topic ----------------------------------------------------


def test_result_over_the_topic_limit_becomes_a_413_error_result_for_that_request() -> None:
    """An image-sized answer that cannot fit the results topic is answered with an error."""
    h = start(harness(emulator_config=FAST, batch_max_wait_s=1.0, poll_initial_s=1.0))
    h.sidecar.ctx.sink.limits = Limits(result_bytes=20_000, dlq_bytes=20_000)
    h.publish("big", prompt="draw EMULATOR_BIG_50000")
    h.publish("small")
    h.run_until(lambda: len(h.results()) == 2, max_passes=60)
    by_id = {r.request_id: r for r in h.result_events()}
    assert by_id["small"].status is ResultStatus.OK
    big = by_id["big"]
    assert big.status is ResultStatus.ERROR
    assert big.response_json is None
    assert big.error is not None
    assert (big.error.code, big.error.status) == (413, "FAILED_PRECONDITION")
    assert "20000 bytes" in big.error.message
    assert big.batch_job is not None
    assert all(len(r.value or b"") < 20_000 for r in h.results())
    assert h.sidecar.stats.results_too_large == 1
    assert h.ledger.live(0) == {}  # the job finished: no crash loop, no repeats


def test_result_refused_as_too_large_by_the_broker_is_answered_per_record() -> None:
    """A size refusal the limits did not foresee costs only that record an error result."""
    h = start(harness(emulator_config=FAST, batch_max_wait_s=1.0, poll_initial_s=1.0))

    def refuse(topic: str, value: bytes | None) -> BaseException | None:
        too_big = topic == h.settings.result_topic and len(value or b"") > 20_000
        return RecordTooLarge("MessageSizeTooLargeError (scripted)") if too_big else None

    h.producer.fail_when = refuse
    h.publish("big", prompt="draw EMULATOR_BIG_50000")
    h.publish("small")
    h.run_until(lambda: len(h.results()) == 2, max_passes=60)
    by_id = {r.request_id: r for r in h.result_events()}
    assert by_id["small"].status is ResultStatus.OK
    assert by_id["big"].error is not None
    assert by_id["big"].error.code == 413
    assert h.ledger.live(0) == {}


def test_other_produce_errors_still_stop_the_commit() -> None:
    """Only size refusals are answered per record; anything else must not be committed."""
    h = start(harness(emulator_config=FAST))
    h.producer.fail_when = lambda topic, value: ProduceFailed("NotLeaderForPartition")
    h.kafka.append(h.settings.request_topic, b"garbage", b"k")
    with pytest.raises(ProduceFailed):
        h.step()
    assert h.committed() == 0


def test_dead_letter_over_the_topic_limit_is_truncated_and_keeps_provenance() -> None:
    """A near-limit undecodable record whose provenance headers push it over still goes."""
    h = start(harness(emulator_config=FAST))
    h.sidecar.ctx.sink.limits = Limits(result_bytes=3_000, dlq_bytes=3_000)
    value = b"\x00" * 2_950
    h.kafka.append(h.settings.request_topic, value, b"k", headers=[("trace", b"x" * 40)])
    h.step()
    (dl,) = h.dead_letters()
    headers = headers_of(dl)
    assert headers["__connect.errors.truncated"] == b"2950"
    assert headers["__connect.errors.headers.dropped"] == b"1"
    assert headers["__connect.errors.offset"] == b"0"
    assert headers["__connect.errors.stage"] == b"VALUE_CONVERTER"
    assert "trace" not in headers
    assert dl.key == b"k"
    assert dl.value == value[: len(dl.value or b"")]
    assert record_size(dl.key, dl.value, dl.headers) <= 3_000
    assert h.committed() == 1
    assert h.sidecar.stats.dead_letters_truncated == 1


def test_dead_letter_refused_as_too_large_is_sent_emptied() -> None:
    """If the broker still refuses a dead letter as too large, it goes without its value."""
    h = start(harness(emulator_config=FAST))

    def refuse(topic: str, value: bytes | None) -> BaseException | None:
        too_big = topic == h.settings.dlq_topic and len(value or b"") > 1_000
        return RecordTooLarge("RecordTooLarge (scripted)") if too_big else None

    h.producer.fail_when = refuse
    h.kafka.append(h.settings.request_topic, b"\x01" * 5_000, b"k")
    h.step()
    (dl,) = h.dead_letters()
    assert headers_of(dl)["__connect.errors.truncated"] == b"5000"
    assert dl.value == b""
    assert h.committed() == 1
