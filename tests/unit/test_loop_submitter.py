"""The submitter in the loop: create once, look up when unsure, stay within the quota share."""

from __future__ import annotations

from typing import Any

import pytest
from loop_support import (
    HOLD_S,
    LOOKUP_DELAY_S,
    assert_answered_once,
    assert_no_job_created_twice,
    emu,
    fast,
    make,
    publish,
    settled,
)

from connector.core.records import EntryState, ResultStatus
from connector.errors import ProviderRetryable
from connector.testing import TestHarness


def sealed_and_submitting(h: TestHarness, n: int = 3, prefix: str = "s") -> list[str]:
    """Publish, start the partition, consume; the next pass seals and submits."""
    ids = publish(h, prefix, n)
    h.consumer.assign(0)
    h.step(2)
    return ids


def test_fresh_intents_are_created_without_a_lookup() -> None:
    h = make()
    ids = sealed_and_submitting(h)
    h.run_until(lambda: settled(h, ids))
    assert emu(h).calls().get("batches.list", 0) == 0
    assert emu(h).calls()["batches.create"] == 1


def test_unclear_create_failure_is_looked_up_before_it_is_retried() -> None:
    """A 5xx from create may hide a job that was created: the retry lists jobs first."""
    h = make()
    ids = sealed_and_submitting(h)
    emu(h).update_config(transient_error_rate=1.0)  # every call: 503 or 500
    h.step(advance_s=1.0)  # sealed, INTENT acked, create refused
    calls = emu(h).calls()
    assert calls.get("faults.transient") == 1
    assert calls.get("batches.create", 0) == 0
    assert h.committed(0) == 3  # the INTENT is durable all the same
    emu(h).update_config(transient_error_rate=0.0)
    h.run_until(lambda: settled(h, ids))
    calls = emu(h).calls()
    assert calls["batches.list"] == 1
    assert calls["batches.create"] == 1
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_create_that_landed_but_whose_answer_was_lost_is_adopted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The create reached the provider, the answer did not (a timeout): adopted, not redone."""
    h = make()
    ids = sealed_and_submitting(h)
    real_create = h.gemini.create
    lost: list[str] = []

    def create_then_time_out(*args: Any, **kwargs: Any) -> str:
        job: str = real_create(*args, **kwargs)
        if not lost:
            lost.append(job)
            raise ProviderRetryable("transport error: ReadTimeout", 503, "UNAVAILABLE")
        return job

    monkeypatch.setattr(h.gemini, "create", create_then_time_out)
    h.run_until(lambda: settled(h, ids))
    stats = h.sidecar.stats
    assert (stats.jobs_created, stats.jobs_adopted) == (0, 1)
    assert emu(h).calls()["batches.create"] == 1
    assert {r.batch_job for r in h.result_events()} == set(lost)
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_429_on_create_is_retried_without_a_lookup() -> None:
    """A 429 is a clear refusal: no job exists, so the retry goes straight to create."""
    h = make()
    ids = sealed_and_submitting(h)
    emu(h).update_config(max_concurrent_jobs=0)  # the provider's own limit: 429
    h.step(advance_s=1.0)
    assert emu(h).calls()["batches.create"] == 1
    assert h.sidecar.status()["intents"] == 1
    emu(h).update_config(max_concurrent_jobs=100)
    h.run_until(lambda: settled(h, ids))
    calls = emu(h).calls()
    assert calls.get("batches.list", 0) == 0
    assert calls["batches.create"] == 2  # the refused one, and the one that made the job
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_failed_lookup_is_retried_and_creates_once() -> None:
    h = make()
    ids = publish(h, "fl", 2)
    intent = h.entry("p0-0-dead", (0, 1))
    h.seed_ledger(intent)
    h.seed_committed(2)
    nxt = h.restart(0)
    nxt.step()
    emu(nxt).update_config(transient_error_rate=1.0)
    nxt.step(advance_s=LOOKUP_DELAY_S)  # the lookup is refused: nothing is created
    assert emu(nxt).calls().get("faults.transient") == 1
    assert nxt.sidecar.status()["intents"] == 1
    emu(nxt).update_config(transient_error_rate=0.0)
    nxt.run_until(lambda: settled(nxt, ids))
    assert emu(nxt).calls()["batches.list"] == 1
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}
    assert_answered_once(nxt, ids, ResultStatus.OK)


def test_rejected_create_gives_every_request_an_error_result() -> None:
    """A 4xx from create (here: the provider's inline size limit) is final for the job."""
    h = make()
    ids = sealed_and_submitting(h)
    emu(h).update_config(max_inline_request_bytes=10)
    h.run_until(lambda: settled(h, ids))
    for rs in h.results_by_id().values():
        (r,) = rs
        assert r.status is ResultStatus.ERROR
        assert r.error is not None
        assert (r.error.code, r.error.status) == (400, "INVALID_ARGUMENT")
    assert h.committed(0) == 3
    assert emu(h).created_by_display_name() == {}


def test_quota_holds_intents_back_but_offsets_still_commit() -> None:
    """max_jobs=1: a second batch waits as an INTENT until the first job ends."""
    h = make(emulator=fast(processing_delay_s=HOLD_S), max_jobs=1)
    ids = publish(h, "qa", 2, group="a") + publish(h, "qb", 2, group="b")
    h.consumer.assign(0)
    h.step(2)
    h.step(advance_s=1.0)
    status = h.sidecar.status()
    assert (status["submitted"], status["intents"]) == (1, 1)
    assert h.committed(0) == 4
    for _ in range(10):
        h.step(advance_s=1.0)
        assert h.sidecar.status()["submitted"] == 1
    assert emu(h).calls()["batches.create"] == 1  # held back by us, not refused by Gemini

    (first,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    emu(h).force_state(first.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: h.sidecar.status()["intents"] == 0)
    (second,) = [e for e in h.ledger.live(0).values() if e.state is EntryState.SUBMITTED]
    assert second.key.group != first.key.group
    emu(h).force_state(second.provider_job or "", "SUCCEEDED")
    h.run_until(lambda: settled(h, ids))
    assert_answered_once(h, ids, ResultStatus.OK)
    assert_no_job_created_twice(h)


def test_file_jobs_upload_then_create_and_clean_up() -> None:
    """Embeddings always go through an uploaded JSONL file; both files are deleted after."""
    h = make()
    ids = publish(h, "emb", 3, kind="embed", body={"content": {"parts": [{"text": "embed me"}]}})
    h.consumer.assign(0)
    h.run_until(lambda: settled(h, ids))
    files = emu(h).stats()["files"]
    assert files["uploaded_total"] == 1
    assert files["count"] == 0  # input and result files deleted once results are out
    assert emu(h).calls().get("batches.create_embeddings") == 1
    assert_answered_once(h, ids, ResultStatus.OK)
