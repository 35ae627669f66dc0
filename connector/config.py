"""Settings for `connector run`: one table drives env vars, flags and the README.

Precedence: command-line flag, then environment variable, then default. Any variable may
instead be given as `<VAR>_FILE`, the path of a file holding the value (a Kubernetes
secret mounted as a file); setting both is an error. Secrets (the API key, Kafka and
registry passwords) are read from the environment or files only, so they never show in a
process list, and `Settings.describe()` masks them.

Nothing is guessed: an unknown `CONNECTOR_*` variable, a boolean that is not one of
true/false/1/0/yes/no/on/off, or a number that does not parse stops the start with the
variable's name. `CONNECTOR_KAFKA_*` values stay strings here; the Kafka adapter types
them against kafka-python's own defaults (this module imports no I/O library).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from connector import defaults as D
from connector.errors import ConfigError
from connector.redact import secret_values


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
        "kafka_client",
        "CONNECTOR_KAFKA_CLIENT",
        str,
        "kafka-python",
        "Kafka client: kafka-python (pure Python) or confluent-kafka (librdkafka, the extra "
        "`librdkafka`; CONNECTOR_KAFKA_* keep kafka-python's names, mapped for it)",
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
        "create_topics",
        "CONNECTOR_CREATE_TOPICS",
        bool,
        False,
        "create a missing request, result or dead-letter topic (false: refuse to start, naming "
        "it, so a typo never creates an empty topic the sidecar waits on forever)",
    ),
    Option(
        "topic_partitions",
        "CONNECTOR_TOPIC_PARTITIONS",
        int,
        6,
        "partitions of a topic created with CONNECTOR_CREATE_TOPICS",
    ),
    Option(
        "topic_replication",
        "CONNECTOR_TOPIC_REPLICATION",
        int,
        0,
        "replication factor of a topic created with CONNECTOR_CREATE_TOPICS (0: min(3, "
        "brokers), as the ledger)",
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
        "hanging_transaction_after_s",
        "CONNECTOR_HANGING_TRANSACTION_AFTER_S",
        float,
        1_200.0,
        "a transaction open on a ledger partition this long, that its coordinator no longer "
        "runs, is hanging and gets aborted (KIP-664); keep it above the brokers' "
        "transaction.max.timeout.ms (0: never abort)",
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
        "spool_dir",
        "CONNECTOR_SPOOL_DIR",
        str,
        "",
        "directory of the temporary input and results files and of the side log (default: the "
        "system temp dir, TMPDIR); size it for CONNECTOR_BATCH_MAX_BYTES twice plus "
        "CONNECTOR_SPOOL_RESULTS_BYTES plus ~200 bytes per request in flight",
    ),
    Option(
        "spool_reserve_bytes",
        "CONNECTOR_SPOOL_RESERVE_BYTES",
        int,
        64_000_000,
        "free spool space kept after a file is written: a file waits (with a warning) until "
        "its size plus this is free",
    ),
    Option(
        "spool_results_bytes",
        "CONNECTOR_SPOOL_RESULTS_BYTES",
        int,
        2_000_000_000,
        "free spool space a results download waits for (results files are up to 2 GB; lower "
        "it if your jobs' results are smaller)",
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
        "serve /healthz, /readyz, /status, /metrics and / on this port (0: off)",
    ),
    Option(
        "health_host",
        "CONNECTOR_HEALTH_HOST",
        str,
        "127.0.0.1",
        "address the health endpoints listen on (0.0.0.0 for probes and scrapes from outside "
        "the pod)",
    ),
    Option(
        "health_token",
        "CONNECTOR_HEALTH_TOKEN",
        str,
        "",
        "bearer token required for /status and / (environment only; never logged); the "
        "probes and /metrics stay open",
        flag=False,
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
        "let requests reference the project's stored files, caches, file-search stores, corpora "
        "and tuned models (single-tenant deployments only)",
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
        "schema_registry_bearer_token",
        "CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN",
        str,
        "",
        "schema registry bearer token, instead of basic auth (environment only; never logged; "
        "from a _FILE it is re-read for every registry call, so a rotated token is used at once)",
        flag=False,
    ),
    Option(
        "schema_registry_ssl_cafile",
        "CONNECTOR_SCHEMA_REGISTRY_SSL_CAFILE",
        str,
        "",
        "CA bundle (PEM) that signs the schema registry's certificate (empty: system CAs)",
    ),
    Option(
        "schema_registry_ssl_certfile",
        "CONNECTOR_SCHEMA_REGISTRY_SSL_CERTFILE",
        str,
        "",
        "client certificate (PEM) for a registry that wants mutual TLS",
    ),
    Option(
        "schema_registry_ssl_keyfile",
        "CONNECTOR_SCHEMA_REGISTRY_SSL_KEYFILE",
        str,
        "",
        "the client certificate's private key (PEM)",
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
KAFKA_CLIENTS = ("kafka-python", "confluent-kafka")

DEFAULTS: dict[str, Any] = {o.attr: o.default for o in OPTIONS}
"""Each setting's default, from OPTIONS: the one place defaults are declared."""

