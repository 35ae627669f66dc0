"""CONNECTOR_KAFKA_* as each kafka-python client gets them: typed, per-client, named."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from connector.adapters.kafka import (
    CLIENT_ID_PREFIX,
    check_kafka_settings,
    client_config,
    producer_config,
    producer_max_request_size,
    with_client_ids,
)
from connector.config import load_kafka_extra
from connector.errors import ConfigError

_CLIENTS = (KafkaConsumer, KafkaProducer, KafkaAdminClient)


def _extra(**env: str) -> dict[str, object]:
    return load_kafka_extra({f"CONNECTOR_KAFKA_{k}": v for k, v in env.items()})


# -- typing ----------------------------------------------------------------------------


def test_values_are_typed_like_kafka_pythons_defaults() -> None:
    cfg = client_config(
        KafkaConsumer,
        "b:1",
        _extra(
            SECURITY_PROTOCOL="SASL_SSL",
            REQUEST_TIMEOUT_MS="30000",
            SSL_CHECK_HOSTNAME="off",
            CHECK_CRCS="true",
            SASL_PLAIN_PASSWORD="0123",
            SASL_PLAIN_USERNAME="true",
            API_VERSION="3.7.0",
        ),
    )
    assert cfg["security_protocol"] == "SASL_SSL"
    assert cfg["request_timeout_ms"] == 30000
    assert cfg["ssl_check_hostname"] is False
    assert cfg["check_crcs"] is True
    assert cfg["sasl_plain_password"] == "0123"  # a password, never an int
    assert cfg["sasl_plain_username"] == "true"  # a user name, never a bool
    assert cfg["api_version"] == (3, 7, 0)


@given(st.from_regex(r"[0-9]{1,12}", fullmatch=True))
def test_an_all_digit_password_stays_a_string(raw: str) -> None:
    for client in _CLIENTS:
        got = client_config(client, "b:1", _extra(SASL_PLAIN_PASSWORD=raw))["sasl_plain_password"]
        assert got == raw
        assert isinstance(got, str)


@pytest.mark.parametrize(
    ("name", "raw"),
    [("REQUEST_TIMEOUT_MS", "30s"), ("CHECK_CRCS", "ture"), ("API_VERSION", "three")],
)
def test_a_value_that_does_not_parse_names_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_kafka_settings(_extra(**{name: raw}))
    assert f"CONNECTOR_KAFKA_{name}" in str(info.value)
    assert repr(raw) in str(info.value)


@pytest.mark.parametrize("name", ["VALUE_SERIALIZER", "SASL_OAUTH_TOKEN_PROVIDER", "SSL_CONTEXT"])
def test_object_settings_cannot_come_from_the_environment(name: str) -> None:
    with pytest.raises(ConfigError, match=f"CONNECTOR_KAFKA_{name}.*cannot be set"):
        check_kafka_settings(_extra(**{name: "x"}))


def test_acks_all_and_numbers() -> None:
    assert client_config(KafkaProducer, "b:1", _extra(ACKS="all"))["acks"] == "all"
    assert client_config(KafkaProducer, "b:1", _extra(ACKS="0"))["acks"] == 0
    assert client_config(KafkaProducer, "b:1", _extra(RETRIES="5"))["retries"] == 5


# -- names -----------------------------------------------------------------------------


def test_an_unknown_name_names_the_closest_kafka_python_setting() -> None:
    with pytest.raises(ConfigError) as info:
        check_kafka_settings(_extra(SASL_PLAIN_PASWORD="x"))
    msg = str(info.value)
    assert "CONNECTOR_KAFKA_SASL_PLAIN_PASWORD" in msg
    assert "did you mean CONNECTOR_KAFKA_SASL_PLAIN_PASSWORD?" in msg


def test_an_override_of_a_setting_its_client_lacks_is_refused() -> None:
    """session_timeout_ms is a consumer setting: as a producer override it is a mistake."""
    with pytest.raises(ConfigError) as info:
        check_kafka_settings(_extra(PRODUCER_OVERRIDE_SESSION_TIMEOUT_MS="6000"))
    assert "CONNECTOR_KAFKA_PRODUCER_OVERRIDE_SESSION_TIMEOUT_MS" in str(info.value)
    assert "producer" in str(info.value)


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        ("GROUP_ID", "CONNECTOR_GROUP_ID"),
        ("TRANSACTIONAL_ID", "CONNECTOR_TRANSACTIONAL_ID"),
        ("ENABLE_AUTO_COMMIT", "commits"),
        ("CONSUMER_OVERRIDE_MAX_POLL_RECORDS", "per poll"),
    ],
)
def test_settings_the_sidecar_sets_itself_are_refused(name: str, hint: str) -> None:
    """They were dropped or crashed the start with a duplicate keyword before."""
    with pytest.raises(ConfigError, match=hint):
        check_kafka_settings(_extra(**{name: "x"}))


def test_the_override_scheme_cannot_collide_with_kafka_python_names() -> None:
    """CONNECTOR_KAFKA_CONSUMER_TIMEOUT_MS is kafka-python's consumer_timeout_ms, not an
    override: no kafka-python name contains `_override_` or a dot, and none ends in _file."""
    names = {k for c in _CLIENTS for k in c.DEFAULT_CONFIG}
    assert not [n for n in names if "_override_" in n or "." in n or n.endswith("_file")]
    assert _extra(CONSUMER_TIMEOUT_MS="5") == {"consumer_timeout_ms": "5"}
    assert _extra(CONSUMER_OVERRIDE_FETCH_MAX_BYTES="5") == {
        "consumer.override.fetch_max_bytes": "5"
    }


# -- per-client overrides ----------------------------------------------------------------


def test_an_override_applies_to_its_client_kind_only() -> None:
    extra = _extra(
        REQUEST_TIMEOUT_MS="30000",
        CONSUMER_OVERRIDE_REQUEST_TIMEOUT_MS="40000",
        PRODUCER_OVERRIDE_LINGER_MS="50",
        ADMIN_OVERRIDE_REQUEST_TIMEOUT_MS="10000",
        SASL_PLAIN_USERNAME="shared",
        PRODUCER_OVERRIDE_SASL_PLAIN_USERNAME="writer",
    )
    consumer = client_config(KafkaConsumer, "b:1", extra)
    producer = producer_config("b:1", extra)
    admin = client_config(KafkaAdminClient, "b:1", extra)
    assert (consumer["request_timeout_ms"], consumer["sasl_plain_username"]) == (40000, "shared")
    assert (producer["request_timeout_ms"], producer["sasl_plain_username"]) == (30000, "writer")
    assert producer["linger_ms"] == 50
    assert admin["request_timeout_ms"] == 10000
    assert "linger_ms" not in consumer
    assert "linger_ms" not in admin


def test_the_transactional_producer_takes_producer_overrides() -> None:
    extra = _extra(PRODUCER_OVERRIDE_MAX_REQUEST_SIZE="2000000")
    assert producer_config("b:1", extra, "txn")["max_request_size"] == 2_000_000
    assert producer_max_request_size(extra) == 2_000_000
    assert producer_max_request_size(_extra(MAX_REQUEST_SIZE="3000")) == 3000


def test_a_producer_override_cannot_weaken_durability() -> None:
    cfg = producer_config("b:1", _extra(PRODUCER_OVERRIDE_ACKS="1"))
    assert cfg["acks"] == "all"


# -- client ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client", "role", "want"),
    [
        (KafkaConsumer, "consumer", "grp.pod-1.consumer"),
        (KafkaProducer, "producer", "grp.pod-1.producer"),
        (KafkaProducer, "txn", "grp.pod-1.txn"),
        (KafkaAdminClient, "admin", "grp.pod-1.admin"),
        (KafkaConsumer, "ledger", "grp.pod-1.ledger"),
        (KafkaConsumer, "", "grp.pod-1.consumer"),
    ],
)
def test_each_client_gets_its_own_client_id(client: type, role: str, want: str) -> None:
    extra = with_client_ids({}, "grp", "pod-1")
    assert client_config(client, "b:1", extra, role)["client_id"] == want


def test_a_configured_client_id_wins() -> None:
    extra = with_client_ids(
        _extra(CLIENT_ID="mine", ADMIN_OVERRIDE_CLIENT_ID="mine-admin"), "grp", "pod-1"
    )
    assert client_config(KafkaConsumer, "b:1", extra, "consumer")["client_id"] == "mine"
    assert client_config(KafkaAdminClient, "b:1", extra, "admin")["client_id"] == "mine-admin"


def test_without_a_prefix_kafka_python_names_the_client() -> None:
    assert "client_id" not in client_config(KafkaConsumer, "b:1", {})
    assert CLIENT_ID_PREFIX not in client_config(KafkaConsumer, "b:1", with_client_ids({}, "g"))


def test_the_replica_defaults_to_the_host_name() -> None:
    import socket

    extra = with_client_ids({}, "grp")
    assert extra[CLIENT_ID_PREFIX] == f"grp.{socket.gethostname()}"
