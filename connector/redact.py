"""Keep secrets out of every log line, status page, metric label, header and error message.

Two layers: exact values registered at start (the API key, Kafka SASL/SSL passwords) are
replaced wherever they appear, and patterns catch what was never registered: credentials in
URLs (`scheme://user:pass@host` -> `scheme://user:***@host`), `key=`/`token=`/`password=`
query or config pairs, Google API keys (`AIza...`), `x-goog-api-key` headers and bearer tokens.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # scheme://user:password@host -> scheme://user:***@host
    (re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"), r"\g<pre>" + MASK),
    # key=..., api_key=..., access_token=..., password=... (queries, configs, reprs)
    (
        re.compile(
            r"(?i)(?P<pre>\b(?:api[_-]?key|key|access[_-]?token|token|password|passwd|secret|"
            r"sasl[_-]plain[_-]password)\b['\"]?\s*[=:]\s*['\"]?)(?!\*\*\*)[^\s&'\",;)}\]]+"
        ),
        r"\g<pre>" + MASK,
    ),
    (
        re.compile(r"(?i)(?P<pre>x-goog-api-key['\"]?\s*[:=]\s*['\"]?)[^\s'\",;]+"),
        r"\g<pre>" + MASK,
    ),
    (re.compile(r"(?i)(?P<pre>\bbearer\s+)[A-Za-z0-9._~+/=-]+"), r"\g<pre>" + MASK),
    (re.compile(r"AIza[0-9A-Za-z_-]{30,}"), MASK),
)

_MIN_SECRET = 4  # shorter "secrets" would mask ordinary words


class Redactor:
    """Masks registered secret values and secret-looking patterns in strings."""

    def __init__(self) -> None:
        self._secrets: tuple[str, ...] = ()
        self._lock = threading.Lock()

    def add(self, *values: str | None) -> None:
        with self._lock:
            new = {v for v in values if v and len(v) >= _MIN_SECRET}
            # Longest first, so a secret containing another is masked whole.
            self._secrets = tuple(sorted(set(self._secrets) | new, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def text(self, s: str) -> str:
        for secret in self._secrets:
            if secret in s:
                s = s.replace(secret, MASK)
        for pattern, repl in _PATTERNS:
            s = pattern.sub(repl, s)
        return s

    def value(self, v: Any) -> Any:
        """Redact strings inside dicts, lists and tuples; other values pass unchanged."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, Mapping):
            return {k: self.value(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return type(v)(self.value(x) for x in v)
        if isinstance(v, BaseException):
            return self.text(f"{type(v).__name__}: {v}")
        return v


REDACTOR = Redactor()
"""The process's redactor: logs, status, headers and error messages all go through it."""


def redact(s: str) -> str:
    return REDACTOR.text(s)


def secret_values(api_key: str, kafka_extra: Mapping[str, Any]) -> Iterable[str]:
    """The values to register at start: the API key and every secret-named Kafka setting."""
    yield api_key
    for k, v in kafka_extra.items():
        if any(w in k for w in ("password", "secret", "token", "key")) and isinstance(v, str):
            yield v
