"""Lookups by display name: they page only as far as needed, and a failed one delays only
the INTENTs that needed it (the real adapter and SDK against the in-process emulator)."""

from __future__ import annotations

from typing import Any

import pytest
from loop_support import LOOKUP_DELAY_S, emu, make, publish

from connector.adapters.gemini import Gemini
from connector.core.records import EntryState, JobInput, Kind
from connector.emulator.config import EmulatorConfig
from connector.errors import ProviderRetryable
from connector.testing import InProcessEmulator, emulated_gemini

JOBS = 250  # the adapter lists 100 per page: three pages


@pytest.fixture(scope="module")
def many_jobs() -> tuple[Gemini, InProcessEmulator, list[str]]:
    gemini, emulator = emulated_gemini(InProcessEmulator(EmulatorConfig(max_concurrent_jobs=JOBS)))
    names = []
    one = [JobInput("0", {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}, {"key": "0"})]
    for i in range(JOBS):
        name = f"old:job-{i}"
        gemini.create("gemini-2.5-flash", Kind.GENERATE, name, 0, inline=one)
        names.append(name)
    return gemini, emulator, names  # oldest first; the provider lists newest first


def lists(emulator: InProcessEmulator, lookup: Any) -> tuple[Any, int]:
    before = emulator.calls().get("batches.list", 0)
    found = lookup()
    return found, emulator.calls().get("batches.list", 0) - before


def test_lookup_stops_at_the_page_of_the_last_wanted_name(many_jobs: Any) -> None:
    gemini, emulator, names = many_jobs
    found, calls = lists(emulator, lambda: gemini.find_by_display_names({names[-1]}))
    assert set(found) == {names[-1]}
    assert calls == 1  # the newest job is on the first page
    wanted = {names[-1], names[-150]}  # first and second page
    found, calls = lists(emulator, lambda: gemini.find_by_display_names(wanted))
    assert set(found) == wanted
    assert calls == 2


def test_lookup_of_a_missing_name_reads_every_page(many_jobs: Any) -> None:
    gemini, emulator, names = many_jobs
    found, calls = lists(emulator, lambda: gemini.find_by_display_names({"old:never", names[0]}))
    assert set(found) == {names[0]}
    assert calls == 3


def test_no_lookup_no_list_call(many_jobs: Any) -> None:
    gemini, emulator, _ = many_jobs
    found, calls = lists(emulator, lambda: gemini.find_by_display_names(set()))
    assert found == {}
    assert calls == 0


def test_failed_lookup_does_not_delay_fresh_intents() -> None:
    """A recovered INTENT needs a lookup, a freshly sealed one does not: when the lookup
    fails, only the recovered one backs off; the fresh one is created in the same pass."""
    h = make()
    publish(h, "old", 2)  # offsets 0, 1: the dead owner's INTENT
    recovered = h.entry("p0-0-dead", (0, 1))
    h.seed_ledger(recovered)
    h.seed_committed(2)
    fresh_ids = publish(h, "new", 2)  # offsets 2, 3: sealed by the next owner
    nxt = h.restart(0)
    nxt.step(2)  # recover (and rewind); consume 2 and 3 into an open batch
    assert len(nxt.sidecar.batcher) == 2

    def refuse(wanted: set[str]) -> dict[str, str]:
        raise ProviderRetryable("list refused (scripted)", 503, "UNAVAILABLE")

    nxt.gemini.find_by_display_names = refuse
    nxt.step(advance_s=LOOKUP_DELAY_S)  # seal; the recovered INTENT's lookup is due: refused
    created = emu(nxt).created_by_display_name()
    assert len(created) == 1
    assert recovered.display_name not in created
    jobs = {t.entry.job_id: t for t in nxt.sidecar.owned[0].jobs.values()}
    assert jobs["p0-0-dead"].entry.state is EntryState.INTENT
    assert jobs["p0-0-dead"].failures == 1
    fresh = [t for j, t in jobs.items() if j != "p0-0-dead"]
    assert [t.entry.state for t in fresh] == [EntryState.SUBMITTED]
    assert fresh[0].entry.offsets == (2, 3)
    assert len(fresh_ids) == 2


def test_recovered_intent_waits_for_a_late_create_started_after_the_claim() -> None:
    """A8: the previous owner's create may start up to the claim's freshness window after
    its claim and run until the server timeout, which the SDK rounds up (4.5 s goes out as
    5): a job landing 5.1 s after the takeover is adopted, never created a second time."""
    from loop_support import answered

    h = make(http_timeout_s=4.5)
    ids = publish(h, "lc", 2)
    intent = h.entry("p0-0-dead", (0, 1))
    h.seed_ledger(intent)
    h.seed_committed(2)
    nxt = h.restart(0)
    nxt.step()  # taken over now
    nxt.step(advance_s=4.6)  # past the raw HTTP timeout
    nxt.step(advance_s=0.5)
    nxt.create_job(intent)  # the previous owner's create lands
    nxt.run_until(lambda: answered(nxt, ids) and not nxt.ledger.live(0))
    assert emu(nxt).created_by_display_name() == {intent.display_name: 1}


def test_a_create_failing_without_a_provider_error_is_looked_up_before_another() -> None:
    """A9: the create reached the server but the SDK could not read the reply (or an
    unmapped transport error): the job is looked up, and adopted, before any new create."""
    from loop_support import answered

    h = make()
    h.consumer.assign(0)
    ids = publish(h, "np", 2)
    real = h.gemini.create
    calls = {"n": 0}

    def create(*args: Any, **kwargs: Any) -> str:
        calls["n"] += 1
        name: str = real(*args, **kwargs)
        if calls["n"] == 1:
            raise ValueError("could not parse the reply (scripted)")
        return name

    h.gemini.create = create
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert calls["n"] == 1
    assert list(emu(h).created_by_display_name().values()) == [1]
