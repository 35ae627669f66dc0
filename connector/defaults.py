"""Default values shared by the settings table and the core's own config objects.

One source: `config.OPTIONS` (flags, env vars, README table), `batcher.BatchLimits` and
`policy.RetryPolicy` all read these, so a default cannot differ between them.
"""

BATCH_MAX_REQUESTS = 1000
BATCH_MAX_BYTES = 100_000_000
BATCH_INLINE_MAX_BYTES = 19_000_000
"""Under Gemini's 20 MB inline create limit, with room for the envelope."""
BATCH_MAX_WAIT_S = 5.0
MAX_FAILED_RETRIES = 2
MAX_ATTEMPTS = 5
POLL_INITIAL_S = 5.0
POLL_MAX_S = 120.0
POLL_FACTOR = 1.5
