"""Every knob of the emulator in one dataclass, so tests, the CLI and the control API agree."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

HOUR = 3600.0
GB = 1_000_000_000


@dataclass
class EmulatorConfig:
    """Knobs with defaults that behave like a quiet, healthy real service (only faster).

    Times are seconds of the emulator's clock, which tests can advance without sleeping.
    """

    api_key: str | None = None
    """If set, `x-goog-api-key` must equal it; otherwise any non-empty key is accepted."""

    # Lifecycle.
    queue_delay_s: float = 0.5
    """Minimum time a job stays PENDING after create (so a cancel right after create wins)."""
    processing_delay_s: float = 1.0
    """Fixed RUNNING time of every job."""
    per_request_delay_s: float = 0.0001
    """Extra RUNNING time per request in the job."""
    running_slots: int = 4
    """Jobs RUNNING at once; further jobs wait PENDING, highest `priority` first."""
    expiry_s: float = 48 * HOUR
    """Jobs still PENDING or RUNNING this long after create end EXPIRED."""

    # Files.
    file_ttl_s: float = 48 * HOUR
    """Files (uploaded and generated) vanish this long after creation."""
    output_file_ttl_s: float | None = None
    """Retention of generated result files only (None: `file_ttl_s`), so a test can make a
    job's responsesFile expire while the job stays readable."""
    max_file_bytes: int = 2 * GB
    """Per-file cap; a larger upload gets 400 INVALID_ARGUMENT."""
    max_storage_bytes: int = 20 * GB
    """Total bytes of live files; exceeding it gets 429 RESOURCE_EXHAUSTED."""
    storage_dir: str | None = None
    """Where file bytes live; None means a private temporary directory."""

    # Limits.
    max_concurrent_jobs: int = 100
    """Non-terminal jobs allowed at once; create beyond it gets 429 RESOURCE_EXHAUSTED."""
    enqueued_token_cap: int = 3_000_000
    """Estimated tokens (bytes / 4) of non-terminal jobs per model; beyond it 429."""
    max_inline_request_bytes: int = 20_000_000
    """Create bodies with inline requests above this size get 400 INVALID_ARGUMENT."""

    # Faults.
    request_error_rate: float = 0.0
    """Probability that one request inside a batch gets a per-request error."""
    job_failure_rate: float = 0.0
    """Probability that a job ends FAILED instead of SUCCEEDED."""
    job_expiry_rate: float = 0.0
    """Probability that a job ends EXPIRED instead of SUCCEEDED (when it would have finished)."""
    rate_limit_rate: float = 0.0
    """Probability that a create is refused with 429 RESOURCE_EXHAUSTED whatever the quota."""
    create_reply_lost_rate: float = 0.0
    """Probability that a create makes the job but answers 503 UNAVAILABLE (reply lost)."""
    create_late_rate: float = 0.0
    """Probability that a create lands late (only when `create_land_delay_s` > 0)."""
    create_land_delay_s: float = 0.0
    """A late create answers 504 DEADLINE_EXCEEDED and its job appears this much later
    (0 turns late creates off)."""
    shuffle_inline_responses: bool = False
    """Return inline responses in a seeded shuffled order: clients must match them by metadata."""
    transient_error_rate: float = 0.0
    """Probability that an API call is refused with 503 UNAVAILABLE or 500 INTERNAL."""
    latency_ms: float = 0.0
    """Added delay before every API call is answered."""
    download_bytes_per_s: float = 0.0
    """Send file downloads at most this fast (0: as fast as the socket goes): a results file
    that takes minutes to come in, as from a far region or a busy service."""
    seed: int = 0
    """Seed of every random decision, so runs are reproducible."""

    # Deterministic triggers.
    request_fail_trigger: str = "EMULATOR_FAIL"
    """A prompt containing this gets a per-request error (400; `..._500` gives 500)."""
    job_fail_trigger: str = "emulator-fail-job"
    """A batch whose display name contains this ends FAILED."""
    job_expire_trigger: str = "emulator-expire-job"
    """A batch whose display name contains this ends EXPIRED."""
    create_reply_lost_trigger: str = "emulator-lost-reply"
    """A create whose display name contains this makes the job but answers 503."""
    create_late_trigger: str = "emulator-late-create"
    """A create whose display name contains this lands late (see `create_land_delay_s`)."""
    big_response_trigger: str = "EMULATOR_BIG"
    """A prompt containing `EMULATOR_BIG_<n>` gets an extra base64 inlineData part of ~n bytes."""

    def updated(self, changes: dict[str, Any]) -> EmulatorConfig:
        """Return a copy with `changes` applied, coercing JSON values to the field types."""
        known = {f.name: f for f in dataclasses.fields(self)}
        coerced: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in known:
                raise ValueError(f"unknown emulator knob: {key}")
            coerced[key] = coerce(known[key].type, value)
        return dataclasses.replace(self, **coerced)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON view for the control API."""
        return dataclasses.asdict(self)


def coerce(annotation: object, value: Any) -> Any:
    """Convert a JSON/CLI value to the type of a knob (annotations are strings here)."""
    if value is None:
        return None
    text = str(annotation)
    if text == "bool":
        return boolean(value)
    if text.startswith("int"):
        return int(value)
    if text.startswith("float"):
        return float(value)
    return str(value)


def boolean(value: Any) -> bool:
    """`true`/`1`/`yes`/`on` (any case) or a JSON bool or number; anything else is refused."""
    if isinstance(value, bool | int | float):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")
