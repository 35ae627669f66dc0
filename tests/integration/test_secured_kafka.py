"""The sidecar on a secured broker, with only the ACLs `connector.acls` lists.

One broker for the module with every secured listener (SASL_SSL with SCRAM-SHA-512 and PLAIN,
SSL with client certificates, SASL_SSL with OAUTHBEARER against a JWKS served here) and the
StandardAuthorizer denying whatever no ACL allows. PLAINTEXT stays the super-user listener the
fixtures use to create topics, publish requests, read results and grant ACLs; the sidecar
talks to the broker only over a secured listener as its own principal.

Completeness: each guarantee's full path (requests in, jobs recorded in the ledger, claims,
results out) works with exactly the generated ACLs. Minimality: dropping one of them stops the
sidecar with an AccessDenied naming what is missing, well before any startup timeout.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import kafka_local
import pytest
from secured import OidcProvider, Pki, grant, make_pki
from sidecar_harness import Topics, collect, sidecar_thread

from connector.acls import Acl, required_acls
from connector.adapters.gemini import Gemini
from connector.client import RequestPublisher
from connector.config import Settings
from connector.core.records import ResultStatus
from connector.emulator import EmulatorServer
from connector.errors import AccessDenied
from connector.runner import Sidecar

SCRAM_USER, SCRAM_PASSWORD = "sidecar-scram", "scram-pass-0123"
PLAIN_USER, PLAIN_PASSWORD = "sidecar-plain", "plain-pass-4567"
MTLS_CN = "sidecar-mtls"
OAUTH_CLIENT, OAUTH_SECRET = "sidecar-oauth", "oauth-secret-89ab"


@dataclass
class SecureBroker:
    kafka: kafka_local.LocalKafka
    pki: Pki
    oidc: OidcProvider

    def client_extra(self, how: str) -> dict[str, Any]:
        """CONNECTOR_KAFKA_* settings (as kafka_extra) for each way of authenticating."""
        tls = {"ssl_cafile": str(self.pki.ca)}
        if how == "scram":
            return {
                **tls,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": SCRAM_USER,
                "sasl_plain_password": SCRAM_PASSWORD,
            }
        if how == "plain":
            return {
                **tls,
                "security_protocol": "SASL_SSL",
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": PLAIN_USER,
                "sasl_plain_password": PLAIN_PASSWORD,
            }
        if how == "mtls":
            cert, key = self.pki.clients[MTLS_CN]
            return {
                **tls,
                "security_protocol": "SSL",
                "ssl_certfile": str(cert),
                "ssl_keyfile": str(key),
            }
        assert how == "oauth"
        return {**tls, "security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"}

    def bootstrap(self, how: str) -> str:
        name = {
            "scram": kafka_local.SASL_SSL,
            "plain": kafka_local.SASL_SSL,
            "mtls": kafka_local.MTLS,
            "oauth": kafka_local.OAUTH,
        }[how]
        return self.kafka.listener_bootstrap(name)

    def principal(self, how: str) -> str:
        return (
            "User:"
            + {
                "scram": SCRAM_USER,
                "plain": PLAIN_USER,
                "mtls": MTLS_CN,
                "oauth": OAUTH_CLIENT,
            }[how]
        )


@pytest.fixture(scope="module")
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureBroker]:
    workdir = tmp_path_factory.mktemp("secure-kafka")
    pki = make_pki(workdir / "tls", [MTLS_CN])
    oidc = OidcProvider({OAUTH_CLIENT: OAUTH_SECRET}).start()
    secure = kafka_local.SecureListeners(
        keystore=pki.broker_keystore,
        truststore=pki.ca,
        scram_users={SCRAM_USER: SCRAM_PASSWORD},
        plain_users={PLAIN_USER: PLAIN_PASSWORD},
        jwks_url=oidc.jwks_url,
        oauth_audience=oidc.audience,
        oauth_issuer=oidc.issuer,
    )
    broker = kafka_local.LocalKafka(
        workdir / "broker", port=kafka_local.free_port(), heap="768m", secure=secure
    )
    try:
        broker.start(timeout=180)
        yield SecureBroker(broker, pki, oidc)
    finally:
        broker.stop()
        oidc.stop()


@pytest.fixture(scope="module")
def kafka_bootstrap(secure_broker: SecureBroker) -> str:
    """The super-user PLAINTEXT listener, for the shared fixtures (topics, publisher)."""
    return secure_broker.kafka.bootstrap


@pytest.fixture(scope="module")
def admin(kafka_bootstrap: str) -> Iterator[Any]:
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="secure-tests-admin")
    try:
        yield client
    finally:
        client.close()


def prompt(text: str) -> dict[str, object]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def publish(publisher: RequestPublisher, prefix: str, n: int) -> set[str]:
    ids = {f"{prefix}-{i}" for i in range(n)}
    for i, rid in enumerate(sorted(ids)):
        publisher.publish(rid, "gemini-2.5-flash", prompt(rid), partition=i % 2)
    publisher.flush()
    return ids


def secured_settings(
    broker: SecureBroker, how: str, topics: Topics, emulator: EmulatorServer, **overrides: Any
) -> Settings:
    s = topics.settings(
        broker.bootstrap(how),
        emulator.base_url,
        kafka_extra=broker.client_extra(how),
        # Unique per test: a transactional id is a resource the ACLs must cover.
        group_id=topics.group,
        **overrides,
    )
    if how == "oauth":
        s = replace(
            s,
            oauth_token_url=broker.oidc.token_url,
            oauth_client_id=OAUTH_CLIENT,
            oauth_client_secret=OAUTH_SECRET,
        )
    return s


def run_until_error(settings: Settings, timeout: float = 90.0) -> BaseException:
    """Run a sidecar expected to stop on its own with an error; return the error."""
    gemini = Gemini("test-key", settings.gemini_base_url, timeout_s=30)
    sidecar = Sidecar(settings, gemini)
    errors: list[BaseException] = []

    def target() -> None:
        try:
            sidecar.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    try:
        assert not thread.is_alive(), f"the sidecar kept running for {timeout:.0f} s"
        assert errors, "the sidecar stopped without an error"
        return errors[0]
    finally:
        sidecar.stop()
        thread.join(30)
        gemini.close()


@pytest.mark.parametrize(
    ("how", "guarantee"),
    [
        ("scram", "at_least_once"),
        ("scram", "exactly_once"),
        ("mtls", "exactly_once"),
        ("oauth", "at_least_once"),
    ],
)
def test_sidecar_runs_with_only_the_listed_acls(
    secure_broker: SecureBroker,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    how: str,
    guarantee: str,
) -> None:
    """Requests in, ledger, claims, results out, over a secured listener, granted exactly
    `required_acls(settings)` and nothing else."""
    settings = secured_settings(
        secure_broker, how, topics, emulator, processing_guarantee=guarantee
    )
    grant(secure_broker.kafka.bootstrap, secure_broker.principal(how), required_acls(settings))
    ids = publish(publisher, how, 6)
    with sidecar_thread(settings):
        got = collect(secure_broker.kafka.bootstrap, topics.results, ids, timeout=90)
    for rid in ids:
        assert len(got.by_id[rid]) == 1, f"{rid} answered {len(got.by_id[rid])} times"
        assert got.latest(rid).status is ResultStatus.OK, got.latest(rid).error


def test_oauth_tokens_are_cached(
    secure_broker: SecureBroker, topics: Topics, emulator: EmulatorServer
) -> None:
    """The OIDC provider's token is reused across the sidecar's many connections."""
    from connector.adapters.security import kafka_client_extra

    settings = secured_settings(secure_broker, "oauth", topics, emulator)
    provider = kafka_client_extra(settings)["sasl_oauth_token_provider"]
    first = provider.token()
    assert first.count(".") == 2  # a JWT
    assert provider.token() == first
    assert provider.fetches == 1


def test_plain_authenticates_and_is_authorized_by_acl(
    secure_broker: SecureBroker, topic_factory: Callable[..., str]
) -> None:
    """SASL/PLAIN on the same SASL_SSL listener: denied without an ACL, allowed with one."""
    from kafka import KafkaConsumer

    topic = topic_factory(partitions=1)
    cfg = secure_broker.client_extra("plain")

    def partitions() -> Any:
        consumer = KafkaConsumer(
            bootstrap_servers=secure_broker.bootstrap("plain"), group_id=None, **cfg
        )
        try:
            return consumer.partitions_for_topic(topic)
        finally:
            consumer.close()

    assert not partitions()  # no Describe: the topic is invisible to this principal
    grant(
        secure_broker.kafka.bootstrap,
        secure_broker.principal("plain"),
        [Acl("TOPIC", topic, "READ")],
    )
    assert partitions() == {0}


def test_wrong_password_is_reported_at_once(
    secure_broker: SecureBroker, topics: Topics, emulator: EmulatorServer
) -> None:
    """A refused login stops the sidecar with the user named, not after startup_timeout_s."""
    settings = secured_settings(secure_broker, "scram", topics, emulator, startup_timeout_s=600)
    extra = {**settings.kafka_extra, "sasl_plain_password": "not-the-password"}
    err = run_until_error(replace(settings, kafka_extra=extra))
    assert isinstance(err, AccessDenied), repr(err)
    assert SCRAM_USER in str(err)
    assert "authenticate" in str(err)
    assert "not-the-password" not in str(err)


def test_wrong_oauth_secret_is_reported_at_once(
    secure_broker: SecureBroker, topics: Topics, emulator: EmulatorServer
) -> None:
    settings = secured_settings(secure_broker, "oauth", topics, emulator, startup_timeout_s=600)
    err = run_until_error(replace(settings, oauth_client_secret="wrong-" + uuid.uuid4().hex))
    assert isinstance(err, AccessDenied), repr(err)
    assert OAUTH_CLIENT in str(err)
    assert "wrong-" not in str(err)


@pytest.mark.parametrize(
    ("resource_type", "operation", "names"),
    [
        ("GROUP", "READ", "Read on group"),
        ("TRANSACTIONAL_ID", "WRITE", "Write on transactional id"),
        ("TOPIC", "READ", "on topic"),
        ("TOPIC", "WRITE", "on topic"),
        ("TOPIC", "CREATE", "on topic"),
        ("TOPIC", "DESCRIBE_CONFIGS", "DescribeConfigs on topic"),
    ],
)
def test_each_missing_acl_is_named(
    secure_broker: SecureBroker,
    topics: Topics,
    emulator: EmulatorServer,
    publisher: RequestPublisher,
    resource_type: str,
    operation: str,
    names: str,
) -> None:
    """Minimality, by example: without one listed ACL the sidecar stops, saying what is missing."""
    settings = secured_settings(secure_broker, "scram", topics, emulator, startup_timeout_s=600)
    acls = required_acls(settings)
    dropped = next(a for a in acls if a.resource_type == resource_type and a.operation == operation)
    grant(
        secure_broker.kafka.bootstrap,
        secure_broker.principal("scram"),
        [a for a in acls if a != dropped],
    )
    publish(publisher, f"minus-{resource_type}", 2)
    err = run_until_error(settings)
    assert isinstance(err, AccessDenied), repr(err)
    assert SCRAM_USER in str(err)
    assert names in str(err)
    # The resource itself is named (the first topic, group or id of that kind refused).
    assert dropped.name.rstrip(".") in str(err)
