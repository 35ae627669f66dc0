"""Schema registry fixture: one Confluent-compatible registry per session, started lazily.

- ``schema_registry_url``: the Confluent-compatible base URL (``.../apis/ccompat/v7``);
  ``SCHEMA_REGISTRY_URL`` if set, else a ``LocalRegistry`` (deploy/local/registry_local.py,
  Apicurio Registry with in-memory storage) on a free port in a temp dir. Started only when a
  test requests it; if the registry cannot start, those tests ERROR (never skip).

The registry does not need Kafka, so requesting it does not start the broker. Tests that use it
are marked ``registry`` automatically (by tests/conftest.py, which imports this module).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_DEPLOY_LOCAL = Path(__file__).resolve().parent.parent / "deploy" / "local"
if str(_DEPLOY_LOCAL) not in sys.path:
    sys.path.insert(0, str(_DEPLOY_LOCAL))

import registry_local  # noqa: E402  (stdlib-only, so importing it costs nothing)

REGISTRY_URL_ENV = "SCHEMA_REGISTRY_URL"
# Generous: a cold start on the 2-core CI box shares the CPUs with the broker and pytest.
REGISTRY_START_TIMEOUT = 180.0


@pytest.fixture(scope="session")
def schema_registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Confluent-compatible base URL of a real schema registry for the whole session."""
    external = os.environ.get(REGISTRY_URL_ENV, "").strip()
    if external:
        yield external.rstrip("/")
        return
    registry = registry_local.LocalRegistry(
        tmp_path_factory.mktemp("registry"), port=registry_local.free_port()
    )
    # Raises RegistryLocalError with the server log tail: a fixture error, not a skip.
    registry.start(timeout=REGISTRY_START_TIMEOUT)
    try:
        yield registry.url
    finally:
        registry.stop()
