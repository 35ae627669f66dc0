"""A job over the model's enqueued-token cap is split, never left waiting forever nor
answered with errors (issue 16, finding 11), on the harness and the in-process emulator."""

from __future__ import annotations

from loop_support import answered, assert_answered_once, emu, fast, make

from connector.core.records import ResultStatus
from connector.testing import TestHarness

CYRILLIC = "Расскажи коротко о погоде в Москве и в Новосибирске. " * 8  # noqa: RUF001


def _publish(h: TestHarness, n: int) -> list[str]:
    ids = [f"ru-{i}" for i in range(n)]
    for rid in ids:
        h.publish(rid, CYRILLIC)
    return ids


def test_a_job_refused_as_alone_over_the_cap_is_split_until_it_fits() -> None:
    """The provider's cap is below what the sidecar was told (CONNECTOR_TOKEN_BUDGET): the
    one job of 24 Cyrillic prompts is refused with 429 "0 queued, N requested"; it is split
    in halves, and halves again, until each fits, and every request is answered OK."""
    h = make(fast(enqueued_token_cap=6_000), batch_max_requests=100)
    h.consumer.assign(0)
    ids = _publish(h, 24)
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0), max_passes=200)
    assert_answered_once(h, ids, ResultStatus.OK)
    assert h.sidecar.stats.jobs_split >= 1
    created = emu(h).created_by_display_name()
    assert len(created) >= 4  # 24 prompts of ~1,300 tokens (as sent) need 4+ jobs of 6,000
    assert set(created.values()) == {1}


def test_batches_seal_under_the_configured_cap_so_no_create_is_refused() -> None:
    """The estimate counts Cyrillic as the SDK sends it: with the cap configured as the
    provider has it, batches seal under it and no create is refused for it."""
    h = make(fast(enqueued_token_cap=6_000), batch_max_requests=100, token_budget=6_000)
    h.consumer.assign(0)
    ids = _publish(h, 24)
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0), max_passes=200)
    assert_answered_once(h, ids, ResultStatus.OK)
    assert h.sidecar.stats.jobs_split == 0
    assert emu(h).calls().get("faults.rate_limited", 0) == 0
    assert all(r.status is ResultStatus.OK for r in h.result_events())
