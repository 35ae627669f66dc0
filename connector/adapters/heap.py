"""Give freed heap memory back to the OS after a burst, so RSS follows what is live.

CPython frees a burst's objects (a 5,000-request create, a chunk of results, a poll of
records), but glibc's malloc keeps the freed pages for reuse: RSS stays at the burst's
high-water mark, which is what a Kubernetes memory limit sees. `malloc_trim(0)` returns
them (measured: 155 -> 119 MB after taking 100,000 requests in). It walks the heap, so it
runs on an idle pass after activity, at most every few seconds. Where glibc is absent
(musl, macOS) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable

__all__ = ["HeapTrimmer", "trim"]


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return fn


_TRIM = _malloc_trim()


def trim() -> bool:
    """Return freed heap pages to the OS; False where the C library cannot."""
    return _TRIM is not None and bool(_TRIM(0))


class HeapTrimmer:
    """Trims on the first idle pass after some activity, at most every `min_interval_s`."""

    def __init__(self, min_interval_s: float = 5.0, trim_fn: Callable[[], bool] = trim) -> None:
        self._min = min_interval_s
        self._trim = trim_fn
        self._seen = 0
        self._last = float("-inf")
        self.trims = 0

    def after_pass(self, idle: bool, activity: int, now: float) -> None:
        """`activity`: a counter that grows with work done (records, results, jobs)."""
        if idle and activity != self._seen and now - self._last >= self._min:
            self._seen, self._last = activity, now
            self._trim()
            self.trims += 1
