"""SASL/OAUTHBEARER for Kafka: access tokens from an OIDC provider (client credentials).

Why: Confluent Cloud, Strimzi with Keycloak and most enterprise clusters authenticate
service accounts with OAuth 2 client credentials; kafka-python asks a token provider for a
token on every new connection, so this one caches it until shortly before it expires (a
token endpoint is rate limited, and a broker restart reconnects every client at once).

The client secret and the tokens are registered with the log redactor and never appear in
a repr or an error message.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import httpx2
from kafka.errors import KafkaConnectionError, SaslAuthenticationFailedError
from kafka.net.sasl.oauth import AbstractTokenProvider

from connector.redact import REDACTOR

REFRESH_FRACTION = 0.8
"""A token is replaced once this share of its lifetime has passed (as Kafka's Java login)."""
DEFAULT_LIFETIME_S = 300.0
"""Assumed lifetime when the token response has no `expires_in`."""


def refresh_at(issued_at: float, expires_in_s: float) -> float:
    """When a token issued at `issued_at` and valid for `expires_in_s` is to be replaced."""
    return issued_at + max(0.0, expires_in_s) * REFRESH_FRACTION


class OidcTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # untyped base class
    """kafka-python's `sasl_oauth_token_provider` for the client-credentials grant."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        scope: str = "",
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        post: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.token_url = token_url
        self.client_id = client_id
        self._secret = client_secret
        self.scope = scope
        self._timeout_s = timeout_s
        self._clock = clock
        self._post = post or httpx2.post
        self._lock = threading.Lock()
        self._token = ""
        self._refresh_at = 0.0
        self.fetches = 0
        REDACTOR.add(client_secret)

    def __repr__(self) -> str:
        return f"OidcTokenProvider(token_url={self.token_url!r}, client_id={self.client_id!r})"

    def token(self) -> str:
        """A valid access token, fetched again only when the cached one is near expiry."""
        with self._lock:
            if not self._token or self._clock() >= self._refresh_at:
                self._fetch()
            return self._token

    def _fetch(self) -> None:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        issued = self._clock()
        try:
            resp = self._post(
                self.token_url,
                data=form,
                auth=(self.client_id, self._secret),
                timeout=self._timeout_s,
            )
        except httpx2.HTTPError as exc:
            # Unreachable identity provider: an outage, kafka-python retries the connect.
            raise KafkaConnectionError(
                f"OIDC token endpoint {self.token_url} not reachable: {type(exc).__name__}"
            ) from None
        if resp.status_code != 200:
            reason = _error_of(resp)
            # A refused client (wrong id or secret, no scope) will not get better: report it
            # as an authentication failure, which the sidecar treats as fatal.
            raise SaslAuthenticationFailedError(
                f"OIDC token endpoint {self.token_url} refused client id {self.client_id!r}: "
                f"HTTP {resp.status_code} {reason}"
            )
        try:
            body = resp.json()
            token = str(body["access_token"])
            expires_in = float(body.get("expires_in") or DEFAULT_LIFETIME_S)
        except (ValueError, KeyError, TypeError) as exc:
            raise SaslAuthenticationFailedError(
                f"OIDC token endpoint {self.token_url} answered without an access_token "
                f"({type(exc).__name__})"
            ) from None
        REDACTOR.add(token)
        self._token = token
        self._refresh_at = refresh_at(issued, expires_in)
        self.fetches += 1


def _error_of(resp: Any) -> str:
    """The OAuth `error` code of a refusal (never the body: it may echo credentials)."""
    try:
        body = resp.json()
    except ValueError:
        return ""
    return str(body.get("error", "")) if isinstance(body, dict) else ""
