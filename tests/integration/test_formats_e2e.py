"""Each request format end to end: real broker, real schema registry (Apicurio), emulator.

Requests in as Avro single-object, Confluent-framed Avro (schema from the registry) and JSON
(also from the kcat command line), mixed on one topic; results out in the chosen format; an
older writer schema evolved through the registry; a registry outage that holds records back
instead of dead-lettering them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastavro import parse_schema, schemaless_writer
from sidecar_harness import Topics, collect, sidecar_thread
from waiting import wait_until

from connector.adapters.registry import SchemaRegistry
from connector.client import RequestPublisher, ResultReader
from connector.core.formats import confluent_frame
from connector.core.records import ResultStatus
from connector.core.schemas import load_schemas
from connector.emulator import EmulatorServer

pytestmark = pytest.mark.slow


def prompt(text: str) -> dict[str, Any]:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def test_json_requests_from_kcat_get_json_results(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer
) -> None:
    """The command-line example of docs/contract.md: kcat publishes JSON, results come as JSON."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is needed (Debian package kcat; .ci/run installs it)"
    lines = [
        orjson.dumps(
            {"request_id": f"kcat-{i}", "model": "gemini-2.5-flash", "body": prompt(f"Привет {i}")}
        ).decode()
        for i in range(5)
    ]
    subprocess.run(
        [kcat, "-P", "-b", kafka_bootstrap, "-t", topics.requests, "-K", "\t"],
        input="\n".join(f"kcat-{i}\t{line}" for i, line in enumerate(lines)) + "\n",
        text=True,
        check=True,
        timeout=60,
    )
    ids = {f"kcat-{i}" for i in range(5)}
    settings = topics.settings(kafka_bootstrap, emulator.base_url, result_format="json")
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert got.keys[rid] == rid.encode()
    # The raw records are JSON objects a consumer without Avro can read.
    raw = _raw_values(kafka_bootstrap, topics.results, len(ids))
    assert all(orjson.loads(v)["request_id"] in ids for v in raw)


def test_confluent_and_mixed_formats_with_the_registry(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, schema_registry_url: str
) -> None:
    """Three producers on one topic; results Confluent-framed, the schema registered by topic."""
    confluent = RequestPublisher(
        kafka_bootstrap, topics.requests, format="confluent", registry_url=schema_registry_url
    )
    as_json = RequestPublisher(kafka_bootstrap, topics.requests, format="json")
    plain = RequestPublisher(kafka_bootstrap, topics.requests)
    ids = set()
    for i in range(4):
        for name, pub in (("conf", confluent), ("json", as_json), ("avro", plain)):
            rid = f"{name}-{i}"
            pub.publish(rid, "gemini-2.5-flash", prompt(rid), metadata={"via": name})
            ids.add(rid)
    for pub in (confluent, as_json, plain):
        pub.flush()
        pub.close()
    settings = topics.settings(
        kafka_bootstrap,
        emulator.base_url,
        result_format="confluent",
        schema_registry_url=schema_registry_url,
    )
    reader = ResultReader(kafka_bootstrap, topics.results, registry_url=schema_registry_url)
    try:
        with sidecar_thread(settings):
            got = collect(kafka_bootstrap, topics.results, ids, timeout=90, reader=reader)
    finally:
        reader.close()
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, (rid, r.error)
        assert r.metadata == {"via": rid.split("-")[0]}
    # The result schema is registered under the topic's subject (TopicNameStrategy).
    registry = SchemaRegistry(schema_registry_url)
    raw = _raw_values(kafka_bootstrap, topics.results, len(ids))
    ids_used = {int.from_bytes(v[1:5], "big") for v in raw}
    assert all(v[0] == 0 for v in raw)
    (schema_id,) = ids_used
    assert registry.schema_by_id(schema_id)["name"] == "ResultEvent"


def test_an_older_writer_schema_evolves_through_the_registry(
    kafka_bootstrap: str, topics: Topics, emulator: EmulatorServer, schema_registry_url: str
) -> None:
    """A producer still on a schema without group/priority/metadata: defaults are filled in."""
    old = copy.deepcopy(load_schemas("request")[-1])
    keep = ("request_id", "model", "kind", "body")
    old["fields"] = [f for f in old["fields"] if f["name"] in keep]
    registry = SchemaRegistry(schema_registry_url)
    schema_id = registry.schema_id_for(f"{topics.requests}-old", old, auto_register=True)
    pub = RequestPublisher(kafka_bootstrap, topics.requests)
    ids = {f"old-{i}" for i in range(3)}
    for rid in sorted(ids):
        body = io.BytesIO()
        record = {"request_id": rid, "model": "gemini-2.5-flash", "kind": "generate"}
        schemaless_writer(
            body, parse_schema(old), {**record, "body": orjson.dumps(prompt(rid)).decode()}
        )
        pub.publish_raw(confluent_frame(schema_id, body.getvalue()), rid.encode())
    pub.flush()
    pub.close()
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, schema_registry_url=schema_registry_url
    )
    with sidecar_thread(settings):
        got = collect(kafka_bootstrap, topics.results, ids, timeout=90)
    for rid in ids:
        r = got.latest(rid)
        assert r.status is ResultStatus.OK, r.error
        assert r.metadata == {}


