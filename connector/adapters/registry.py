"""A Confluent-compatible schema registry, through `python-schema-registry-client`.

A kept library (built on fastavro, like our codec) rather than hand-written REST: it
already knows the Confluent API's paths, auth and error shapes. Its types and httpx errors
stay in here: an outage becomes `RegistryUnavailable` (transient: the record waits), an
unknown schema id a `DecodeError` (the record is bad: dead letter).

Authentication: basic auth or a bearer token, each read through a callable, so a secret
mounted as a file (`..._FILE`) is re-read for every request and a rotated one is used at
once. TLS: our own `ssl.SSLContext` (CA bundle, client certificate and key), because the
library applies a CA bundle only together with a client certificate and lets the
process's SSL_CERT_FILE override it. Credentials are never logged: `url` is the URL
without any user info, and every secret read is registered with the redactor.
"""

from __future__ import annotations

import base64
import ssl
import threading
from collections.abc import Callable, Generator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
from schema_registry.client import SchemaRegistryClient
from schema_registry.client.errors import ClientError

from connector.errors import ConfigError, DecodeError, RegistryUnavailable
from connector.redact import REDACTOR

Secret = str | Callable[[], str]
"""A credential, or a function returning its current value (a re-read secret file)."""


def _current(secret: Secret, sensitive: bool = True) -> str:
    """The credential's value now; a secret one is masked in every log line from now on."""
    value = secret() if callable(secret) else secret
    if sensitive:
        REDACTOR.add(value)
    return value


class _CredentialAuth(httpx.Auth):
    """Basic or bearer auth whose credential is read again for every request."""

    def __init__(self, username: Secret = "", password: Secret = "", token: Secret = "") -> None:
        self._username, self._password, self._token = username, password, token

    def header(self) -> str:
        token = _current(self._token)
        if token:
            return f"Bearer {token}"
        pair = f"{_current(self._username, sensitive=False)}:{_current(self._password)}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = self.header()
        yield request


def tls_context(cafile: str = "", certfile: str = "", keyfile: str = "") -> ssl.SSLContext | None:
    """The registry's TLS settings as one context; None: httpx's defaults (public CAs)."""
    if not cafile and not certfile:
        return None
    try:
        ctx = ssl.create_default_context(cafile=cafile or None)
        if certfile:
            ctx.load_cert_chain(certfile, keyfile or None)
    except (OSError, ssl.SSLError) as exc:
        which = "CA bundle" if cafile and not certfile else "CA bundle or client certificate/key"
        raise ConfigError(f"schema registry TLS: cannot load the {which}: {exc}") from exc
    return ctx


class _Client(SchemaRegistryClient):
    """The library's client with our TLS context as httpx's `verify`."""

    def __init__(self, url: str, verify: ssl.SSLContext | None, **kwargs: Any) -> None:
        self._verify = verify  # read by _get_client_kwargs, which __init__ calls
        super().__init__(url, **kwargs)

    def _get_client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super()._get_client_kwargs()
        if self._verify is not None:
            kwargs["verify"] = self._verify
        return kwargs


__all__ = ["SchemaRegistry", "redact_url", "subject_for", "tls_context"]


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
        self,
        url: str,
        username: Secret = "",
        password: Secret = "",
        timeout_s: float = 10.0,
        bearer_token: Secret = "",
        ssl_cafile: str = "",
        ssl_certfile: str = "",
        ssl_keyfile: str = "",
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ConfigError(f"schema registry URL must be http(s), got {redact_url(url)!r}")
        if parts.username and not username:  # user info in the URL: move it into auth
            username, password = parts.username, parts.password or ""
        self.url = redact_url(url)
        auth = (
            _CredentialAuth(username, password, bearer_token) if username or bearer_token else None
        )
        self._client = _Client(
            self.url,
            tls_context(ssl_cafile, ssl_certfile, ssl_keyfile),
            auth=auth,
            timeout=httpx.Timeout(timeout_s),
        )
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
