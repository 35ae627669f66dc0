"""A secured single-node broker for tests: certificates, an OIDC provider and ACL grants.

Why here and not in kafka_local: kafka_local stays stdlib-only (it must start a broker when the
project does not import); certificates need ``cryptography`` and the OIDC provider is a test
double of an identity provider, not of Kafka.

- ``make_pki(dir)``: a CA, a broker certificate for 127.0.0.1/localhost and client
  certificates, as PEM files (unencrypted PKCS#8 keys, so ``ssl.keystore.type=PEM`` works).
- ``OidcProvider``: a JWKS endpoint and an OAuth 2 client-credentials token endpoint that
  signs RS256 JWTs whose ``sub`` is the client id (the broker's principal).
- ``grant(bootstrap, principal, acls)``: create the ACLs through the super-user PLAINTEXT
  listener.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from connector.acls import Acl


@dataclass(frozen=True)
class Pki:
    ca: Path
    broker_keystore: Path
    clients: Mapping[str, tuple[Path, Path]]
    """Client common name -> (certificate, key) files."""


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name | None,
    issuer_key: rsa.RSAPrivateKey,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def make_pki(directory: Path, clients: Iterable[str]) -> Pki:
    """A CA, a broker key+certificate file and one certificate per client common name."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _cert("test-ca", ca_key, None, ca_key, ca=True)
    ca = directory / "ca.pem"
    ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    broker_key = _key()
    broker_cert = _cert("broker", broker_key, ca_cert.subject, ca_key, server=True)
    keystore = directory / "broker.pem"
    keystore.write_bytes(
        _key_pem(broker_key)
        + broker_cert.public_bytes(serialization.Encoding.PEM)
        + ca_cert.public_bytes(serialization.Encoding.PEM)
    )
    out: dict[str, tuple[Path, Path]] = {}
    for cn in clients:
        key = _key()
        cert = _cert(cn, key, ca_cert.subject, ca_key)
        cert_file, key_file = directory / f"{cn}.crt.pem", directory / f"{cn}.key.pem"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(_key_pem(key))
        out[cn] = (cert_file, key_file)
    return Pki(ca, keystore, out)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n: int) -> str:
    return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class OidcProvider:
    """JWKS at ``/jwks`` and a client-credentials token endpoint at ``/token``.

    Tokens are RS256 JWTs (signed with ``cryptography``), ``sub`` = client id, ``aud`` =
    ``audience``; a wrong client secret gets 401 ``invalid_client`` as a real provider answers.
    ``issued`` counts the tokens handed out (to see a provider's cache at work).
    """

    kid = "test-key-1"

    def __init__(self, clients: Mapping[str, str], audience: str = "kafka", ttl_s: int = 3600):
        self.clients = dict(clients)
        self.audience = audience
        self.ttl_s = ttl_s
        self.issued = 0
        self._key = _key()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/jwks":
                    self._reply(200, provider.jwks())
                else:
                    self._reply(404, {"error": "not_found"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                client_id = (form.get("client_id") or [""])[0]
                secret = (form.get("client_secret") or [""])[0]
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    raw = base64.b64decode(auth[6:]).decode()
                    user, _, pw = raw.partition(":")
                    client_id, secret = urllib.parse.unquote(user), urllib.parse.unquote(pw)
                grant = (form.get("grant_type") or [""])[0]
                if self.path != "/token" or grant != "client_credentials":
                    self._reply(400, {"error": "unsupported_grant_type"})
                elif provider.clients.get(client_id) != secret or not secret:
                    self._reply(401, {"error": "invalid_client"})
                else:
                    scope = (form.get("scope") or [""])[0]
                    self._reply(
                        200,
                        {
                            "access_token": provider.sign(client_id, scope),
                            "token_type": "Bearer",
                            "expires_in": provider.ttl_s,
                        },
                    )

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def jwks_url(self) -> str:
        return self.base_url + "/jwks"

    @property
    def token_url(self) -> str:
        return self.base_url + "/token"

    @property
    def issuer(self) -> str:
        return self.base_url

    def jwks(self) -> dict[str, Any]:
        numbers = self._key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "kid": self.kid,
                    "use": "sig",
                    "alg": "RS256",
                    "n": _int_b64(numbers.n),
                    "e": _int_b64(numbers.e),
                }
            ]
        }

    def sign(self, subject: str, scope: str = "") -> str:
        self.issued += 1
        now = int(time.time())
        header = {"alg": "RS256", "typ": "JWT", "kid": self.kid}
        claims: dict[str, Any] = {
            "sub": subject,
            "aud": self.audience,
            "iss": self.issuer,
            "iat": now,
            "exp": now + self.ttl_s,
        }
        if scope:  # the broker refuses an empty scope claim
            claims["scope"] = scope
        signing_input = (
            _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())
        ).encode()
        signature = self._key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        return signing_input.decode() + "." + _b64(signature)

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def grant(bootstrap: str, principal: str, acls: Iterable[Acl]) -> None:
    """Create the ACLs for ``principal`` (``User:<name>``) through the super-user listener."""
    from kafka import KafkaAdminClient
    from kafka.admin import (
        ACL,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePattern,
        ResourceType,
    )

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="tests-acl-admin")
    try:
        bindings = [
            ACL(
                principal=principal,
                host="*",
                operation=ACLOperation[acl.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(
                    ResourceType[acl.resource_type],
                    acl.name,
                    ACLResourcePatternType[acl.pattern],
                ),
            )
            for acl in acls
        ]
        result = admin.create_acls(bindings)
        failed = result.get("failed") or []
        assert not failed, f"could not create ACLs: {failed}"
    finally:
        admin.close()
