"""A Confluent-compatible schema registry, through `python-schema-registry-client`.

A kept library (built on fastavro, like our codec) rather than hand-written REST: it
already knows the Confluent API's paths, auth and error shapes. Its types and httpx errors
stay in here: an outage becomes `RegistryUnavailable` (transient: the record waits), an
unknown schema id a `DecodeError` (the record is bad: dead letter).

Credentials come from settings (environment only) and are never logged: `describe()`
shows the URL without any user info.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from schema_registry.client import SchemaRegistryClient
from schema_registry.client.errors import ClientError

from connector.errors import ConfigError, DecodeError, RegistryUnavailable

__all__ = ["SchemaRegistry", "redact_url", "subject_for"]


def subject_for(topic: str) -> str:
    """TopicNameStrategy, the Confluent default: `<topic>-value` for record values."""
    return f"{topic}-value"


def redact_url(url: str) -> str:
    """The URL without `user:password@`, safe to log."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class SchemaRegistry:
    """Schema lookups by id (cached forever: ids are immutable) and result-schema registration."""

    def __init__(
        self, url: str, username: str = "", password: str = "", timeout_s: float = 10.0
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"schema registry URL must be http(s), got {redact_url(url)!r}")
        if parts.username and not username:  # user info in the URL: move it into auth
            username, password = parts.username, parts.password or ""
        self.url = redact_url(url)
        auth = httpx.BasicAuth(username, password) if username else None
        self._client = SchemaRegistryClient(self.url, auth=auth, timeout=httpx.Timeout(timeout_s))
        self._by_id: dict[int, Any] = {}
        self._lock = threading.Lock()

    def schema_by_id(self, schema_id: int) -> Any:
        """The writer schema (Avro JSON) registered under `schema_id`."""
        with self._lock:
            cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        try:
            schema = self._client.get_by_id(schema_id)
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {exc!r}") from exc
        except ClientError as exc:
            if exc.http_code is not None and exc.http_code >= 500:
                raise RegistryUnavailable(
                    f"schema registry {self.url} failed with {exc.http_code}"
                ) from exc
            raise DecodeError(f"schema id {schema_id}: registry refused ({exc.http_code})") from exc
        if schema is None:
            raise DecodeError(f"schema id {schema_id} is not in the registry {self.url}")
        if schema.schema_type != "AVRO":
            raise DecodeError(f"schema id {schema_id} is a {schema.schema_type} schema, not Avro")
        raw = schema.raw_schema
        with self._lock:
            self._by_id[schema_id] = raw
        return raw

    def schema_id_for(self, topic: str, schema: dict[str, Any], auto_register: bool) -> int:
        """The id of `schema` under the topic's value subject: registered, or looked up."""
        subject = subject_for(topic)
        try:
            if auto_register:
                return int(self._client.register(subject, schema))
            found = self._client.check_version(subject, schema)
        except (httpx.HTTPError, OSError) as exc:
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {exc!r}") from exc
        except ClientError as exc:
            raise ConfigError(
                f"schema registry {self.url} refused the result schema under {subject!r}: "
                f"{exc.http_code} {exc.message}"
            ) from exc
        if found is None or found.schema_id is None:
            raise ConfigError(
                f"the result schema is not registered under {subject!r} in {self.url} and "
                "auto-registration is off (CONNECTOR_SCHEMA_REGISTRY_AUTO_REGISTER=false)"
            )
        return int(found.schema_id)
