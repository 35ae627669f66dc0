"""An advanceable clock: wall time plus a virtual offset, so tests reach 48 h without waiting."""

from __future__ import annotations

import threading
import time


class Clock:
    """Wall-clock seconds shifted by an offset that only grows."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """Current emulator time in epoch seconds."""
        return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Jump forward by `seconds` (negative values are refused) and return the new time."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            self._offset += seconds
        return self.now()

    @property
    def offset(self) -> float:
        """Seconds added to wall time so far."""
        return self._offset
