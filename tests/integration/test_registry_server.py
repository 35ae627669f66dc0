"""The local schema registry speaks the Confluent REST API (deploy/local/registry_local.py).

Two clients against the same server: the raw REST calls (stdlib urllib, so the test shows
exactly what goes over the wire) and python-schema-registry-client, the Python client library
we use for Confluent registries (sync and async, fastavro-based serializers).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
import urllib.error
import urllib.request
import uuid
from typing import Any

import fastavro
import pytest

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"

V1: dict[str, Any] = {
    "type": "record",
    "name": "Prompt",
    "namespace": "test.registry",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "text", "type": "string"},
    ],
}
# Adds a field with a default: readers on V2 can read V1 data (BACKWARD compatible).
V2_COMPATIBLE: dict[str, Any] = {
    **V1,
    "fields": [*V1["fields"], {"name": "priority", "type": "int", "default": 0}],
}
# Adds a field without a default: readers on it cannot read V1 data (BACKWARD incompatible).
V2_INCOMPATIBLE: dict[str, Any] = {
    **V1,
    "fields": [*V1["fields"], {"name": "model", "type": "string"}],
}


def _value_subject() -> str:
    """``<topic>-value`` (TopicNameStrategy) for a topic name no other test uses."""
    return f"t-registry-{uuid.uuid4().hex[:10]}-value"


def _call(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """(HTTP status, decoded JSON body) of one REST call; error statuses are returned."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Accept", CONTENT_TYPE)
    if data is not None:
        request.add_header("Content-Type", CONTENT_TYPE)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def _schema_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"schema": json.dumps(schema), "schemaType": "AVRO"}


def test_rest_register_get_by_id_and_compatibility(schema_registry_url: str) -> None:
    url = schema_registry_url
    subject = _value_subject()

    status, created = _call("POST", f"{url}/subjects/{subject}/versions", _schema_body(V1))
    assert status == 200, created
    schema_id = created["id"]
    assert isinstance(schema_id, int)

    # Registering the same schema again is idempotent: same id, no new version.
    assert _call("POST", f"{url}/subjects/{subject}/versions", _schema_body(V1)) == (
        200,
        {"id": schema_id},
    )

    status, by_id = _call("GET", f"{url}/schemas/ids/{schema_id}")
    assert status == 200, by_id
    assert json.loads(by_id["schema"]) == V1
    assert by_id.get("schemaType", "AVRO") == "AVRO"  # Confluent omits it for Avro

    assert _call("GET", f"{url}/subjects/{subject}/versions") == (200, [1])
    status, latest = _call("GET", f"{url}/subjects/{subject}/versions/latest")
    assert status == 200, latest
    assert (latest["subject"], latest["version"], latest["id"]) == (subject, 1, schema_id)
    assert subject in _call("GET", f"{url}/subjects")[1]

    # The global level is Confluent's default, BACKWARD (set by registry_local.py).
    assert _call("GET", f"{url}/config") == (200, {"compatibilityLevel": "BACKWARD"})
    compat = f"{url}/compatibility/subjects/{subject}/versions/latest"
    assert _call("POST", compat, _schema_body(V2_COMPATIBLE)) == (200, {"is_compatible": True})
    assert _call("POST", compat, _schema_body(V2_INCOMPATIBLE)) == (200, {"is_compatible": False})

    # The rule is enforced on register too: 409, and the subject keeps one version.
    status, refused = _call(
        "POST", f"{url}/subjects/{subject}/versions", _schema_body(V2_INCOMPATIBLE)
    )
    assert status == 409, refused
    assert _call("GET", f"{url}/subjects/{subject}/versions") == (200, [1])

    status, evolved = _call(
        "POST", f"{url}/subjects/{subject}/versions", _schema_body(V2_COMPATIBLE)
    )
    assert status == 200, evolved
    assert evolved["id"] != schema_id
    assert _call("GET", f"{url}/subjects/{subject}/versions") == (200, [1, 2])


