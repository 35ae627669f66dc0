"""Settings for `connector run`: one table drives env vars, flags and the README.

Precedence: command-line flag, then environment variable, then default.
Secrets (the API key, Kafka passwords) are read from the environment only, so
they never show in a process list, and `Settings.describe()` masks them.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from connector import defaults as D
from connector.errors import ConfigError


@dataclass(frozen=True, slots=True)
class Option:
    """One setting: its attribute, environment variable, flag and help text."""

    attr: str
    env: str
    type: type
    default: Any
    help: str
    flag: bool = True


OPTIONS: tuple[Option, ...] = (
    Option(
        "bootstrap_servers",
        "KAFKA_BOOTSTRAP_SERVERS",
        str,
        "localhost:9092",
        "Kafka bootstrap servers",
    ),
    Option(
        "request_topic", "CONNECTOR_REQUEST_TOPIC", str, "llm.requests", "topic of request events"
    ),
    Option(
        "result_topic", "CONNECTOR_RESULT_TOPIC", str, "llm.results", "topic results are written to"
    ),
    Option(
        "dlq_topic",
        "CONNECTOR_DLQ_TOPIC",
        str,
        "llm.requests.dlq",
        "dead-letter topic for undecodable or invalid requests",
    ),
    Option(
        "ledger_topic",
        "CONNECTOR_LEDGER_TOPIC",
        str,
        "",
        "compacted job ledger topic (default: <group_id>.<request_topic>.ledger; an existing "
        "<group_id>.ledger of an earlier release is kept)",
    ),
    Option(
        "control_topic",
        "CONNECTOR_CONTROL_TOPIC",
        str,
        "",
        "compacted topic of operator commands such as `connector cancel` (default: "
        "<ledger topic>.control)",
    ),
    Option(
        "group_id",
        "CONNECTOR_GROUP_ID",
        str,
        "gemini-batch-connector",
        "consumer group; also scopes job display names",
    ),
    Option(
        "gemini_base_url",
        "CONNECTOR_GEMINI_BASE_URL",
        str,
        "",
        "explicit Gemini endpoint, e.g. an emulator URL; empty means Google's API",
    ),
    Option(
        "api_key",
        "GEMINI_API_KEY",
        str,
        "",
        "Gemini API key (environment only; GOOGLE_API_KEY also works)",
        flag=False,
    ),
    Option("api_version", "CONNECTOR_GEMINI_API_VERSION", str, "v1beta", "Gemini API version"),
    Option(
        "http_timeout_s", "CONNECTOR_HTTP_TIMEOUT_S", float, 60.0, "timeout of one Gemini HTTP call"
    ),
    Option(
        "pass_budget_s",
        "CONNECTOR_PASS_BUDGET_S",
        float,
        2.0,
        "a loop pass starts no new Gemini call after this long (the rest waits for the next "
        "pass); with one HTTP timeout it must stay under half of max.poll.interval.ms",
    ),
    Option(
        "processing_guarantee",
        "CONNECTOR_PROCESSING_GUARANTEE",
        str,
        "at_least_once",
        "at_least_once, or exactly_once: Kafka transactions, so read_committed readers see "
        "each result once",
    ),
    Option(
        "transactional_id",
        "CONNECTOR_TRANSACTIONAL_ID",
        str,
        "",
        "this replica's Kafka transactional.id (default: <group_id>.<hostname>.<random>); "
        "unique per replica, ideally stable across its restarts",
    ),
    Option(
        "batch_max_requests",
        "CONNECTOR_BATCH_MAX_REQUESTS",
        int,
        D.BATCH_MAX_REQUESTS,
        "seal a batch at this many requests",
    ),
    Option(
        "batch_max_bytes",
        "CONNECTOR_BATCH_MAX_BYTES",
        int,
        D.BATCH_MAX_BYTES,
        "seal a batch at this many bytes",
    ),
    Option(
        "batch_inline_max_bytes",
        "CONNECTOR_BATCH_INLINE_MAX_BYTES",
        int,
        D.BATCH_INLINE_MAX_BYTES,
        "larger batches go through an uploaded JSONL file",
    ),
    Option(
        "batch_max_wait_s",
        "CONNECTOR_BATCH_MAX_WAIT_S",
        float,
        D.BATCH_MAX_WAIT_S,
        "seal a batch this long after its first request",
    ),
    Option(
        "max_request_bytes",
        "CONNECTOR_MAX_REQUEST_BYTES",
        int,
        10_000_000,
        "a larger request gets an error result (lowered at start to the request and "
        "dead-letter topics' max.message.bytes)",
    ),
    Option(
        "max_jobs",
        "CONNECTOR_MAX_JOBS",
        int,
        100,
        "concurrent jobs per Gemini project (shared by replicas)",
    ),
    Option(
        "token_budget",
        "CONNECTOR_TOKEN_BUDGET",
        int,
        3_000_000,
        "enqueued-token cap per model (shared by replicas)",
    ),
    Option(
        "max_waiting_intents",
        "CONNECTOR_MAX_WAITING_INTENTS",
        int,
        200,
        "pause consumption past this many jobs waiting for quota",
    ),
    Option(
        "max_waiting_bytes",
        "CONNECTOR_MAX_WAITING_BYTES",
        int,
        2_000_000_000,
        "pause consumption past this many request bytes in jobs waiting to be created (0: no "
        "bound)",
    ),
    Option(
        "max_payload_bytes",
        "CONNECTOR_MAX_PAYLOAD_BYTES",
        int,
        256_000_000,
        "request bytes kept in memory for waiting jobs' first create; past it the jobs to be "
        "created last drop theirs and re-read them by offset",
    ),
    Option(
        "delivery_chunk_requests",
        "CONNECTOR_DELIVERY_CHUNK_REQUESTS",
        int,
        2_000,
        "results of one finished job produced per loop pass, each chunk then recorded in the "
        "ledger; a crash mid-delivery repeats at most this many (none in exactly_once)",
    ),
    Option(
        "poll_initial_s",
        "CONNECTOR_POLL_INITIAL_S",
        float,
        D.POLL_INITIAL_S,
        "first job status poll after create",
    ),
    Option(
        "poll_max_s",
        "CONNECTOR_POLL_MAX_S",
        float,
        D.POLL_MAX_S,
        "longest interval between job polls",
    ),
    Option(
        "max_failed_retries",
        "CONNECTOR_MAX_FAILED_RETRIES",
        int,
        D.MAX_FAILED_RETRIES,
        "retries of a FAILED job before error results",
    ),
    Option(
        "max_attempts",
        "CONNECTOR_MAX_ATTEMPTS",
        int,
        D.MAX_ATTEMPTS,
        "attempts (retries and expired splits) before error results",
    ),
    Option(
        "max_job_age_h",
        "CONNECTOR_MAX_JOB_AGE_H",
        float,
        0.0,
        "cancel a job still unfinished after this many hours and resubmit it split (0: off; "
        "Gemini expires jobs at 48 h)",
    ),
    Option(
        "startup_timeout_s",
        "CONNECTOR_STARTUP_TIMEOUT_S",
        float,
        300.0,
        "keep retrying Kafka at start for this long",
    ),
    Option(
        "drain_timeout_s",
        "CONNECTOR_DRAIN_TIMEOUT_S",
        float,
        20.0,
        "on SIGTERM, time to seal and record open batches",
    ),
    Option(
        "status_interval_s",
        "CONNECTOR_STATUS_INTERVAL_S",
        float,
        30.0,
        "how often a status line (counts, partitions, jobs) is logged",
    ),
    Option(
        "min_retention_h",
        "CONNECTOR_MIN_RETENTION_H",
        float,
        72.0,
        "warn when the request topic keeps records for less",
    ),
    Option(
        "health_port",
        "CONNECTOR_HEALTH_PORT",
        int,
        0,
        "serve /healthz, /readyz and /status on this port (0: off)",
    ),
    Option(
        "health_host",
        "CONNECTOR_HEALTH_HOST",
        str,
        "0.0.0.0",
        "address the health endpoints listen on",
    ),
    Option(
        "liveness_timeout_s",
        "CONNECTOR_LIVENESS_TIMEOUT_S",
        float,
        600.0,
        "/healthz fails when no loop pass completed for this long",
    ),
    Option(
        "price_table",
        "CONNECTOR_PRICE_TABLE",
        str,
        "",
        "JSON file of per-model prices overriding the shipped estimates (connector/data/"
        "prices.json); drives cost_usd on results and the cost metrics",
    ),
    Option("log_level", "CONNECTOR_LOG_LEVEL", str, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Option("log_format", "CONNECTOR_LOG_FORMAT", str, "json", "json or console"),
    Option(
        "allow_project_resources",
        "CONNECTOR_ALLOW_PROJECT_RESOURCES",
        bool,
        False,
        "let requests reference the project's uploaded files, caches and tuned models "
        "(single-tenant deployments only)",
    ),
    Option(
        "result_format",
        "CONNECTOR_RESULT_FORMAT",
        str,
        "single_object",
        "results as single_object (Avro, no registry), confluent (Avro + registry id) or json",
    ),
    Option(
        "schema_registry_url",
        "CONNECTOR_SCHEMA_REGISTRY_URL",
        str,
        "",
        "Confluent-compatible schema registry, for Confluent-framed requests and results",
    ),
    Option(
        "schema_registry_username",
        "CONNECTOR_SCHEMA_REGISTRY_USERNAME",
        str,
        "",
        "schema registry basic-auth user (environment only)",
        flag=False,
    ),
    Option(
        "schema_registry_password",
        "CONNECTOR_SCHEMA_REGISTRY_PASSWORD",
        str,
        "",
        "schema registry basic-auth password (environment only; never logged)",
        flag=False,
    ),
    Option(
        "oauth_token_url",
        "CONNECTOR_OAUTH_TOKEN_URL",
        str,
        "",
        "OIDC token endpoint for Kafka SASL/OAUTHBEARER (client credentials; with "
        "CONNECTOR_KAFKA_SASL_MECHANISM=OAUTHBEARER)",
    ),
    Option(
        "oauth_client_id",
        "CONNECTOR_OAUTH_CLIENT_ID",
        str,
        "",
        "OAuth client id for Kafka SASL/OAUTHBEARER (environment only)",
        flag=False,
    ),
    Option(
        "oauth_client_secret",
        "CONNECTOR_OAUTH_CLIENT_SECRET",
        str,
        "",
        "OAuth client secret for Kafka SASL/OAUTHBEARER (environment only; never logged)",
        flag=False,
    ),
    Option(
        "oauth_scope",
        "CONNECTOR_OAUTH_SCOPE",
        str,
        "",
        "scope requested with the OAuth token (empty: none)",
    ),
    Option(
        "schema_registry_auto_register",
        "CONNECTOR_SCHEMA_REGISTRY_AUTO_REGISTER",
        bool,
        True,
        "register the result schema under <result topic>-value (false: look it up only)",
    ),
)

GUARANTEES = ("at_least_once", "exactly_once")

DEFAULTS: dict[str, Any] = {o.attr: o.default for o in OPTIONS}
"""Each setting's default, from OPTIONS: the one place defaults are declared."""

