"""Shared set-up for the loop tests (`test_loop_*.py`): a fast harness and the invariants.

Every loop test runs the real `Sidecar` passes on `connector.testing` doubles and the real
google-genai SDK against the in-process emulator; time moves only through the manual clock
and the emulator's clock (`h.advance`, `h.step(advance_s=...)`), never by sleeping.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from connector.core import policy
from connector.core.partitions import Tracked
from connector.core.records import LedgerEntry, ResultEvent, ResultStatus
from connector.emulator.config import EmulatorConfig
from connector.testing import InProcessEmulator, TestHarness, harness

HTTP_TIMEOUT_S = 5.0
"""A short HTTP timeout, on the manual clock."""
LOOKUP_DELAY_S = policy.recovered_lookup_delay(HTTP_TIMEOUT_S)
"""Recovered INTENTs wait this long before their lookup: the server timeout (the HTTP
timeout rounded up) plus the claim's freshness window."""


def fast(**knobs: Any) -> EmulatorConfig:
    """An emulator whose jobs finish as soon as they are polled (unless knobs say otherwise)."""
    values: dict[str, Any] = {"queue_delay_s": 0, "processing_delay_s": 0, "per_request_delay_s": 0}
    values.update(knobs)
    return EmulatorConfig(**values)


def make(emulator: EmulatorConfig | None = None, **settings: Any) -> TestHarness:
    """A harness with a quick batcher and a short HTTP timeout (both overridable)."""
    settings.setdefault("batch_max_wait_s", 1.0)
    settings.setdefault("http_timeout_s", HTTP_TIMEOUT_S)
    return harness(emulator_config=emulator or fast(), **settings)


def publish(h: TestHarness, prefix: str, n: int, partition: int = 0, **fields: Any) -> list[str]:
    """Publish `n` valid requests `prefix-0..n-1`; returns their ids."""
    ids = [f"{prefix}-{i}" for i in range(n)]
    for rid in ids:
        h.publish(rid, f"prompt {rid}", partition=partition, **fields)
    return ids


def emu(h: TestHarness) -> InProcessEmulator:
    """The harness's in-process emulator."""
    assert h.emulator is not None
    return h.emulator


def answered(h: TestHarness, ids: Iterable[str]) -> bool:
    """Every id has at least one result."""
    return set(ids) <= set(h.results_by_id())


def settled(h: TestHarness, ids: Iterable[str], partition: int = 0) -> bool:
    """Every id answered and no job left in the ledger of `partition`."""
    return answered(h, ids) and not h.ledger.live(partition)


def latest(h: TestHarness) -> dict[str, ResultEvent]:
    """The last result per request id."""
    return {rid: rs[-1] for rid, rs in h.results_by_id().items()}


def assert_no_job_created_twice(h: TestHarness) -> None:
    created = emu(h).created_by_display_name()
    twice = {name: n for name, n in created.items() if n != 1}
    assert not twice, f"display names created more than once: {twice}"


def assert_answered_once(h: TestHarness, ids: Iterable[str], status: ResultStatus) -> None:
    """Each id has exactly one result, with `status`."""
    by_id = h.results_by_id()
    for rid in ids:
        got = by_id.get(rid, [])
        assert len(got) == 1, f"{rid}: {len(got)} results"
        assert got[0].status is status, f"{rid}: {got[0]}"


def create_job_in_state(h: TestHarness, entry: LedgerEntry, state: str | None) -> str:
    """Create `entry`'s job at the emulator and hold it RUNNING, or force it into `state`.

    The job gets a long processing time (jobs created later keep the harness's knobs), so
    it stays where it is put until the test forces it on.
    """
    e = emu(h)
    before = e.service.config.processing_delay_s
    e.update_config(processing_delay_s=HOLD_S)
    try:
        job = h.create_job(entry)
        e.stats()  # the emulator starts due jobs on any read: this one, with the hold
    finally:
        e.update_config(processing_delay_s=before)
    if state is not None:
        e.force_state(job, state)
    return job


HOLD_S = 10 * 24 * 3600.0
"""Processing time of a held job: longer than any test moves the clocks."""


def stepping(h: TestHarness, predicate: Callable[[], Any], advance_s: float = 0.2) -> Any:
    """A `wait_until` predicate that runs a pass before each look."""

    def step_then_look() -> Any:
        h.step(advance_s=advance_s)
        return predicate()

    return step_then_look


def the_job(h: TestHarness) -> Tracked:
    """The one job partition 0 tracks."""
    [t] = h.sidecar.owned[0].jobs.values()
    return t
