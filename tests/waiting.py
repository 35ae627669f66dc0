"""Deadline-based waiting for tests: poll a condition instead of sleeping a guessed time.

Bare ``time.sleep(n)`` makes tests either flaky (n too small on a busy 2-core CI box) or slow
(n too large everywhere else). The one implementation lives in `connector.testing` (shipped,
so users' tests can wait the same way); this module keeps the short import for the suite.
"""

from connector.testing import wait_until

__all__ = ["wait_until"]