# kafka-python settings passed through from CONNECTOR_KAFKA_<NAME>
# (e.g. CONNECTOR_KAFKA_SECURITY_PROTOCOL) go to every client; the adapter keeps each
# client to the settings it knows.
KAFKA_PREFIX = "CONNECTOR_KAFKA_"
KAFKA_CLIENT_KINDS = ("consumer", "producer", "admin")
_OVERRIDE_ENV = "_OVERRIDE_"
# Per-client overrides, as Kafka Connect's `consumer.override.*`:
# CONNECTOR_KAFKA_CONSUMER_OVERRIDE_<NAME> -> `consumer.override.<name>`. Unambiguous next
# to flat names such as CONNECTOR_KAFKA_CONSUMER_TIMEOUT_MS (kafka-python's
# consumer_timeout_ms): no kafka-python setting contains `_override_`, and the dotted key
# can never be a kafka-python name (they have no dots). A unit test checks both.
FILE_SUFFIX = "_FILE"
"""<VAR>_FILE: the value of <VAR> is the content of that file (trailing newline dropped)."""
_SECRET_WORDS = ("password", "secret", "key", "token")
SECRET_SETTINGS = (
    "api_key",
    "schema_registry_password",
    "schema_registry_bearer_token",
    "health_token",
    "oauth_client_secret",
)
"""Settings whose values are secrets: masked by `describe`, registered with the redactor."""
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")

ALLOWED_ENV: dict[str, str] = {
    "CONNECTOR_TEST_ARTIFACTS": "read by tests/integration/test_operations.py (where to keep "
    "logs of a run), not by the sidecar; a developer may export it in the shell",
    "CONNECTOR_LOOP_TESTS_BUDGET_S": "read by tests/unit/conftest.py (time budget of the loop "
    "tests), not by the sidecar",
}
"""CONNECTOR_* variables that are not settings of `connector run` but are legitimately set
where it runs; any other unknown CONNECTOR_* variable stops the start (a typo)."""

_SERVICE_LINK_SUFFIX = re.compile(
    r"SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)?"
)


def service_links(env: Iterable[str]) -> set[str]:
    """Kubernetes service-link variables among `env`: a Service named `connector` (or
    `connector-kafka`...) puts CONNECTOR_SERVICE_HOST, CONNECTOR_PORT_8080_TCP and the like
    into every pod of its namespace. They are not ours and must not stop the start; a name
    counts only when its service's <SVC>_SERVICE_HOST and <SVC>_SERVICE_PORT are both there,
    as Kubernetes always sets them, so a typo such as CONNECTOR_HEALT_PORT is still refused.
    """
    names = set(env)
    out = set()
    for n in names:
        if not n.startswith("CONNECTOR_"):
            continue
        for i in (k for k, c in enumerate(n) if c == "_"):  # every <SVC>_<suffix> split
            svc = n[:i]
            if (
                _SERVICE_LINK_SUFFIX.fullmatch(n[i + 1 :])
                and {
                    f"{svc}_SERVICE_HOST",
                    f"{svc}_SERVICE_PORT",
                }
                <= names
            ):
                out.add(n)
                break
    return out


