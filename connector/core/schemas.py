"""Find and load the versioned Avro schemas that make up the public contract.

The schemas live in the repository's ``avro/`` folder, one file per released
version (``avro/<name>/v<N>.avsc``), and ship inside the wheel as
``connector/_avro``. Every version stays forever, so records written by old
producers remain readable: the codec needs each writer's exact schema.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from connector.errors import ConfigError

__all__ = ["SCHEMA_NAMES", "load_schemas", "schema_root", "schema_versions"]

SCHEMA_NAMES = ("request", "result", "ledger")
"""The three contracts: request events, result events and ledger entries."""

_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")


def schema_root() -> Traversable:
    """Return the schema folder: the packaged copy first, else the source checkout's ``avro/``.

    The packaged copy wins so an installed sidecar never reads a stray checkout.
    """
    packaged = resources.files("connector") / "_avro"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "avro"
    if checkout.is_dir():
        return checkout
    raise ConfigError(
        f"Avro schemas not found: neither the packaged 'connector/_avro' nor {checkout} exists"
    )


def schema_versions(name: str) -> list[tuple[int, dict[str, Any]]]:
    """Return ``(version, schema JSON)`` for every released version of ``name``, oldest first."""
    if name not in SCHEMA_NAMES:
        raise ValueError(f"unknown schema {name!r}; expected one of {', '.join(SCHEMA_NAMES)}")
    folder = schema_root() / name
    found: list[tuple[int, dict[str, Any]]] = []
    if folder.is_dir():
        for entry in folder.iterdir():
            match = _VERSION_FILE.match(entry.name)
            if match is None:
                continue
            try:
                schema = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"Avro schema {name}/{entry.name} is unreadable: {exc}") from exc
            found.append((int(match.group(1)), schema))
    if not found:
        raise ConfigError(f"no Avro schema versions (v<N>.avsc) found for {name!r} in {folder}")
    found.sort(key=lambda item: item[0])
    return found


def load_schemas(name: str) -> list[dict[str, Any]]:
    """Return every released version of schema ``name`` as JSON, oldest first; the last is current.

    Raises ``ValueError`` for an unknown name and ``ConfigError`` when the files are missing.
    """
    return [schema for _, schema in schema_versions(name)]
