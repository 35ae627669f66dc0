"""Kafka client security from settings: OAUTHBEARER's token provider, AWS MSK IAM's checks.

Why a module of its own: the pass-through `CONNECTOR_KAFKA_*` settings cover SASL/PLAIN,
SCRAM and TLS as they are, but OAUTHBEARER needs an object (a token provider) and AWS MSK
IAM an optional package; both are checked here once, at start, with a message naming the
setting, instead of failing inside the first connection.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from connector.adapters.oauth import OidcTokenProvider
from connector.config import Settings
from connector.errors import ConfigError

OAUTHBEARER = "OAUTHBEARER"
AWS_MSK_IAM = "AWS_MSK_IAM"


def kafka_client_extra(s: Settings) -> dict[str, Any]:
    """`s.kafka_extra` plus what the SASL mechanism needs; ConfigError if it cannot work."""
    extra = dict(s.kafka_extra)
    mechanism = str(extra.get("sasl_mechanism", "")).upper()
    oauth_set = [
        name
        for name, value in (
            ("CONNECTOR_OAUTH_TOKEN_URL", s.oauth_token_url),
            ("CONNECTOR_OAUTH_CLIENT_ID", s.oauth_client_id),
            ("CONNECTOR_OAUTH_CLIENT_SECRET", s.oauth_client_secret),
        )
        if value
    ]
    if mechanism == OAUTHBEARER:
        missing = {
            "CONNECTOR_OAUTH_TOKEN_URL",
            "CONNECTOR_OAUTH_CLIENT_ID",
            "CONNECTOR_OAUTH_CLIENT_SECRET",
        } - set(oauth_set)
        if missing:
            raise ConfigError(
                f"CONNECTOR_KAFKA_SASL_MECHANISM=OAUTHBEARER needs {', '.join(sorted(missing))}"
            )
        if not s.oauth_token_url.startswith(("https://", "http://")):
            raise ConfigError("CONNECTOR_OAUTH_TOKEN_URL must be an http(s) URL")
        extra["sasl_oauth_token_provider"] = OidcTokenProvider(
            s.oauth_token_url, s.oauth_client_id, s.oauth_client_secret, s.oauth_scope
        )
    elif oauth_set:
        raise ConfigError(
            f"{', '.join(oauth_set)} set but CONNECTOR_KAFKA_SASL_MECHANISM is "
            f"{mechanism or 'unset'}; set it to OAUTHBEARER (or drop the OAuth settings)"
        )
    if mechanism == AWS_MSK_IAM:
        check_msk_iam(extra)
    return extra


def check_msk_iam(extra: Mapping[str, Any]) -> None:
    """AWS MSK IAM needs botocore (the `msk` extra) and SASL_SSL; credentials and region
    come from the usual AWS chain (environment, web identity, instance profile)."""
    if importlib.util.find_spec("botocore") is None:
        raise ConfigError(
            "CONNECTOR_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs botocore: install "
            "gemini-batch-connector[msk]"
        )
    if str(extra.get("security_protocol", "")).upper() != "SASL_SSL":
        raise ConfigError(
            "CONNECTOR_KAFKA_SASL_MECHANISM=AWS_MSK_IAM needs "
            "CONNECTOR_KAFKA_SECURITY_PROTOCOL=SASL_SSL"
        )