def override_key(kind: str, name: str) -> str:
    """Kafka Connect's name of a per-client override: `consumer.override.max_poll_records`."""
    return f"{kind}.override.{name}"


def kafka_setting(extra: Mapping[str, Any], kind: str, name: str, default: Any = None) -> Any:
    """The value a `kind` client gets for kafka-python's `name`: its override, else the
    flat setting, else `default` (values as given, strings from the environment)."""
    key = override_key(kind, name)
    if key in extra:
        return extra[key]
    return extra.get(name, default)


def is_secret_name(name: str) -> bool:
    """A Kafka setting whose value is masked (passwords, keys, tokens, secrets)."""
    return any(w in name.lower() for w in _SECRET_WORDS)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything `connector run` needs, validated."""

    bootstrap_servers: str = DEFAULTS["bootstrap_servers"]
    kafka_client: str = DEFAULTS["kafka_client"]
    request_topic: str = DEFAULTS["request_topic"]
    result_topic: str = DEFAULTS["result_topic"]
    dlq_topic: str = DEFAULTS["dlq_topic"]
    create_topics: bool = DEFAULTS["create_topics"]
    topic_partitions: int = DEFAULTS["topic_partitions"]
    topic_replication: int = DEFAULTS["topic_replication"]
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
    hanging_transaction_after_s: float = DEFAULTS["hanging_transaction_after_s"]
    delivery_chunk_requests: int = DEFAULTS["delivery_chunk_requests"]
    spool_dir: str = DEFAULTS["spool_dir"]
    spool_reserve_bytes: int = DEFAULTS["spool_reserve_bytes"]
    spool_results_bytes: int = DEFAULTS["spool_results_bytes"]
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
    health_token: str = field(default=DEFAULTS["health_token"], repr=False)
    liveness_timeout_s: float = DEFAULTS["liveness_timeout_s"]
    price_table: str = DEFAULTS["price_table"]
    log_level: str = DEFAULTS["log_level"]
    log_format: str = DEFAULTS["log_format"]
    allow_project_resources: bool = DEFAULTS["allow_project_resources"]
    result_format: str = DEFAULTS["result_format"]
    schema_registry_url: str = field(default=DEFAULTS["schema_registry_url"], repr=False)
    schema_registry_username: str = field(default=DEFAULTS["schema_registry_username"], repr=False)
    schema_registry_password: str = field(default=DEFAULTS["schema_registry_password"], repr=False)
    schema_registry_bearer_token: str = field(
        default=DEFAULTS["schema_registry_bearer_token"], repr=False
    )
    schema_registry_ssl_cafile: str = DEFAULTS["schema_registry_ssl_cafile"]
    schema_registry_ssl_certfile: str = DEFAULTS["schema_registry_ssl_certfile"]
    schema_registry_ssl_keyfile: str = DEFAULTS["schema_registry_ssl_keyfile"]
    schema_registry_auto_register: bool = DEFAULTS["schema_registry_auto_register"]
    oauth_token_url: str = DEFAULTS["oauth_token_url"]
    oauth_client_id: str = DEFAULTS["oauth_client_id"]
    oauth_client_secret: str = field(default=DEFAULTS["oauth_client_secret"], repr=False)
    oauth_scope: str = DEFAULTS["oauth_scope"]
    kafka_extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """CONNECTOR_KAFKA_<NAME> as `name`, and per-client overrides as Kafka Connect names them
    (`consumer.override.<name>`...); values as written (the Kafka adapter types them)."""
    secret_files: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Variable -> file, for each setting given as <VAR>_FILE: re-read where a client can
    take a new value without a restart (the schema registry's credentials)."""

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
        raw = kafka_setting(self.kafka_extra, "consumer", "max_poll_interval_ms", 300_000)
        try:
            return float(raw) / 1000
        except ValueError as exc:
            raise ConfigError(
                f"max_poll_interval_ms must be a number of milliseconds, got {raw!r}"
            ) from exc

    @property
    def endpoint(self) -> str:
        """Which Gemini the sidecar talks to, safe to log."""
        if self.gemini_base_url:
            return f"explicit endpoint {self.gemini_base_url}"
        return "Google Gemini API (API key from the environment)"

    def secrets(self) -> list[str]:
        """Every secret value this configuration holds, for the redactor: the settings in
        SECRET_SETTINGS (the API key, the registry password, the health token) and every
        secret-named Kafka setting."""
        return [getattr(self, name) for name in SECRET_SETTINGS] + list(
            secret_values("", self.kafka_extra)
        )

    def secret(self, attr: str) -> str | Callable[[], str]:
        """A setting's value, or, if it came from a <VAR>_FILE, a function that reads the
        file again: for clients that take a rotated secret without a restart."""
        env = next(o.env for o in OPTIONS if o.attr == attr)
        path = self.secret_files.get(env)
        if path is None:
            return str(getattr(self, attr))
        return lambda: read_secret_file(path, env + FILE_SUFFIX)

    def describe(self) -> dict[str, Any]:
        """All settings for the start-up log line, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_SETTINGS:
                value = "***" if value else ""
            elif f.name == "schema_registry_url":
                value = _redact_url(value)
            elif f.name == "kafka_extra":
                value = {k: ("***" if is_secret_name(k) else v) for k, v in value.items()}
            elif f.name == "secret_files":
                value = dict(value)  # paths, not contents
            out[f.name] = value
        return out


def _redact_url(url: str) -> str:
    """A URL without its `user:password@` part, for logs."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    return f"{scheme}://{rest.split('@', 1)[1]}"


