"""Free spool space is checked before a file is written: the pure decision, then the loop.

The loop tests run the real passes on the harness with the spool's `free` function swapped
for a box the test fills: no disk is filled to test it.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from connector.core import spool
from connector.core.records import EntryState, ResultStatus
from connector.stages.spool import SpoolGate
from connector.testing import TestHarness
from tests.unit.loop_support import answered, assert_answered_once, make, publish

BYTES = st.integers(min_value=0, max_value=10**13)


@given(free=BYTES, need=BYTES, reserve=BYTES, pending=BYTES, now=st.floats(0, 1e9))
def test_a_file_goes_only_when_it_and_the_reserve_fit(
    free: int, need: int, reserve: int, pending: int, now: float
) -> None:
    d = spool.decide(free, need, reserve, now, None, pending)
    assert d.go == (free >= pending + need + reserve)
    if d.go:
        assert not d.warn
    else:
        assert d.warn  # the first wait is always said
        assert d.retry_at == now + spool.RETRY_S


def test_waiting_warns_once_per_period() -> None:
    first = spool.decide(10, 100, 0, 1000.0, None)
    again = spool.decide(10, 100, 0, 1000.0 + spool.RETRY_S, 1000.0)
    later = spool.decide(10, 100, 0, 1000.0 + spool.WARN_EVERY_S, 1000.0)
    assert (first.warn, again.warn, later.warn) == (True, False, True)
    assert not any(d.go for d in (first, again, later))


def test_input_file_bytes_is_the_batch_cap_plus_a_margin_per_line() -> None:
    assert spool.input_file_bytes(100_000_000, 1000) == 100_000_000 + 1000 * spool.JSONL_LINE_BYTES
    assert spool.input_file_bytes(-1, -1) == 0


def test_an_unreadable_spool_counts_as_full(tmp_path: Any) -> None:
    def broken(_: str) -> int:
        raise FileNotFoundError("no such directory")

    gate = SpoolGate(str(tmp_path), 0, free=broken)
    with capture_logs() as logs:
        assert gate.wait_for_room("input", 1, 5.0) == 5.0 + spool.RETRY_S
    assert [e["event"] for e in logs] == [
        "spool directory unusable",
        "not enough free spool space; waiting",
    ]
    assert gate.stats.spool_waits == 1


def test_open_files_hold_their_room_until_closed(tmp_path: Any) -> None:
    """Two files started in one pass cannot both take the same free space."""
    gate = SpoolGate(str(tmp_path), 0, free=lambda _: 150)
    first = gate.open("gbc-results-", 100)
    assert gate.pending_bytes() == 100
    assert gate.wait_for_room("results", 100, 0.0) is not None  # 150 - 100 held < 100
    first.write(b"x" * 60)
    first.flush()
    assert gate.pending_bytes() == 40  # what is written is out of the free space already
    first.close()
    assert gate.pending_bytes() == 0
    assert gate.wait_for_room("results", 100, 0.0) is None


def test_files_are_made_in_the_spool_directory(tmp_path: Any) -> None:
    gate = SpoolGate(str(tmp_path))
    with gate.open("gbc-test-") as f:
        f.write(b"x")
        assert gate.free(gate.directory) > 0
    assert SpoolGate("").directory  # the system temp dir


FILE_JOB = {
    "batch_inline_max_bytes": 1,  # every batch goes through an uploaded JSONL file
    "batch_max_requests": 5,
    "batch_max_bytes": 10_000_000,
    "max_request_bytes": 1_000_000,
    "spool_reserve_bytes": 1_000,
    "spool_results_bytes": 50_000_000,
}
INPUT_NEED = spool.input_file_bytes(10_000_000, 5) + 1_000


def _gated(h: TestHarness, free: list[int]) -> None:
    h.sidecar.ctx.spool.free = lambda _: free[0]


def test_a_file_job_waits_for_spool_space_then_goes() -> None:
    h = make(**FILE_JOB)
    free = [INPUT_NEED - 1]
    _gated(h, free)
    h.consumer.assign(0)
    ids = publish(h, "s", 5)
    with capture_logs() as logs:
        for _ in range(5):
            h.step(advance_s=spool.RETRY_S)
    (live,) = h.ledger.live(0).values()
    assert live.state is EntryState.INTENT  # recorded, offsets committed, not uploaded
    assert live.input_file is None
    assert h.emulator is not None
    assert not h.emulator.created_by_display_name()
    assert h.sidecar.stats.spool_waits >= 2
    waits = [e for e in logs if e["event"] == "not enough free spool space; waiting"]
    assert waits
    assert (waits[0]["file"], waits[0]["need_bytes"]) == ("input", INPUT_NEED - 1_000)
    assert len(waits) < h.sidecar.stats.spool_waits  # rate-limited, not once per pass
    assert not h.results()
    free[0] = 10**12
    h.run_until(lambda: answered(h, ids), advance_s=spool.RETRY_S)
    assert_answered_once(h, ids, ResultStatus.OK)


def test_a_results_download_waits_for_spool_space_then_goes() -> None:
    h = make(**FILE_JOB)
    free = [INPUT_NEED + 10]  # room for the input file, not for a results file
    _gated(h, free)
    h.consumer.assign(0)
    ids = publish(h, "r", 5)
    with capture_logs() as logs:
        h.run_until(lambda: any(e.get("file") == "results" for e in logs), advance_s=spool.RETRY_S)
        for _ in range(3):
            h.step(advance_s=spool.RETRY_S)
    (live,) = h.ledger.live(0).values()
    assert live.state is EntryState.SUBMITTED  # SUCCEEDED remotely
    assert live.provider_job
    assert not h.results()  # nothing delivered, nothing lost
    assert not [e for e in logs if e.get("level") in ("error", "critical")]
    free[0] = 10**12
    h.run_until(lambda: answered(h, ids), advance_s=spool.RETRY_S)
    assert_answered_once(h, ids, ResultStatus.OK)
    assert not h.ledger.live(0)
