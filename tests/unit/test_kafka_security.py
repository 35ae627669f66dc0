"""Kafka client security from settings: OAuth token provider, MSK IAM checks, AccessDenied."""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import replace
from typing import Any

import pytest
from kafka import errors as kerrors

from connector.adapters import security
from connector.adapters.access import SASL_FAILURES, access_denied, watch_sasl_failures
from connector.adapters.oauth import OidcTokenProvider, refresh_at
from connector.config import Settings, load
from connector.errors import AccessDenied, ConfigError
from connector.redact import REDACTOR

SECRET = "client-secret-xyz"


class FakeResponse:
    def __init__(self, status: int, body: Any) -> None:
        self.status_code = status
        self._body = body

    def json(self) -> Any:
        if isinstance(self._body, Exception):
            raise self._body
        return self._body


class FakeTokenEndpoint:
    def __init__(self, *responses: FakeResponse) -> None:
        self.responses = list(responses)
        self.calls: list[dict[str, Any]] = []

    def __call__(self, url: str, **kw: Any) -> FakeResponse:
        self.calls.append({"url": url, **kw})
        return self.responses.pop(0)


def ok(token: str, expires_in: float = 100) -> FakeResponse:
    return FakeResponse(200, {"access_token": token, "expires_in": expires_in})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(endpoint: FakeTokenEndpoint, clock: Clock | None = None) -> OidcTokenProvider:
    return OidcTokenProvider(
        "https://idp/token", "sidecar", SECRET, scope="kafka", clock=clock or Clock(), post=endpoint
    )


# -- the token provider ----------------------------------------------------------------------


def test_refresh_at_is_before_expiry() -> None:
    assert refresh_at(100.0, 100.0) == pytest.approx(180.0)
    assert refresh_at(100.0, -5) == 100.0


def test_token_is_cached_until_near_expiry() -> None:
    clock = Clock()
    endpoint = FakeTokenEndpoint(ok("t1", 100), ok("t2", 100))
    p = provider(endpoint, clock)
    assert p.token() == "t1"
    clock.now += 79
    assert p.token() == "t1"
    clock.now += 2  # past 80 % of the lifetime
    assert p.token() == "t2"
    assert len(endpoint.calls) == 2
    call = endpoint.calls[0]
    assert call["data"] == {"grant_type": "client_credentials", "scope": "kafka"}
    assert call["auth"] == ("sidecar", SECRET)


def test_refused_client_is_an_authentication_failure_without_the_secret() -> None:
    p = provider(FakeTokenEndpoint(FakeResponse(401, {"error": "invalid_client"})))
    with pytest.raises(kerrors.SaslAuthenticationFailedError) as info:
        p.token()
    assert "invalid_client" in str(info.value)
    assert "'sidecar'" in str(info.value)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(p)


def test_answer_without_a_token_is_an_authentication_failure() -> None:
    p = provider(FakeTokenEndpoint(FakeResponse(200, {"token_type": "Bearer"})))
    with pytest.raises(kerrors.SaslAuthenticationFailedError, match="access_token"):
        p.token()


def test_secret_and_tokens_are_redacted() -> None:
    p = provider(FakeTokenEndpoint(ok("eyJ.token-value.sig")))
    p.token()
    assert SECRET not in REDACTOR.text(f"x {SECRET} y")
    assert "eyJ.token-value.sig" not in REDACTOR.text("Bearer eyJ.token-value.sig")


# -- settings -> client config ---------------------------------------------------------------