class _Proxy:
    """A TCP forwarder to the registry that a test can cut and restore (an outage)."""

    def __init__(self, target: str) -> None:
        host, _, rest = target.removeprefix("http://").partition(":")
        self.target = (host, int(rest.split("/", 1)[0]))
        self.path = "/" + rest.split("/", 1)[1]
        self.up = threading.Event()
        self.up.set()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}{self.path}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            if not self.up.is_set():
                client.close()  # refused mid-handshake: the client sees a transport error
                continue
            upstream = socket.create_connection(self.target)
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(a, b), daemon=True).start()

    def close(self) -> None:
        self._sock.close()


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def registry_proxy(schema_registry_url: str) -> Iterator[_Proxy]:
    proxy = _Proxy(schema_registry_url)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_registry_outage_holds_records_back_never_dead_letters_them(
    kafka_bootstrap: str,
    topics: Topics,
    emulator: EmulatorServer,
    schema_registry_url: str,
    registry_proxy: _Proxy,
) -> None:
    pub = RequestPublisher(
        kafka_bootstrap, topics.requests, format="confluent", registry_url=schema_registry_url
    )
    ids = {f"outage-{i}" for i in range(4)}
    for rid in sorted(ids):
        pub.publish(rid, "gemini-2.5-flash", prompt(rid), partition=0)
    pub.flush()
    pub.close()
    registry_proxy.up.clear()  # the sidecar starts with the registry unreachable
    settings = topics.settings(
        kafka_bootstrap, emulator.base_url, schema_registry_url=registry_proxy.url
    )
    with sidecar_thread(settings) as sidecar:
        wait_until(lambda: sidecar.status().get("partitions"), timeout=60, message="assignment")
        # Several passes with the registry down: nothing consumed, nothing dead-lettered.
        passes = sidecar.snapshot.last_pass
        wait_until(lambda: sidecar.snapshot.last_pass > passes + 3, timeout=30, message="passes")
        assert sidecar.stats.dead_lettered == 0
        assert sidecar.stats.consumed == 0
        registry_proxy.up.set()
        got = collect(kafka_bootstrap, topics.results, ids, timeout=120)
        assert sidecar.stats.dead_lettered == 0
    for rid in ids:
        assert got.latest(rid).status is ResultStatus.OK


def _raw_values(bootstrap: str, topic: str, n: int) -> list[bytes]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    values: list[bytes] = []
    try:
        wait_until(
            lambda: (
                values.extend(r.value for rs in consumer.poll(500).values() for r in rs)
                or len(values) >= n
            ),
            timeout=30,
            message=f"{n} raw records",
        )
    finally:
        consumer.close()
    return values


def test_lookup_only_mode_and_credentials_never_logged(
    schema_registry_url: str, topics: Topics, capsys: pytest.CaptureFixture[str]
) -> None:
    """Auto-registration off: a missing result schema is a clear start-up error; a registered
    one is found. User info in the URL becomes basic auth and never appears in text."""
    from connector.config import Settings
    from connector.errors import ConfigError

    schema = load_schemas("result")[-1]
    secret_url = schema_registry_url.replace("http://", "http://svc:s3cr3t-pw@")
    registry = SchemaRegistry(secret_url)
    assert "s3cr3t-pw" not in registry.url
    with pytest.raises(ConfigError, match="auto-registration is off") as err:
        registry.schema_id_for(topics.results, schema, auto_register=False)
    assert "s3cr3t-pw" not in str(err.value)
    registered = registry.schema_id_for(topics.results, schema, auto_register=True)
    assert registry.schema_id_for(topics.results, schema, auto_register=False) == registered
    described = Settings(
        schema_registry_url=secret_url, schema_registry_password="other-secret"
    ).describe()
    text = repr(described) + capsys.readouterr().out
    assert "s3cr3t-pw" not in text
    assert "other-secret" not in text
