"""Keeps `make unit` fast: reports the run's time and holds the loop tests to a budget.

The loop tests (`test_loop_*.py`) drive whole sidecar passes, so they are the ones that
could creep up; their summed durations (set-up, call and tear-down) must stay under
`CONNECTOR_LOOP_TESTS_BUDGET_S` (default 30 s) or the run fails and names the slowest.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict

import pytest

LOOP_PREFIX = "test_loop_"
BUDGET_S = float(os.environ.get("CONNECTOR_LOOP_TESTS_BUDGET_S", "30"))

_started = time.monotonic()
_loop_s: dict[str, float] = defaultdict(float)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if LOOP_PREFIX in report.nodeid.split("::", 1)[0]:
        _loop_s[report.nodeid] += report.duration


def _over_budget() -> bool:
    return sum(_loop_s.values()) > BUDGET_S


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _loop_s and _over_budget() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _loop_s:
        return
    total = sum(_loop_s.values())
    line = (
        f"unit run {time.monotonic() - _started:.1f} s wall; loop tests {len(_loop_s)} "
        f"in {total:.1f} s (budget {BUDGET_S:.0f} s)"
    )
    if total > BUDGET_S:
        slowest = sorted(_loop_s.items(), key=lambda kv: -kv[1])[:5]
        terminalreporter.write_line("OVER BUDGET: " + line, red=True)
        for nodeid, s in slowest:
            terminalreporter.write_line(f"  {s:6.2f} s  {nodeid}")
    else:
        terminalreporter.write_line(line)