def oauth_settings(**kw: Any) -> Settings:
    return Settings(
        kafka_extra={"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
        oauth_token_url="https://idp/token",
        oauth_client_id="sidecar",
        oauth_client_secret=SECRET,
        **kw,
    )


def test_oauthbearer_gets_a_token_provider() -> None:
    extra = security.kafka_client_extra(oauth_settings(oauth_scope="kafka"))
    p = extra["sasl_oauth_token_provider"]
    assert isinstance(p, OidcTokenProvider)
    assert (p.token_url, p.client_id, p.scope) == ("https://idp/token", "sidecar", "kafka")


def test_oauthbearer_without_credentials_is_refused() -> None:
    with pytest.raises(ConfigError, match="CONNECTOR_OAUTH_CLIENT_SECRET"):
        security.kafka_client_extra(replace(oauth_settings(), oauth_client_secret=""))


def test_oauth_settings_without_the_mechanism_are_refused() -> None:
    s = replace(oauth_settings(), kafka_extra={"security_protocol": "SASL_SSL"})
    with pytest.raises(ConfigError, match="OAUTHBEARER"):
        security.kafka_client_extra(s)


def test_oauth_settings_from_the_environment() -> None:
    s = load(
        {
            "CONNECTOR_GEMINI_BASE_URL": "http://emulator",
            "CONNECTOR_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
            "CONNECTOR_OAUTH_TOKEN_URL": "https://idp/token",
            "CONNECTOR_OAUTH_CLIENT_ID": "sidecar",
            "CONNECTOR_OAUTH_CLIENT_SECRET": SECRET,
        }
    )
    assert s.oauth_client_secret == SECRET
    assert s.describe()["oauth_client_secret"] == "***"
    assert SECRET not in repr(s)


def test_plain_settings_pass_through_unchanged() -> None:
    extra = {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}
    assert security.kafka_client_extra(Settings(kafka_extra=extra)) == extra


def test_msk_iam_needs_botocore(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "botocore" else real(name)
    )
    s = Settings(kafka_extra={"security_protocol": "SASL_SSL", "sasl_mechanism": "AWS_MSK_IAM"})
    with pytest.raises(ConfigError, match=r"gemini-batch-connector\[msk\]"):
        security.kafka_client_extra(s)


def test_msk_iam_with_botocore_needs_sasl_ssl(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name: object() if name == "botocore" else real(name),
    )
    ok_extra = {"security_protocol": "SASL_SSL", "sasl_mechanism": "AWS_MSK_IAM"}
    assert security.kafka_client_extra(Settings(kafka_extra=ok_extra)) == ok_extra
    bad = Settings(kafka_extra={"security_protocol": "SSL", "sasl_mechanism": "AWS_MSK_IAM"})
    with pytest.raises(ConfigError, match="SASL_SSL"):
        security.kafka_client_extra(bad)


# -- AccessDenied ----------------------------------------------------------------------------

SCRAM = {
    "security_protocol": "SASL_SSL",
    "sasl_mechanism": "SCRAM-SHA-512",
    "sasl_plain_username": "svc",
    "sasl_plain_password": "pw-123456",
}


def test_authorization_failures_name_principal_and_resource() -> None:
    cases = [
        (kerrors.TopicAuthorizationFailedError({"llm.requests"}), "topic llm.requests"),
        (kerrors.GroupAuthorizationFailedError(), "Read on group g1"),
        (kerrors.TransactionalIdAuthorizationFailedError(), "Write on transactional id g1"),
    ]
    for exc, expected in cases:
        denied = access_denied(exc, SCRAM, "consumer", resource="g1")
        assert isinstance(denied, AccessDenied)
        assert "user 'svc' (SCRAM-SHA-512)" in str(denied)
        assert expected in str(denied)
        assert "pw-123456" not in str(denied)


def test_a_cause_chain_is_searched() -> None:
    outer = RuntimeError("poll failed")
    outer.__cause__ = kerrors.GroupAuthorizationFailedError()
    assert isinstance(access_denied(outer, SCRAM, "poll"), AccessDenied)


def test_other_errors_are_not_access_denied() -> None:
    assert access_denied(kerrors.KafkaTimeoutError("slow"), SCRAM, "admin") is None
    assert access_denied(OSError("refused"), SCRAM, "admin") is None


def test_a_logged_login_refusal_turns_a_bootstrap_timeout_into_access_denied() -> None:
    """kafka-python logs the refused login and raises only a timeout; the log is enough."""
    watch_sasl_failures()
    began = time.monotonic()
    refusal = kerrors.SaslAuthenticationFailedError("invalid credentials")
    logging.getLogger("kafka.net.manager").warning(
        "Bootstrap connection to %s failed: %s", 0, refusal
    )
    timeout = kerrors.KafkaTimeoutError("Unable to bootstrap")
    denied = access_denied(timeout, SCRAM, "admin", since=began)
    assert isinstance(denied, AccessDenied)
    assert "refused to authenticate user 'svc'" in str(denied)
    # A refusal from before this call does not count.
    assert access_denied(timeout, SCRAM, "admin", since=time.monotonic() + 1) is None
    assert SASL_FAILURES.seen_since(began) is refusal


def test_principal_for_mtls_and_oauth() -> None:
    mtls = {"security_protocol": "SSL", "ssl_certfile": "/certs/client.pem"}
    denied = access_denied(kerrors.TopicAuthorizationFailedError(), mtls, "producer")
    assert denied is not None
    assert "/certs/client.pem" in str(denied)
    oauth = security.kafka_client_extra(oauth_settings())
    denied = access_denied(kerrors.GroupAuthorizationFailedError(), oauth, "consumer")
    assert denied is not None
    assert "OAuth client 'sidecar'" in str(denied)


# -- kafka-python fix: an answer read together with the close is not dropped -----------------


def test_bytes_read_before_eof_are_delivered_before_the_disconnect() -> None:
    from kafka.net import transport

    from connector.adapters import kafka_patches

    assert kafka_patches.apply()  # the pinned version: patched (idempotently)
    for cls in (transport.KafkaTCPTransport, transport.KafkaSSLTransport):
        assert hasattr(cls.__dict__["_sock_recv"], "__wrapped__")
    eof = kerrors.KafkaConnectionError("socket disconnected")
    reads = iter([(b"sasl-refusal", eof)])
    recv = kafka_patches._deliver_data_before_eof(lambda self: next(reads))

    class Transport:
        pass

    t = Transport()
    assert recv(t) == (b"sasl-refusal", None)
    assert recv(t) == (b"", eof)
    plain = iter([(b"", eof), (b"data", None)])
    recv = kafka_patches._deliver_data_before_eof(lambda self: next(plain))
    assert recv(Transport()) == (b"", eof)  # nothing read: the disconnect as before
    assert recv(Transport()) == (b"data", None)
