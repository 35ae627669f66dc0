"""Delivery takes what results need from the side log written at intake (issue 18: no
re-read in the common case), gives the very results a re-read gives, and re-reads after a
restart, whose process never took those requests in."""

from __future__ import annotations

from typing import Any

from connector.testing import TestHarness, harness


def publish(h: TestHarness, n: int) -> None:
    for i in range(n):
        model = "gemini-2.5-flash" if i % 2 else "gemini-2.5-pro"  # two keys interleaved
        h.publish(
            f"r-{i}",
            prompt=f"Привет {i}",
            model=model,
            metadata={"клиент": f"т-{i}"},
            created_ms=1_000 + i,
        )


def answers(h: TestHarness) -> list[tuple[Any, ...]]:
    out = []
    for rec in h.results():
        ev = h.codec.decode_result(rec.value or b"")
        out.append(
            (
                rec.key,
                ev.request_id,
                ev.status,
                ev.model,
                ev.kind,
                ev.response_json,
                ev.metadata,
                ev.request_created_ms,
                ev.source_partition,
                ev.source_offset,
                ev.cost_usd,
            )
        )
    return sorted(out, key=lambda a: a[1])


def run(side: bool) -> TestHarness:
    h = harness(batch_max_requests=4)
    if not side:
        h.sidecar.ctx.sidelog = None
        h.sidecar.intake.sidelog = None
    publish(h, 8)
    h.consumer.assign(0)
    h.run_until(lambda: len(h.results()) >= 8)
    return h


def test_results_from_the_side_log_are_those_a_re_read_gives() -> None:
    side, reread = run(side=True), run(side=False)
    assert side.sidecar.ctx.sidelog is not None
    assert side.sidecar.ctx.sidelog.hits >= 2  # one per job's chunk
    assert side.reader.fetched == 0, "delivery re-read the request topic"
    assert reread.reader.fetched >= 8
    assert answers(side) == answers(reread)
    assert len(answers(side)) == 8


def test_after_a_restart_delivery_re_reads() -> None:
    h = harness(batch_max_requests=8)
    publish(h, 8)
    h.consumer.assign(0)
    h.run_until(lambda: h.sidecar.stats.jobs_created >= 1)
    nxt = h.restart(0)
    nxt.run_until(lambda: len(nxt.results()) >= 8)
    assert nxt.sidecar.ctx.sidelog is not None
    assert nxt.sidecar.ctx.sidelog.hits == 0
    assert nxt.reader.fetched >= 8
    assert sorted(e.request_id for e in nxt.result_events()) == [f"r-{i}" for i in range(8)]
    assert {e.metadata["клиент"] for e in nxt.result_events()} == {f"т-{i}" for i in range(8)}
