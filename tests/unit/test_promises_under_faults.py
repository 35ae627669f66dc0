"""Promises under faults, on the fast doubles of `connector.testing` (no broker, no socket)."""

from __future__ import annotations

import pytest
from kafka.errors import TopicAlreadyExistsError

from connector.adapters.kafka import Admin
from connector.core import policy
from connector.core.records import Record, ResultStatus
from connector.emulator import EmulatorConfig
from connector.errors import BrokerUnavailable, ConfigError, ProduceFailed, RecordTooLarge
from connector.stages.sink import Limits, record_size
from connector.testing import (
    InProcessEmulator,
    TestHarness,
    emulated_gemini,
    harness,
    headers_of,
)

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
    if h.txn is not None:  # at-least-once, results commit with their cursor too
        h.txn.fail_when = refuse
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


# -- a job that keeps failing, and Kafka failing ------------------------------------------


class Flaky:
    """The emulated gemini, with one method made to raise an unexpected exception."""

    def __init__(self, inner: object, method: str, exc: Exception, times: int = 1_000) -> None:
        self.inner, self.method, self.exc, self.times = inner, method, exc, times
        self.calls = 0

    def __getattr__(self, name: str) -> object:
        attr = getattr(self.inner, name)
        if name != self.method:
            return attr

        def failing(*args: object, **kwargs: object) -> object:
            self.calls += 1
            if self.calls <= self.times:
                raise self.exc
            return attr(*args, **kwargs)

        return failing


def flaky_harness(method: str, exc: Exception, times: int = 1_000) -> tuple[TestHarness, Flaky]:
    inner, emulator = emulated_gemini(InProcessEmulator(FAST))
    flaky = Flaky(inner, method, exc, times)
    h = harness(gemini=flaky, batch_max_wait_s=1.0, poll_initial_s=1.0)
    h.emulator = emulator
    return start(h), flaky


@pytest.mark.parametrize(("method", "stage"), [("get", "track"), ("create", "submit")])
def test_a_job_that_keeps_failing_is_quarantined_with_error_results(
    method: str, stage: str
) -> None:
    """An unexpected exception for one job is retried, then the job is quarantined: every
    request gets 500 INTERNAL saying why; the process (and the partition) goes on."""
    h, flaky = flaky_harness(method, KeyError("candidates"))
    h.publish("a")
    h.publish("b")
    h.run_until(lambda: len(h.results()) == 2, max_passes=200, advance_s=5.0)
    assert flaky.calls == policy.QUARANTINE_AFTER
    for r in h.result_events():
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert r.error.status == "INTERNAL"
        assert "quarantined after 3 failed attempts" in r.error.message
        assert stage in r.error.message
        assert "KeyError" in r.error.message
    assert h.ledger.live(0) == {}
    assert h.sidecar.stats.jobs_quarantined == 1
    h.publish("c")  # the partition is not blocked
    h.run_until(lambda: len(h.results()) == 3, max_passes=200, advance_s=5.0)


def test_a_passing_failure_is_retried_not_quarantined() -> None:
    """Fewer failures than QUARANTINE_AFTER: the job is simply tried again and answered."""
    h, _ = flaky_harness("get", RuntimeError("blip"), times=policy.QUARANTINE_AFTER - 1)
    h.publish("a")
    h.run_until(h.results, max_passes=200, advance_s=5.0)
    (r,) = h.result_events()
    assert r.status is ResultStatus.OK
    assert h.sidecar.stats.jobs_quarantined == 0