def parse_bool(raw: str, var: str) -> bool:
    """Strict: true/false/1/0/yes/no/on/off (any case); anything else names `var`."""
    word = raw.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ConfigError(f"{var}={raw!r} is not a boolean: use one of {', '.join(_TRUE + _FALSE)}")


def _convert(opt: Option, raw: str) -> Any:
    if opt.type is bool:
        return parse_bool(raw, opt.env)
    try:
        return opt.type(raw)
    except ValueError as exc:
        raise ConfigError(f"{opt.env}={raw!r} is not a valid {opt.type.__name__}") from exc


def read_secret_file(path: str, var: str) -> str:
    """The content of a secret file, without its trailing newline (`echo` and editors add
    one; Kubernetes secrets usually have none). The message never carries the content."""
    try:
        with open(path, encoding="utf-8", newline="") as f:  # bytes as written
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{var}={path!r}: cannot read the file: {exc.__class__.__name__}"
        ) from exc
    return text.rstrip("\r\n")


def resolve_env(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Environment with every <VAR>_FILE replaced by <VAR> and the file's content.

    Returns (values, files): `files` maps each such <VAR> to its path, for clients that
    re-read a rotated secret. Both <VAR> and <VAR>_FILE set is an error (which one wins
    would be a guess). Only CONNECTOR_*, KAFKA_BOOTSTRAP_SERVERS and the API key
    variables are considered: other programs' *_FILE variables are none of our business.
    """
    ours = {o.env for o in OPTIONS} | {"GOOGLE_API_KEY"}
    values: dict[str, str] = {}
    files: dict[str, str] = {}
    for name, raw in env.items():
        base = name[: -len(FILE_SUFFIX)] if name.endswith(FILE_SUFFIX) else ""
        if base and (base in ours or base.startswith("CONNECTOR_")):
            if base in env:
                raise ConfigError(f"both {base} and {name} are set: keep one")
            files[base] = raw
            values[base] = read_secret_file(raw, name)
        else:
            values.setdefault(name, raw)
    return values, files


def check_unknown(env: Mapping[str, str]) -> None:
    """Refuse an unknown CONNECTOR_* variable, naming the closest setting (a typo is
    otherwise ignored silently and the default applies). CONNECTOR_KAFKA_* names are
    checked against kafka-python's settings by the Kafka adapter."""
    known = {o.env for o in OPTIONS} | set(ALLOWED_ENV)
    links = service_links(env)
    unknown = sorted(
        n
        for n in env
        if n.startswith("CONNECTOR_")
        and not n.startswith(KAFKA_PREFIX)
        and n not in known
        and n.removesuffix(FILE_SUFFIX) not in known
        and n not in links
    )
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known - set(ALLOWED_ENV)), n=1)
        hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError(
        f"unknown setting{'s' if len(unknown) > 1 else ''}: {', '.join(hints)}; "
        "`connector settings` lists them all"
    )


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
    raw_env = os.environ if env is None else env
    check_unknown(raw_env)
    refuse_vertex(raw_env)
    settings = load_values(raw_env, args)
    validate(settings)
    return settings