def test_rest_unknown_ids_and_subjects_are_confluent_errors(schema_registry_url: str) -> None:
    url = schema_registry_url
    status, body = _call("GET", f"{url}/schemas/ids/987654321")
    assert status == 404
    assert body["error_code"] == 40403  # Confluent: schema not found
    status, body = _call("GET", f"{url}/subjects/{_value_subject()}/versions")
    assert status == 404
    assert body["error_code"] == 40401  # Confluent: subject not found


def test_python_schema_registry_client_sync(schema_registry_url: str) -> None:
    from schema_registry.client import SchemaRegistryClient, schema
    from schema_registry.serializers import AvroMessageSerializer

    client = SchemaRegistryClient(url=schema_registry_url)
    subject = _value_subject()
    v1 = schema.AvroSchema(V1)

    schema_id = client.register(subject, v1)
    assert client.get_by_id(schema_id).raw_schema == V1
    found = client.check_version(subject, v1)
    assert found is not None
    assert (found.schema_id, found.version) == (schema_id, 1)
    latest = client.get_schema(subject)
    assert latest is not None
    assert (latest.schema_id, latest.version) == (schema_id, 1)
    assert client.get_versions(subject) == [1]
    assert subject in client.get_subjects()

    assert client.get_compatibility() == "BACKWARD"
    assert client.test_compatibility(subject, schema.AvroSchema(V2_COMPATIBLE)) is True
    assert client.test_compatibility(subject, schema.AvroSchema(V2_INCOMPATIBLE)) is False
    # A per-subject override, as a topic owner would set it.
    assert client.update_compatibility("NONE", subject) is True
    assert client.get_compatibility(subject) == "NONE"
    assert client.test_compatibility(subject, schema.AvroSchema(V2_INCOMPATIBLE)) is True

    # Confluent wire format: magic 0, 4-byte big-endian schema id, Avro binary body.
    serializer = AvroMessageSerializer(client)
    record = {"id": "r-1", "text": "hello"}
    framed = serializer.encode_record_with_schema(subject, v1, record)
    assert framed[0] == 0
    assert struct.unpack(">I", framed[1:5])[0] == schema_id
    assert fastavro.schemaless_reader(io.BytesIO(framed[5:]), fastavro.parse_schema(V1)) == record
    # A fresh client (empty cache) decodes it by fetching the writer schema by id.
    assert (
        AvroMessageSerializer(SchemaRegistryClient(url=schema_registry_url)).decode_message(framed)
        == record
    )


def test_python_schema_registry_client_async(schema_registry_url: str) -> None:
    from schema_registry.client import AsyncSchemaRegistryClient, schema

    subject = _value_subject()

    async def scenario() -> tuple[int, dict[str, Any], bool, int]:
        client = AsyncSchemaRegistryClient(url=schema_registry_url)
        schema_id = await client.register(subject, schema.AvroSchema(V1))
        fetched = await client.get_by_id(schema_id)
        compatible = await client.test_compatibility(subject, schema.AvroSchema(V2_COMPATIBLE))
        evolved_id = await client.register(subject, schema.AvroSchema(V2_COMPATIBLE))
        assert fetched is not None
        return schema_id, fetched.raw_schema, compatible, evolved_id

    schema_id, raw, compatible, evolved_id = asyncio.run(scenario())
    assert raw == V1
    assert compatible is True
    assert evolved_id != schema_id


@pytest.mark.parametrize("name", ["request", "result", "ledger"])
def test_project_schemas_register_and_round_trip(schema_registry_url: str, name: str) -> None:
    """The connector's own Avro schemas (unions, logical types, defaults) are accepted as-is."""
    from connector.core.schemas import load_schemas

    latest = load_schemas(name)[-1]
    subject = _value_subject()
    status, created = _call(
        "POST", f"{schema_registry_url}/subjects/{subject}/versions", _schema_body(latest)
    )
    assert status == 200, created
    status, by_id = _call("GET", f"{schema_registry_url}/schemas/ids/{created['id']}")
    assert status == 200, by_id
    assert json.loads(by_id["schema"]) == latest
