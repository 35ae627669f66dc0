"""The simulator quiets structlog process-wide (`run.quiet_logs`): each test here puts the
configuration back, so tests that run after it still see the sidecar's log lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    try:
        yield
    finally:
        structlog.configure(**saved)
