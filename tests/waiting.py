"""Deadline-based waiting for tests: poll a condition instead of sleeping a guessed time.

Bare ``time.sleep(n)`` makes tests either flaky (n too small on a busy 2-core CI box) or slow
(n too large everywhere else). Import it as ``from waiting import wait_until`` (pytest puts
``tests/`` on ``sys.path`` because ``tests/conftest.py`` lives there).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy and return that value.

    Raises ``TimeoutError`` after ``timeout`` seconds, naming ``message`` (a string or a
    callable, so the failure can show the latest state) and the last value seen. The predicate
    is always called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(
                f"timed out after {timeout:.1f} s waiting for {text}; last {value!r}"
            )
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
