"""Kafka authentication and authorization failures, reported as what they are.

Why: kafka-python raises them like any other broker error, and the sidecar retried every
broker error for CONNECTOR_STARTUP_TIMEOUT_S as "Kafka not reachable". A wrong password or a
missing ACL never heals by waiting; the operator needs to read which principal was refused
what, at once. `access_denied` turns such an error (anywhere in an exception's cause chain)
into `AccessDenied`, a ConfigError: the process stops with exit code 2.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

from kafka import errors as kerrors

from connector.errors import AccessDenied

_HINTS: tuple[tuple[type[BaseException], str], ...] = (
    (
        kerrors.TopicAuthorizationFailedError,
        "an ACL on topic {resource}: Read (request, ledger, control topics), Write (result, "
        "dead-letter, ledger, control topics), DescribeConfigs, or Create (ledger, control)",
    ),
    (kerrors.GroupAuthorizationFailedError, "Read on group {resource}"),
    (
        kerrors.TransactionalIdAuthorizationFailedError,
        "Write on transactional id {resource} (prefixed `<group id>.` for the default ids)",
    ),
    (
        kerrors.ClusterAuthorizationFailedError,
        "a cluster permission (Create on the cluster is needed only if the ledger or control "
        "topic is missing and not covered by a topic Create ACL)",
    ),
)


class _SaslFailures(logging.Filter):
    """Remembers the last SASL authentication failure kafka-python logged.

    Why: kafka-python 3.0.12 logs a refused login during bootstrap ("Bootstrap connection
    to ... failed: SaslAuthenticationFailedError ...") and retries until bootstrap_timeout_ms,
    then raises a bare KafkaTimeoutError("Unable to bootstrap"). The exception object rides
    in the log record's arguments; this filter keeps it (and lets the record through).
    Process-wide: `seen_since` compares monotonic times, enough for one sidecar per process.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._last: tuple[float, BaseException] | None = None
        self.quiet: dict[str, int] = {}
        """Loggers someone set above WARNING: lowered so the refusal is still seen, and
        their records below the level they were given are dropped here, after the look."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            if isinstance(arg, kerrors.SaslAuthenticationFailedError):
                with self._lock:
                    self._last = (time.monotonic(), arg)
        return record.levelno >= self.quiet.get(record.name, logging.NOTSET)

    def seen_since(self, since: float) -> BaseException | None:
        with self._lock:
            last = self._last
        return last[1] if last is not None and last[0] >= since else None


SASL_FAILURES = _SaslFailures()
_WATCHED = ("kafka.net.manager", "kafka.net.connection")


def watch_sasl_failures() -> None:
    """Attach the filter to kafka-python's connection loggers (idempotent)."""
    for name in _WATCHED:
        logger = logging.getLogger(name)
        if SASL_FAILURES not in logger.filters:
            logger.addFilter(SASL_FAILURES)
        # kafka-python logs the refusal at WARNING; a logger silenced above that (an
        # application quieting kafka's retry chatter) would never create the record.
        level = logger.getEffectiveLevel()
        if level > logging.WARNING:
            SASL_FAILURES.quiet[name] = level
            logger.setLevel(logging.WARNING)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        yield cur
        cur = cur.__cause__ or cur.__context__


def principal_of(extra: Mapping[str, Any]) -> str:
    """Who the client claims to be, as far as the settings say (never a secret)."""
    mechanism = str(extra.get("sasl_mechanism", "")).upper()
    protocol = str(extra.get("security_protocol", "PLAINTEXT")).upper()
    if mechanism == "OAUTHBEARER":
        provider = extra.get("sasl_oauth_token_provider")
        return f"OAuth client {getattr(provider, 'client_id', '?')!r}"
    if mechanism == "AWS_MSK_IAM":
        return "the AWS IAM identity of this process"
    if protocol.startswith("SASL"):
        return f"user {extra.get('sasl_plain_username', '?')!r} ({mechanism or 'PLAIN'})"
    if extra.get("ssl_certfile"):
        return f"the client certificate {extra['ssl_certfile']}"
    return f"the {protocol} principal (User:ANONYMOUS unless the listener maps it)"


def _resource(exc: BaseException, fallback: str) -> str:
    """The resource kafka-python put in the error (a set of topics, a name), else `fallback`."""
    detail = exc.args[0] if exc.args else None
    if isinstance(detail, set | frozenset | list | tuple) and detail:
        return ", ".join(sorted(str(d) for d in detail))
    if isinstance(detail, str) and detail and " " not in detail:
        return detail
    return fallback or "?"


def access_denied(
    exc: BaseException,
    extra: Mapping[str, Any],
    doing: str,
    resource: str = "",
    since: float | None = None,
) -> AccessDenied | None:
    """An AccessDenied for an authentication/authorization error in `exc`'s chain, else None.

    `doing`: what the sidecar was doing ("consumer", "reading the ledger"); `resource`: the
    topic, group or transactional id involved when the caller knows it; `since`: when the
    failed call began, to also accept a login refusal kafka-python only logged (see
    `_SaslFailures`) before it gave up with a timeout.
    """
    if isinstance(exc, AccessDenied):
        return exc  # already mapped closer to the call, with the resource named
    who = principal_of(extra)
    chain = list(_chain(exc))
    if since is not None and isinstance(exc, kerrors.KafkaTimeoutError):
        logged = SASL_FAILURES.seen_since(since)
        if logged is not None:
            chain.append(logged)
    for e in chain:
        if isinstance(e, kerrors.SaslAuthenticationFailedError):
            return AccessDenied(
                f"Kafka refused to authenticate {who} ({doing}): {e}. Check the credentials "
                f"(CONNECTOR_KAFKA_SASL_*, CONNECTOR_OAUTH_*) and that the user exists for "
                f"this SASL mechanism on the cluster."
            )
        if isinstance(e, kerrors.AuthorizationError):
            hint = "an ACL (see `connector acls`)"
            for kind, text in _HINTS:
                if isinstance(e, kind):
                    hint = text.format(resource=_resource(e, resource))
                    break
            return AccessDenied(
                f"Kafka denied {who} ({doing}): {type(e).__name__}. Missing: {hint}. "
                f"`connector acls` prints every ACL the sidecar needs."
            )
    return None


def describe_configs_denied(topic: str, extra: Mapping[str, Any]) -> AccessDenied:
    """A topic's configuration came back empty: DescribeConfigs on it is missing."""
    return AccessDenied(
        f"Kafka returned no configuration for topic {topic!r} to {principal_of(extra)}. "
        f"Missing: DescribeConfigs on topic {topic} (the sidecar reads max.message.bytes, "
        f"retention and the ledger's cleanup.policy at start). `connector acls` prints every "
        f"ACL the sidecar needs."
    )
