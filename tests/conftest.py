"""Kafka fixtures for every test suite: one real broker per session, started lazily.

Why a real broker: the sidecar's guarantees (idempotence, transactions, committed offsets,
compaction) live in the broker, and a fake would only test our assumptions about it.

- ``kafka_bootstrap``: bootstrap string; ``KAFKA_BOOTSTRAP_SERVERS`` if set, else a
  ``LocalKafka`` (deploy/local/kafka_local.py) on a free port in a temp dir. Started only when
  a test requests it, so unit tests pay nothing; if the broker cannot start, the tests that
  need it ERROR (never skip).
- ``admin``: a session-wide ``KafkaAdminClient``.
- ``topic_factory(partitions=1, compact=False, configs=None) -> str``: a new, uniquely named
  topic with leaders elected.
- ``group_factory() -> str``: a unique consumer group id.

Tests that use any of these are marked ``kafka`` automatically (``-m kafka`` / ``-m "not kafka"``).

``schema_registry_url`` (a Confluent-compatible schema registry) lives in
registry_conftest_plugin.py; tests that use it are marked ``registry``.
"""

from __future__ import annotations

import os
import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge correctness, not speed: on a loaded 2-core CI box a slow example must
# not fail a run (speed targets live in bench/, never in tests).
settings.register_profile("project", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("project")

_DEPLOY_LOCAL = Path(__file__).resolve().parent.parent / "deploy" / "local"
if str(_DEPLOY_LOCAL) not in sys.path:
    sys.path.insert(0, str(_DEPLOY_LOCAL))

import kafka_local  # noqa: E402  (stdlib-only at import time, so this costs nothing)
from registry_conftest_plugin import schema_registry_url  # noqa: E402, F401  (a fixture)

if TYPE_CHECKING:
    from kafka import KafkaAdminClient

BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"
# Generous: the first start on a cold CI box also JIT-compiles the broker on 2 cores.
BROKER_START_TIMEOUT = 180.0


class TopicFactory(Protocol):
    """Signature of the ``topic_factory`` fixture."""

    def __call__(
        self, partitions: int = 1, compact: bool = False, configs: dict[str, str] | None = None
    ) -> str: ...


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests that (transitively) need the broker ``kafka``, the registry ``registry``."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "kafka_bootstrap" in fixtures:
            item.add_marker(pytest.mark.kafka)
        if "schema_registry_url" in fixtures:
            item.add_marker(pytest.mark.registry)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap servers of a real broker for the whole session."""
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        yield external
        return
    broker = kafka_local.LocalKafka(
        tmp_path_factory.mktemp("kafka"), port=kafka_local.free_port(), heap="1g"
    )
    # Raises KafkaLocalError with the broker log tail: a fixture error, not a skip.
    broker.start(timeout=BROKER_START_TIMEOUT)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    """One admin client for the session (it is safe to share across threads)."""
    from kafka import KafkaAdminClient

    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="tests-admin")
    try:
        yield client
    finally:
        client.close()


def _unique(prefix: str, node_name: str) -> str:
    """``prefix-<test name>-<random>``: readable in broker logs, never reused across runs."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", node_name).strip("-")[:60]
    return f"{prefix}-{slug}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic_factory(admin: KafkaAdminClient, request: pytest.FixtureRequest) -> TopicFactory:
    """Create uniquely named topics; returns once every partition has a leader."""

    def create(
        partitions: int = 1, compact: bool = False, configs: dict[str, str] | None = None
    ) -> str:
        name = _unique("t", request.node.name)
        topic_configs = dict(configs or {})
        if compact:
            topic_configs["cleanup.policy"] = "compact"
        spec: dict[str, Any] = {
            "num_partitions": partitions,
            "replication_factor": 1,
            "configs": topic_configs,
        }
        admin.create_topics({name: spec}, wait_for_metadata=True)
        return name

    return create


@pytest.fixture
def group_factory(request: pytest.FixtureRequest) -> Callable[[], str]:
    """Unique consumer group ids, so tests never see each other's committed offsets."""
    return lambda: _unique("g", request.node.name)
