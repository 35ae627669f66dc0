"""Batch keys interleaved in one partition (two models alternating offset by offset): each
job's offsets are every other one. A crash mid-delivery still resumes each job at its
cursor: every request answered once, each job's results in its offset order."""

from __future__ import annotations

import pytest

from connector.core.records import ResultStatus
from tests.unit.loop_support import answered, assert_no_job_created_twice, make

MODELS = ("gemini-2.5-flash", "gemini-2.5-flash-lite")


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_interleaved_jobs_crash_mid_delivery_resume_at_their_cursors(guarantee: str) -> None:
    n = 40
    h = make(
        batch_max_requests=n // 2, processing_guarantee=guarantee, batch_inline_max_bytes=1_000
    )
    h.sidecar.tracker.chunk_requests = 5
    ids = [f"il-{i}" for i in range(n)]
    for i, rid in enumerate(ids):
        h.publish(rid, f"prompt {rid}", model=MODELS[i % 2], partition=0)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 10)
    before = len(h.results())
    assert before < n  # mid-delivery
    cursors = {e.job_id: e.delivered for e in h.ledger.live(0).values()}
    assert any(c is not None and c.scanned > 0 for c in cursors.values())

    nxt = h.restart(0)  # a crash: the next owner reads the cursors from the ledger
    nxt.sidecar.tracker.chunk_requests = 5
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0))
    by_id = nxt.results_by_id()
    for rid in ids:
        assert len(by_id[rid]) == 1, f"{rid}: {len(by_id[rid])} results"
        assert by_id[rid][0].status is ResultStatus.OK
    jobs: dict[str | None, list[int]] = {}
    for r in nxt.result_events():  # the topic's order
        assert r.model == MODELS[r.source_offset % 2]
        jobs.setdefault(r.batch_job, []).append(r.source_offset)
    assert len(jobs) == 2
    for offsets in jobs.values():
        assert offsets == sorted(offsets)  # each job's results in its offset order
        assert len({o % 2 for o in offsets}) == 1
    assert_no_job_created_twice(nxt)
    # The re-reads read each chunk's span through: the other job's records were read (and
    # dropped), never answered; each job's requests were read back chunk by chunk.
    assert all(len(offsets) <= 5 for _, offsets in nxt.reader.reads)
    assert nxt.reader.fetched == sum(2 * len(offsets) - 1 for _, offsets in nxt.reader.reads)
