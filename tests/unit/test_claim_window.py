"""A create goes out only while its claim is fresh, checked right before the request is
written: a replica that stalls between its claim and the send (GC, SIGSTOP, a frozen
container) past the new owner's lookup delay must not create the job a second time (sim
seeds 249, 1880, 2016, 2029: they paid twice before this check)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from loop_support import answered, emu, make, publish

from connector.core.policy import CLAIM_FRESH_S, ClaimWindow
from connector.core.records import JobInput, Kind
from connector.errors import ClaimExpired
from connector.testing import emulated_gemini

ONE = [JobInput("0", {"contents": [{"role": "user", "parts": [{"text": "x"}]}]}, {"key": "0"})]


def ticks(*values: float) -> Any:
    """A clock returning `values` in turn, then the last one for ever."""
    it: Iterator[float] = iter(values)
    last = [values[-1]]

    def clock() -> float:
        last[0] = next(it, last[0])
        return last[0]

    return clock


def test_a_window_passes_until_its_deadline_and_refuses_after() -> None:
    ClaimWindow(10.0, lambda: 10.0).check()
    with pytest.raises(ClaimExpired, match="claim is"):
        ClaimWindow(10.0, lambda: 10.001).check()


def test_a_stall_after_the_adapter_is_entered_is_caught_before_the_request_goes_out() -> None:
    """Real SDK, in-process emulator: the window is fresh when `create` is entered and
    stale when the SDK hands the request to httpx (the stall falls inside the SDK's own
    work): nothing reaches the server."""
    gemini, emulator = emulated_gemini()
    window = ClaimWindow(1.0, ticks(0.5, 5.0))
    with pytest.raises(ClaimExpired):
        gemini.create("gemini-2.5-flash", Kind.GENERATE, "sim:stalled", 0, inline=ONE, claim=window)
    assert emulator.calls().get("batches.create", 0) == 0
    fresh = ClaimWindow(1.0, ticks(0.5))
    name = gemini.create("gemini-2.5-flash", Kind.GENERATE, "sim:fresh", 0, inline=ONE, claim=fresh)
    assert name.startswith("batches/")
    assert emulator.calls()["batches.create"] == 1


def test_other_requests_are_not_checked() -> None:
    """The window covers the create only: a job read on the same thread afterwards goes out
    whatever the clock says."""
    gemini, _ = emulated_gemini()
    name = gemini.create(
        "gemini-2.5-flash", Kind.GENERATE, "sim:j", 0, inline=ONE, claim=ClaimWindow(1.0, ticks(0))
    )
    assert gemini.get(name).name == name


def test_a_create_stalled_past_its_claim_is_claimed_again_and_created_once() -> None:
    """The loop: the first create stalls past `CLAIM_FRESH_S` after its claim; it is not
    sent, not counted as a failure or an unclear create (no lookup delay), and the next pass
    claims again and creates the job once."""
    h = make()
    h.consumer.assign(0)
    ids = publish(h, "cw", 2)
    real = h.gemini.create
    stalls = {"n": 0}

    def stalling(*args: Any, **kwargs: Any) -> str:
        if stalls["n"] == 0:
            stalls["n"] += 1
            h.advance(CLAIM_FRESH_S + 5.0)  # the process stops between claim and send
        name: str = real(*args, **kwargs)
        return name

    h.gemini.create = stalling
    h.run_until(lambda: stalls["n"] == 1)  # sealed, claimed, stalled: not sent
    assert emu(h).calls().get("batches.create", 0) == 0
    h.step()  # claimed again at once (no failure back-off, no lookup delay) and created
    assert emu(h).calls().get("batches.create", 0) == 1
    h.run_until(lambda: answered(h, ids) and not h.ledger.live(0))
    assert list(emu(h).created_by_display_name().values()) == [1]
    assert emu(h).calls()["batches.create"] == 1


def test_the_adapters_own_client_checks_the_window_over_real_http() -> None:
    """The production wiring: `Gemini` builds its SDK client itself (the hook comes with
    `http_options`) and talks HTTP to a server; a stale window sends nothing there."""
    from connector.adapters.gemini import Gemini
    from connector.emulator.config import EmulatorConfig
    from connector.emulator.server import EmulatorServer

    with EmulatorServer(EmulatorConfig(), host="127.0.0.1", port=0) as srv:
        gemini = Gemini(api_key="test-key", base_url=srv.base_url, timeout_s=10.0)
        try:
            with pytest.raises(ClaimExpired):
                gemini.create(
                    "gemini-2.5-flash",
                    Kind.GENERATE,
                    "sim:late",
                    0,
                    inline=ONE,
                    claim=ClaimWindow(1.0, ticks(0.5, 5.0)),
                )
            assert gemini.find_by_display_names({"sim:late"}) == {}
            name = gemini.create(
                "gemini-2.5-flash",
                Kind.GENERATE,
                "sim:on-time",
                0,
                inline=ONE,
                claim=ClaimWindow(1.0, ticks(0.5)),
            )
            assert gemini.find_by_display_names({"sim:on-time"}) == {"sim:on-time": name}
        finally:
            gemini.close()