# kafka-python settings passed through from CONNECTOR_KAFKA_<NAME>
# (e.g. CONNECTOR_KAFKA_SECURITY_PROTOCOL).
KAFKA_PREFIX = "CONNECTOR_KAFKA_"
_SECRET_WORDS = ("password", "secret", "key", "token")


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `connector run` needs, validated."""

    bootstrap_servers: str = DEFAULTS["bootstrap_servers"]
    request_topic: str = DEFAULTS["request_topic"]
    result_topic: str = DEFAULTS["result_topic"]
    dlq_topic: str = DEFAULTS["dlq_topic"]
    ledger_topic: str = DEFAULTS["ledger_topic"]
    control_topic: str = DEFAULTS["control_topic"]
    group_id: str = DEFAULTS["group_id"]
    gemini_base_url: str = DEFAULTS["gemini_base_url"]
    api_key: str = field(default=DEFAULTS["api_key"], repr=False)
    api_version: str = DEFAULTS["api_version"]
    http_timeout_s: float = DEFAULTS["http_timeout_s"]
    pass_budget_s: float = DEFAULTS["pass_budget_s"]
    processing_guarantee: str = DEFAULTS["processing_guarantee"]
    transactional_id: str = DEFAULTS["transactional_id"]
    batch_max_requests: int = DEFAULTS["batch_max_requests"]
    batch_max_bytes: int = DEFAULTS["batch_max_bytes"]
    batch_inline_max_bytes: int = DEFAULTS["batch_inline_max_bytes"]
    batch_max_wait_s: float = DEFAULTS["batch_max_wait_s"]
    max_request_bytes: int = DEFAULTS["max_request_bytes"]
    max_jobs: int = DEFAULTS["max_jobs"]
    token_budget: int = DEFAULTS["token_budget"]
    max_waiting_intents: int = DEFAULTS["max_waiting_intents"]
    max_waiting_bytes: int = DEFAULTS["max_waiting_bytes"]
    max_payload_bytes: int = DEFAULTS["max_payload_bytes"]
    delivery_chunk_requests: int = DEFAULTS["delivery_chunk_requests"]
    poll_initial_s: float = DEFAULTS["poll_initial_s"]
    poll_max_s: float = DEFAULTS["poll_max_s"]
    max_failed_retries: int = DEFAULTS["max_failed_retries"]
    max_attempts: int = DEFAULTS["max_attempts"]
    max_job_age_h: float = DEFAULTS["max_job_age_h"]
    startup_timeout_s: float = DEFAULTS["startup_timeout_s"]
    drain_timeout_s: float = DEFAULTS["drain_timeout_s"]
    status_interval_s: float = DEFAULTS["status_interval_s"]
    min_retention_h: float = DEFAULTS["min_retention_h"]
    health_port: int = DEFAULTS["health_port"]
    health_host: str = DEFAULTS["health_host"]
    liveness_timeout_s: float = DEFAULTS["liveness_timeout_s"]
    price_table: str = DEFAULTS["price_table"]
    log_level: str = DEFAULTS["log_level"]
    log_format: str = DEFAULTS["log_format"]
    allow_project_resources: bool = DEFAULTS["allow_project_resources"]
    result_format: str = DEFAULTS["result_format"]
    schema_registry_url: str = field(default=DEFAULTS["schema_registry_url"], repr=False)
    schema_registry_username: str = field(default=DEFAULTS["schema_registry_username"], repr=False)
    schema_registry_password: str = field(default=DEFAULTS["schema_registry_password"], repr=False)
    schema_registry_auto_register: bool = DEFAULTS["schema_registry_auto_register"]
    oauth_token_url: str = DEFAULTS["oauth_token_url"]
    oauth_client_id: str = DEFAULTS["oauth_client_id"]
    oauth_client_secret: str = field(default=DEFAULTS["oauth_client_secret"], repr=False)
    oauth_scope: str = DEFAULTS["oauth_scope"]
    kafka_extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @property
    def ledger(self) -> str:
        """One ledger per deployment: two request topics on one group id never share one."""
        return self.ledger_topic or f"{self.group_id}.{self.request_topic}.ledger"

    @property
    def control(self) -> str:
        """Operator commands (`connector cancel`): one compacted topic per ledger."""
        return self.control_topic or f"{self.ledger}.control"

    @property
    def legacy_ledger(self) -> str:
        """The default ledger name before it named the request topic (kept if it exists)."""
        return f"{self.group_id}.ledger"

    @property
    def exactly_once(self) -> bool:
        return self.processing_guarantee == "exactly_once"

    @property
    def max_poll_interval_s(self) -> float:
        """The consumer's max.poll.interval.ms (kafka-python's default unless overridden)."""
        return float(self.kafka_extra.get("max_poll_interval_ms", 300_000)) / 1000

    @property
    def endpoint(self) -> str:
        """Which Gemini the sidecar talks to, safe to log."""
        if self.gemini_base_url:
            return f"explicit endpoint {self.gemini_base_url}"
        return "Google Gemini API (API key from the environment)"

    def describe(self) -> dict[str, Any]:
        """All settings for the start-up log line, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("api_key", "schema_registry_password", "oauth_client_secret"):
                value = "***" if value else ""
            elif f.name == "schema_registry_url":
                value = _redact_url(value)
            elif f.name == "kafka_extra":
                value = {
                    k: ("***" if any(w in k for w in _SECRET_WORDS) else v)
                    for k, v in value.items()
                }
            out[f.name] = value
        return out


