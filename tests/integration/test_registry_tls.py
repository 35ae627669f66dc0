"""The schema registry client over HTTPS (CA bundle, mutual TLS) and with a bearer token.

A real HTTPS server on loopback, speaking the few Confluent REST calls the sidecar makes
(register, look up by id) and checking the Authorization header of every request, so the
test sees what goes over the wire: which CA verifies the server, whether a client
certificate is presented, which credential is sent, and that a rotated secret file is
read again. No broker needed.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tls_certs import Pki, make_pki

from connector.adapters.registry import SchemaRegistry
from connector.config import Settings, load
from connector.core.codec import Codec
from connector.errors import ConfigError, RegistryUnavailable
from connector.redact import REDACTOR
from connector.startup import Startup

SCHEMA: dict[str, Any] = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}


@dataclass
class Registry:
    """What the server expects and what it saw."""

    url: str
    expect_auth: str = ""
    seen_auth: list[str] = field(default_factory=list)
    client_certs: list[bool] = field(default_factory=list)


def _handler(reg: Registry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _reply(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            got = self.headers.get("Authorization", "")
            reg.seen_auth.append(got)
            peer = getattr(self.connection, "getpeercert", None)
            reg.client_certs.append(bool(peer and peer()))
            if reg.expect_auth and got != reg.expect_auth:
                self._reply(401, {"error_code": 40101, "message": "unauthorized"})
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorized():
                return
            if self.path.startswith("/schemas/ids/"):
                self._reply(200, {"schema": json.dumps(SCHEMA)})
            else:
                self._reply(404, {"error_code": 40401, "message": "not found"})

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if not self._authorized():
                return
            if self.path.endswith("/versions"):
                self._reply(200, {"id": 7})
            else:  # check_version: not registered yet
                self._reply(404, {"error_code": 40401, "message": "Subject not found"})

    return Handler


def _serve(reg: Registry, pki: Pki | None, require_client_cert: bool) -> Iterator[Registry]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(reg))
    if pki is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(pki.ca)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    scheme = "https" if pki is not None else "http"
    reg.url = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield reg
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def https_registry(pki: Pki) -> Iterator[Registry]:
    yield from _serve(Registry(""), pki, require_client_cert=False)


@pytest.fixture
def mtls_registry(pki: Pki) -> Iterator[Registry]:
    yield from _serve(Registry(""), pki, require_client_cert=True)


@pytest.fixture
def http_registry() -> Iterator[Registry]:
    yield from _serve(Registry(""), None, require_client_cert=False)


def _registry_of(settings: Settings) -> tuple[Any, int | None]:
    """The registry as `connector run` wires it from its settings (no Kafka involved)."""
    return Startup(settings, Codec()).registry()


# -- TLS -------------------------------------------------------------------------------


def test_https_with_the_ca_bundle_that_signed_the_server(
    https_registry: Registry, pki: Pki
) -> None:
    reg = SchemaRegistry(https_registry.url, ssl_cafile=str(pki.ca))
    assert reg.schema_id_for("t", SCHEMA, auto_register=True) == 7
    assert reg.schema_by_id(7) == SCHEMA


@pytest.mark.parametrize("which", ["system CAs", "another CA"])
def test_https_refuses_a_server_its_ca_did_not_sign(
    https_registry: Registry, pki: Pki, which: str
) -> None:
    """Without the right CA the connection fails verification: the CA setting is what makes
    the call above work, not a verification that is off."""
    cafile = "" if which == "system CAs" else str(pki.other_ca)
    reg = SchemaRegistry(https_registry.url, ssl_cafile=cafile)
    with pytest.raises(RegistryUnavailable, match=r"CERTIFICATE_VERIFY_FAILED|certificate"):
        reg.schema_by_id(1)
    assert https_registry.seen_auth == []  # no request got through


def test_mutual_tls_presents_the_client_certificate(mtls_registry: Registry, pki: Pki) -> None:
    reg = SchemaRegistry(
        mtls_registry.url,
        ssl_cafile=str(pki.ca),
        ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key),
    )
    assert reg.schema_by_id(3) == SCHEMA
    assert mtls_registry.client_certs == [True]


def test_mutual_tls_without_a_client_certificate_is_refused_by_the_server(
    mtls_registry: Registry, pki: Pki
) -> None:
    reg = SchemaRegistry(mtls_registry.url, ssl_cafile=str(pki.ca))
    with pytest.raises(RegistryUnavailable):
        reg.schema_by_id(3)


def test_an_unreadable_ca_bundle_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA bundle"):
        SchemaRegistry("https://127.0.0.1:1", ssl_cafile=str(tmp_path / "absent.pem"))


# -- credentials -------------------------------------------------------------------------


def test_a_bearer_token_is_sent_as_the_authorization_header(http_registry: Registry) -> None:
    http_registry.expect_auth = "Bearer tok-123"
    reg = SchemaRegistry(http_registry.url, bearer_token="tok-123")
    assert reg.schema_by_id(5) == SCHEMA
    assert http_registry.seen_auth == ["Bearer tok-123"]


def test_a_wrong_bearer_token_is_refused(http_registry: Registry) -> None:
    http_registry.expect_auth = "Bearer right"
    reg = SchemaRegistry(http_registry.url, bearer_token="wrong")
    with pytest.raises(ConfigError, match="401"):
        reg.schema_id_for("t", SCHEMA, auto_register=True)


def test_a_rotated_token_file_is_read_again_for_the_next_call(
    https_registry: Registry, pki: Pki, tmp_path: Path
) -> None:
    """The whole path: settings from the environment (the token as a file, the CA bundle),
    the runner's registry wiring, then the token file rewritten as Kubernetes does when a
    secret rotates: the next call carries the new token without a restart."""
    token = tmp_path / "token"
    token.write_text("first-token\n", encoding="utf-8")
    settings = load(
        {
            "CONNECTOR_GEMINI_BASE_URL": "http://127.0.0.1:1",
            "CONNECTOR_SCHEMA_REGISTRY_URL": https_registry.url,
            "CONNECTOR_SCHEMA_REGISTRY_BEARER_TOKEN_FILE": str(token),
            "CONNECTOR_SCHEMA_REGISTRY_SSL_CAFILE": str(pki.ca),
            "CONNECTOR_RESULT_FORMAT": "confluent",
        }
    )
    https_registry.expect_auth = "Bearer first-token"
    schema_by_id, result_id = _registry_of(settings)
    assert result_id == 7
    assert schema_by_id is not None
    token.write_text("second-token\n", encoding="utf-8")
    https_registry.expect_auth = "Bearer second-token"
    assert schema_by_id(11) == SCHEMA
    assert https_registry.seen_auth[-1] == "Bearer second-token"
    assert "second-token" not in REDACTOR.text("token second-token")  # masked from now on


def test_basic_auth_password_from_a_file_is_read_again(
    http_registry: Registry, tmp_path: Path
) -> None:
    import base64

    password = tmp_path / "password"
    password.write_text("pw-one", encoding="utf-8")
    settings = load(
        {
            "CONNECTOR_GEMINI_BASE_URL": "http://127.0.0.1:1",
            "CONNECTOR_SCHEMA_REGISTRY_URL": http_registry.url,
            "CONNECTOR_SCHEMA_REGISTRY_USERNAME": "svc",
            "CONNECTOR_SCHEMA_REGISTRY_PASSWORD_FILE": str(password),
        }
    )

    def basic(pw: str) -> str:
        return "Basic " + base64.b64encode(f"svc:{pw}".encode()).decode()

    schema_by_id, _ = _registry_of(settings)
    assert schema_by_id is not None
    http_registry.expect_auth = basic("pw-one")
    assert schema_by_id(1) == SCHEMA
    password.write_text("pw-two", encoding="utf-8")
    http_registry.expect_auth = basic("pw-two")
    assert schema_by_id(2) == SCHEMA