def test_kafka_failures_back_off_and_rebuild_from_the_ledger() -> None:
    """A broker outage (poll raising, acks failing) never escapes the loop: the pass is
    forgotten, and once Kafka answers the partition is rebuilt and every request answered."""
    h = start(harness(emulator_config=FAST, batch_max_wait_s=1.0, poll_initial_s=1.0))
    h.publish("a")
    h.publish("b")
    real_poll = h.consumer.poll
    outage = {"polls": 2}

    def poll(timeout_s: float) -> list[Record]:
        if outage["polls"] > 0:
            outage["polls"] -= 1
            raise BrokerUnavailable("KafkaConnectionError (scripted)")
        return real_poll(timeout_s)

    h.consumer.poll = poll  # type: ignore[method-assign]
    assert h.sidecar.guarded_step() is not None
    assert h.sidecar.guarded_step() is not None
    h.producer.fail_next = 1  # the INTENT's ack fails: nothing of that pass may survive
    h.advance(2.0)
    while h.sidecar.guarded_step() is None:
        h.advance(1.0)
    assert h.sidecar.stats.kafka_failures == 3
    assert h.committed() == 0
    for _ in range(100):
        if len(h.results()) == 2:
            break
        h.advance(1.0)
        assert h.sidecar.guarded_step() is None
    assert sorted(r.request_id for r in h.result_events()) == ["a", "b"]
    assert all(r.status is ResultStatus.OK for r in h.result_events())
    assert h.committed() == 2
    assert created(h) == 1


class RacingAdmin:
    """A KafkaAdminClient whose topic another replica created a moment ago."""

    def __init__(self, invisible_describes: int) -> None:
        self.invisible = invisible_describes
        self.creates = 0

    def describe_topics(self, topics: list[str]) -> list[dict[str, object]]:
        if self.invisible > 0:
            self.invisible -= 1
            return [{"topic": topics[0], "error_code": 3, "partitions": []}]
        return [{"topic": topics[0], "error_code": 0, "partitions": [{}, {}]}]

    def create_topics(self, *args: object, **kwargs: object) -> None:
        self.creates += 1
        raise TopicAlreadyExistsError("created by the other replica")


def test_topic_created_by_a_racing_replica_is_waited_for_not_fatal() -> None:
    """Replicas starting together: TopicAlreadyExists, and the topic not yet visible, is
    success after a short wait, not exit 2 'could not create topic'."""
    admin = Admin.__new__(Admin)
    racing = RacingAdmin(invisible_describes=4)  # the first check, then three after create
    admin._admin = racing
    assert admin.ensure_topic("llm.requests", 2) == 2
    assert racing.creates == 1


def test_topic_that_never_shows_up_is_still_an_error() -> None:
    admin = Admin.__new__(Admin)
    admin._admin = RacingAdmin(invisible_describes=10**9)
    admin.visible_timeout_s = 0.3
    with pytest.raises(ConfigError, match="could not create topic"):
        admin.ensure_topic("llm.requests", 2)


# -- records deleted before they were read ------------------------------------------------


def test_records_deleted_before_the_committed_offset_are_reported_not_skipped_silently(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Retention deleted offsets 0..1 that the group never read: an error with the range, a
    counter, and the rest of the partition is still answered."""
    h = harness(emulator_config=FAST, batch_max_wait_s=1.0, poll_initial_s=1.0)
    for i in range(3):
        h.publish(f"r{i}")
    h.kafka.delete_before(h.settings.request_topic, 0, 2)
    start(h)
    h.run_until(h.results, max_passes=60)
    assert [r.request_id for r in h.result_events()] == ["r2"]
    assert h.sidecar.stats.records_lost == 2
    out = capsys.readouterr().out
    assert "deleted before they were read" in out
    assert "first_offset=0" in out
    assert "last_offset=1" in out
    assert h.committed() == 3


def test_out_of_range_reset_while_running_is_reported() -> None:
    """The consumer fell behind retention mid-run and jumped ahead: counted, not silent."""
    h = start(harness(emulator_config=FAST, batch_max_wait_s=1.0, poll_initial_s=1.0))
    h.publish("r0")
    h.step()
    h.consumer.pause([0])
    for i in range(1, 6):
        h.publish(f"r{i}")
    h.kafka.delete_before(h.settings.request_topic, 0, 4)
    h.consumer.resume_all()
    h.run_until(lambda: len(h.results()) == 3, max_passes=60)
    assert sorted(r.request_id for r in h.result_events()) == ["r0", "r4", "r5"]
    assert h.sidecar.stats.records_lost == 3