def _redact_url(url: str) -> str:
    """A URL without its `user:password@` part, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://{rest.split('@', 1)[1]}"


def _convert(opt: Option, raw: str) -> Any:
    try:
        if opt.type is bool:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        return opt.type(raw)
    except ValueError as exc:
        raise ConfigError(f"{opt.env}={raw!r} is not a valid {opt.type.__name__}") from exc


def _kafka_value(raw: str) -> Any:
    """Passed-through Kafka settings are strings, except obvious ints and booleans."""
    if raw.isdigit():
        return int(raw)
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    return raw


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    for opt in OPTIONS:
        if opt.flag:
            parser.add_argument(
                "--" + opt.attr.replace("_", "-"),
                dest=opt.attr,
                default=None,
                help=f"{opt.help} [env {opt.env}, default {opt.default!r}]",
            )
    return parser


def load(env: Mapping[str, str] | None = None, args: argparse.Namespace | None = None) -> Settings:
    """Build Settings from flags and environment, and check they make sense."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.attr, None) if args is not None else None
        if raw is None:
            raw = env.get(opt.env)
        if raw is None and opt.attr == "api_key":
            raw = env.get("GOOGLE_API_KEY")
        values[opt.attr] = opt.default if raw is None else _convert(opt, str(raw))
    values["kafka_extra"] = load_kafka_extra(env)
    settings = Settings(**values)
    validate(settings)
    return settings