def load_values(env: Mapping[str, str], args: argparse.Namespace | None = None) -> Settings:
    """Settings from flags, environment and <VAR>_FILE files, without `run`'s checks
    (`connector status` and the other tools read the same variables)."""
    resolved, files = resolve_env(env)
    values: dict[str, Any] = {}
    for opt in OPTIONS:
        raw = getattr(args, opt.attr, None) if args is not None else None
        if raw is None:
            raw = resolved.get(opt.env)
        if raw is None and opt.attr == "api_key":
            raw = resolved.get("GOOGLE_API_KEY")
        values[opt.attr] = opt.default if raw is None else _convert(opt, str(raw))
    values["kafka_extra"] = _kafka_extra(resolved)
    values["secret_files"] = files
    return Settings(**values)


def load_kafka_extra(env: Mapping[str, str]) -> dict[str, Any]:
    """kafka-python settings from CONNECTOR_KAFKA_<NAME> (or <NAME>_FILE) variables."""
    return _kafka_extra(resolve_env(env)[0])


def _kafka_extra(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # A sidecar setting may share the prefix, and so may a Kubernetes service link (a
    # Service named connector-kafka): neither is a kafka-python setting.
    skip = {o.env for o in OPTIONS} | service_links(env)
    for var, raw in env.items():
        if not var.startswith(KAFKA_PREFIX) or var in skip:
            continue
        name = var[len(KAFKA_PREFIX) :].lower()
        kind, sep, rest = name.partition(_OVERRIDE_ENV.lower())
        if sep and kind in KAFKA_CLIENT_KINDS and rest:
            out[override_key(kind, rest)] = raw
        elif sep and kind not in KAFKA_CLIENT_KINDS:
            raise ConfigError(
                f"{var}: per-client overrides are {KAFKA_PREFIX}<CLIENT>{_OVERRIDE_ENV}<NAME> "
                f"with <CLIENT> one of {', '.join(k.upper() for k in KAFKA_CLIENT_KINDS)}"
            )
        else:
            out[name] = raw
    return out


VERTEX_SWITCHES = ("GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE")
"""google-genai's environment switches to Vertex AI (read by `genai.Client` when it is not
told `vertexai=`; the adapter always tells it False). GOOGLE_CLOUD_PROJECT/LOCATION only
matter with one of them, so they alone are not refused."""


def refuse_vertex(env: Mapping[str, str]) -> None:
    """Vertex AI's batch API needs Cloud Storage or BigQuery and has no Files API: a pod that
    asks for it would fail at the first create, so it is refused at start, not half-used."""
    for var in VERTEX_SWITCHES:
        raw = env.get(var, "")
        if raw.strip().lower() in ("", *_FALSE):
            continue
        raise ConfigError(
            f"{var}={raw!r} asks google-genai for Vertex AI, which this sidecar does not "
            "support (Vertex batch jobs need Cloud Storage or BigQuery, and Vertex has no Files "
            "API); unset it (or set it to false) and use GEMINI_API_KEY for the Gemini API"
        )


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
    if not s.hanging_transaction_after_s >= 0:  # NaN refused too
        raise ConfigError("CONNECTOR_HANGING_TRANSACTION_AFTER_S must be >= 0 (0: never abort)")
    if s.spool_reserve_bytes < 0 or s.spool_results_bytes < 0:
        raise ConfigError(
            "CONNECTOR_SPOOL_RESERVE_BYTES and CONNECTOR_SPOOL_RESULTS_BYTES must be >= 0"
        )
    if s.spool_dir and not os.path.isdir(s.spool_dir):
        raise ConfigError(f"CONNECTOR_SPOOL_DIR={s.spool_dir!r} is not a directory")
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
    if s.kafka_client not in KAFKA_CLIENTS:
        raise ConfigError(
            f"CONNECTOR_KAFKA_CLIENT must be one of {', '.join(KAFKA_CLIENTS)}, "
            f"got {s.kafka_client!r}"
        )
    if s.log_format not in ("json", "console"):
        raise ConfigError("CONNECTOR_LOG_FORMAT must be json or console")
    if s.result_format not in ("single_object", "confluent", "json"):
        raise ConfigError("CONNECTOR_RESULT_FORMAT must be single_object, confluent or json")
    if s.topic_partitions < 1 or s.topic_replication < 0:
        raise ConfigError(
            "CONNECTOR_TOPIC_PARTITIONS must be >= 1 and CONNECTOR_TOPIC_REPLICATION >= 0"
        )
    if s.schema_registry_bearer_token and (
        s.schema_registry_username or s.schema_registry_password
    ):
        raise ConfigError(
            "the schema registry takes basic auth (CONNECTOR_SCHEMA_REGISTRY_USERNAME/_PASSWORD) "
            "or a bearer token (CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN), not both"
        )
    if s.schema_registry_ssl_keyfile and not s.schema_registry_ssl_certfile:
        raise ConfigError(
            "CONNECTOR_SCHEMA_REGISTRY_SSL_KEYFILE needs CONNECTOR_SCHEMA_REGISTRY_SSL_CERTFILE"
        )
    if s.result_format == "confluent" and not s.schema_registry_url:
        raise ConfigError("CONNECTOR_RESULT_FORMAT=confluent needs CONNECTOR_SCHEMA_REGISTRY_URL")


def env_table(options: Sequence[Option] = OPTIONS) -> str:
    """The README's settings table, generated so it cannot drift."""
    rows = ["| environment variable | flag | default | meaning |", "|---|---|---|---|"]
    for o in options:
        flag = "--" + o.attr.replace("_", "-") if o.flag else "(env only)"
        rows.append(f"| `{o.env}` | `{flag}` | `{o.default!r}` | {o.help} |")
    rows.append(
        f"| `{KAFKA_PREFIX}<NAME>` | (env only) | | any kafka-python setting, for every client, "
        f"e.g. `{KAFKA_PREFIX}SECURITY_PROTOCOL=SASL_SSL`, `{KAFKA_PREFIX}SASL_MECHANISM`, "
        f"`{KAFKA_PREFIX}SASL_PLAIN_USERNAME`, `{KAFKA_PREFIX}SASL_PLAIN_PASSWORD`, "
        f"`{KAFKA_PREFIX}SSL_CAFILE`; typed as kafka-python's default (an unknown name is "
        "refused, naming the closest); with confluent-kafka the same names are mapped to "
        "librdkafka's (`RD_NAMES` in connector/adapters/rdkafka.py; an unmapped one is refused) |"
    )
    rows.append(
        f"| `{KAFKA_PREFIX}CONSUMER{_OVERRIDE_ENV}<NAME>`, `..._PRODUCER{_OVERRIDE_ENV}<NAME>`, "
        f"`..._ADMIN{_OVERRIDE_ENV}<NAME>` | (env only) | | one client kind only, over the flat "
        "setting, as Kafka Connect's `consumer.override.*` (the producer override also applies "
        "to the transactional producer; the consumer override to the ledger, control and "
        "re-read consumers) |"
    )
    rows.append(
        f"| `<VAR>{FILE_SUFFIX}` | (env only) | | any variable above read from a file "
        "(Kubernetes secrets), trailing newline dropped; not together with `<VAR>` |"
    )
    return "\n".join(rows)