def load_kafka_extra(env: Mapping[str, str]) -> dict[str, Any]:
    """kafka-python settings passed through from CONNECTOR_KAFKA_<NAME> variables."""
    return {
        k[len(KAFKA_PREFIX) :].lower(): _kafka_value(v)
        for k, v in env.items()
        if k.startswith(KAFKA_PREFIX)
    }


def validate(s: Settings) -> None:
    """Refuse to start on settings that would lose requests or fall back silently."""
    if not s.api_key.strip() and not s.gemini_base_url:
        raise ConfigError(
            "no Gemini endpoint: set GEMINI_API_KEY to use Google's API, or "
            "CONNECTOR_GEMINI_BASE_URL / --gemini-base-url to use an emulator explicitly"
        )
    if s.gemini_base_url and not s.gemini_base_url.startswith(("http://", "https://")):
        raise ConfigError(
            f"CONNECTOR_GEMINI_BASE_URL must be an http(s) URL, got {s.gemini_base_url!r}"
        )
    topics = {s.request_topic, s.result_topic, s.dlq_topic, s.ledger, s.control}
    if len(topics) != 5:
        raise ConfigError("request, result, dead-letter, ledger and control topics must all differ")
    if s.batch_inline_max_bytes >= 20_000_000:
        raise ConfigError(
            "CONNECTOR_BATCH_INLINE_MAX_BYTES must stay under Gemini's 20 MB inline limit"
        )
    if s.batch_max_requests < 1 or s.batch_max_wait_s <= 0:
        raise ConfigError("batch limits must be positive")
    if s.max_request_bytes > s.batch_max_bytes:
        raise ConfigError("CONNECTOR_MAX_REQUEST_BYTES must not exceed CONNECTOR_BATCH_MAX_BYTES")
    if s.max_waiting_bytes < 0 or s.max_payload_bytes < 0:
        raise ConfigError(
            "CONNECTOR_MAX_WAITING_BYTES and CONNECTOR_MAX_PAYLOAD_BYTES must be >= 0"
        )
    if s.delivery_chunk_requests < 1:
        raise ConfigError("CONNECTOR_DELIVERY_CHUNK_REQUESTS must be >= 1")
    if s.processing_guarantee not in GUARANTEES:
        raise ConfigError(
            f"CONNECTOR_PROCESSING_GUARANTEE must be one of {', '.join(GUARANTEES)}, "
            f"got {s.processing_guarantee!r}"
        )
    # A pass may start one provider call just before its budget runs out; the pass and that
    # call together must end well before the group drops this replica (then a zombie).
    if s.pass_budget_s <= 0 or s.pass_budget_s + s.http_timeout_s > s.max_poll_interval_s / 2:
        raise ConfigError(
            f"CONNECTOR_PASS_BUDGET_S ({s.pass_budget_s:g} s) plus CONNECTOR_HTTP_TIMEOUT_S "
            f"({s.http_timeout_s:g} s) must be positive and at most half of "
            f"max.poll.interval.ms ({s.max_poll_interval_s:g} s)"
        )
    if s.log_format not in ("json", "console"):
        raise ConfigError("CONNECTOR_LOG_FORMAT must be json or console")
    if s.result_format not in ("single_object", "confluent", "json"):
        raise ConfigError("CONNECTOR_RESULT_FORMAT must be single_object, confluent or json")
    if s.result_format == "confluent" and not s.schema_registry_url:
        raise ConfigError("CONNECTOR_RESULT_FORMAT=confluent needs CONNECTOR_SCHEMA_REGISTRY_URL")


def env_table(options: Sequence[Option] = OPTIONS) -> str:
    """The README's settings table, generated so it cannot drift."""
    rows = ["| environment variable | flag | default | meaning |", "|---|---|---|---|"]
    for o in options:
        flag = "--" + o.attr.replace("_", "-") if o.flag else "(env only)"
        rows.append(f"| `{o.env}` | `{flag}` | `{o.default!r}` | {o.help} |")
    rows.append(
        f"| `{KAFKA_PREFIX}<NAME>` | (env only) | | any kafka-python setting, e.g. "
        f"`{KAFKA_PREFIX}SECURITY_PROTOCOL=SASL_SSL`, `{KAFKA_PREFIX}SASL_MECHANISM`, "
        f"`{KAFKA_PREFIX}SASL_PLAIN_USERNAME`, `{KAFKA_PREFIX}SASL_PLAIN_PASSWORD`, "
        f"`{KAFKA_PREFIX}SSL_CAFILE` |"
    )
    return "\n".join(rows)
