#!/usr/bin/env python3
"""A real single-node Apache Kafka broker (KRaft combined mode) from Maven Central jars.

Why: tests, the demo and benchmarks need a real broker, and this machine (like CI) has Java
and Maven but no Docker engine and no way to download the release tarball. Maven resolves the
broker classpath from ``pom.xml`` beside this file into ``.cache/libs``; this module formats the
storage, starts ``kafka.Kafka`` on 127.0.0.1 and waits until a kafka-python client can really
talk to it.

Standalone on purpose (stdlib + kafka-python only, never the ``connector`` package) so that it
can start a broker even when the project itself does not import.

CLI::

    python deploy/local/kafka_local.py fetch
    python deploy/local/kafka_local.py start [--port 9092] [--workdir .run/kafka]
    python deploy/local/kafka_local.py status|stop [--workdir .run/kafka]

API::

    with LocalKafka(tmp_dir, port=free_port()) as kafka:
        use(kafka.bootstrap)

Secured listeners are opt-in (``LocalKafka(..., secure=SecureListeners(...))``): SASL_SSL with
SCRAM-SHA-512 and PLAIN, SSL with required client certificates, and SASL_SSL with OAUTHBEARER
checked against a JWKS URL, all on the same node, with the StandardAuthorizer on. PLAINTEXT
stays the inter-broker and admin listener, its ANONYMOUS principal a super user, so readiness
checks and test fixtures keep working and only the secured listeners are subject to ACLs.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
POM = HERE / "pom.xml"
LOG4J_CONFIG = HERE / "log4j2.properties"
CACHE_DIR = HERE / ".cache"
LIBS_DIR = CACHE_DIR / "libs"
# Holds the sha256 of pom.xml the cache was built from, so a version bump re-resolves.
STAMP = CACHE_DIR / "libs.stamp"
DEFAULT_WORKDIR = Path(".run/kafka")

PID_FILE = "kafka.pid"
PROPS_FILE = "server.properties"
LOG_SUBDIR = "logs"
SERVER_LOG = "server.log"  # written by log4j2 (see log4j2.properties)
STDOUT_LOG = "stdout.log"  # the JVM's own stdout/stderr: crashes before log4j is up
BROKER_MAIN = "kafka.Kafka"
STORAGE_TOOL_MAIN = "kafka.tools.StorageTool"

# Kafka's own kafka-run-class.sh defaults, minus the fixed 1 GB floor: the broker idles far
# below that and the 2-core CI box also runs pytest, the emulator and the connector.
BROKER_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)
# The formatter is a short one-shot JVM: C1 only and a serial GC start measurably faster.
TOOL_JVM_FLAGS = ("-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class KafkaLocalError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped."""


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cache_is_valid() -> bool:
    if not STAMP.is_file() or not LIBS_DIR.is_dir():
        return False
    if STAMP.read_text().strip() != _pom_digest():
        return False
    return any(LIBS_DIR.glob("kafka_2.13-*.jar"))


def fetch_classpath(force: bool = False) -> Path:
    """Resolve the broker jars with Maven unless a cache built from the current pom exists.

    Maven writes into a temporary sibling folder that is renamed into place only after it
    succeeded, so an interrupted or concurrent fetch never leaves a half-filled ``libs``.
    Returns the folder holding the jars.
    """
    if not force and _cache_is_valid():
        return LIBS_DIR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaLocalError("Maven (mvn) is not on PATH; it is needed once to fetch Kafka")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="libs-", dir=CACHE_DIR))
    try:
        cmd = [
            mvn,
            "-B",
            "-q",
            "-f",
            str(POM),
            f"-Dlibs.dir={staging}",
            "dependency:copy-dependencies",
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise KafkaLocalError(
                f"mvn failed (exit {proc.returncode}):\n{_tail_text(proc.stdout + proc.stderr)}"
            )
        if not any(staging.glob("kafka_2.13-*.jar")):
            raise KafkaLocalError(f"mvn succeeded but no kafka_2.13 jar in {staging}")
        if LIBS_DIR.exists():
            shutil.rmtree(LIBS_DIR)
        staging.rename(LIBS_DIR)
        STAMP.write_text(_pom_digest() + "\n")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return LIBS_DIR


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def new_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (``Uuid`` format).

    Re-drawn when it starts with ``-`` because StorageTool's argument parser would read it as an
    option (Kafka's own ``Uuid.randomUuid`` avoids those for the same reason).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def server_properties(workdir: Path, port: int, controller_port: int) -> dict[str, str]:
    """Single-node KRaft settings sized for a 2-core box and fast, deterministic tests."""
    return {
        "process.roles": "broker,controller",
        "node.id": "1",
        # Static quorum: a plain `format` works and nothing about the voters lives in storage.
        "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(workdir / "data"),
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # Internal topics: replication 1 (one broker) and 1 partition (50 by default, which
        # makes the first group join / init_transactions create 50 partitions).
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers join at once instead of after 3 s, and tests may use short sessions.
        "group.initial.rebalance.delay.ms": "0",
        "group.min.session.timeout.ms": "1000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "num.recovery.threads.per.data.dir": "1",
        "background.threads": "4",
        "log.cleaner.threads": "1",
        "auto.create.topics.enable": "true",
    }


@dataclass(frozen=True)
class SecureListeners:
    """What the opt-in secured listeners need; the caller writes the PEM files.

    ``keystore``: the broker's unencrypted PKCS#8 private key followed by its certificate
    (``ssl.keystore.type=PEM``, so no keytool); ``truststore``: the CA certificate(s) that
    signed the client certificates. SCRAM users are written into the metadata log when the
    storage is formatted (KRaft reads them nowhere else); PLAIN users live in the JAAS line.
    ``jwks_url`` (an HTTP(S) URL that must answer before the broker starts) turns on the
    OAUTHBEARER listener, validating JWTs with Kafka's own ``OAuthBearerValidatorCallbackHandler``.
    """

    keystore: Path
    truststore: Path
    scram_users: Mapping[str, str] = field(default_factory=dict)
    plain_users: Mapping[str, str] = field(default_factory=dict)
    jwks_url: str = ""
    oauth_audience: str = "kafka"
    oauth_issuer: str = ""
    super_users: tuple[str, ...] = ()
    """Principals beyond ``User:ANONYMOUS`` (PLAINTEXT, controller) that bypass ACLs."""


# Listener names of the secured listeners (and LocalKafka.listener_bootstrap keys).
SASL_SSL = "SASL_SSL"  # SCRAM-SHA-512 and PLAIN
MTLS = "SSL"  # client certificate required
OAUTH = "OAUTH"  # SASL_SSL with OAUTHBEARER
SCRAM_MECHANISM = "SCRAM-SHA-512"
OAUTH_ALLOWED_URLS_PROPERTY = "org.apache.kafka.sasl.oauthbearer.allowed.urls"
"""Kafka 4.x refuses JWKS/token URLs not listed in this JVM system property."""


def _jaas_plain(users: Mapping[str, str]) -> str:
    entries = "".join(f' user_{name}="{pw}"' for name, pw in users.items())
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required{entries};"


def secure_listener_names(secure: SecureListeners) -> list[str]:
    """The secured listeners this configuration turns on."""
    return [SASL_SSL, MTLS] + ([OAUTH] if secure.jwks_url else [])


def secure_properties(secure: SecureListeners) -> dict[str, str]:
    """TLS, SASL and authorizer settings added to ``server_properties``."""
    props = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(secure.keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(secure.truststore),
        "listener.name.ssl.ssl.client.auth": "required",
        # User:<CN> instead of the whole distinguished name, as most platforms map it.
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]*).*$/$1/,DEFAULT",
        "listener.name.sasl_ssl.sasl.enabled.mechanisms": f"{SCRAM_MECHANISM},PLAIN",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        ),
        "listener.name.sasl_ssl.plain.sasl.jaas.config": _jaas_plain(secure.plain_users),
        "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        "allow.everyone.if.no.acl.found": "false",
        "super.users": ";".join(("User:ANONYMOUS", *secure.super_users)),
    }
    if secure.jwks_url:
        props.update(
            {
                "listener.name.oauth.sasl.enabled.mechanisms": "OAUTHBEARER",
                "listener.name.oauth.oauthbearer.sasl.jaas.config": (
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required;"
                ),
                "listener.name.oauth.oauthbearer.sasl.server.callback.handler.class": (
                    "org.apache.kafka.common.security.oauthbearer."
                    "OAuthBearerValidatorCallbackHandler"
                ),
                "sasl.oauthbearer.jwks.endpoint.url": secure.jwks_url,
                "sasl.oauthbearer.expected.audience": secure.oauth_audience,
            }
        )
        if secure.oauth_issuer:
            props["sasl.oauthbearer.expected.issuer"] = secure.oauth_issuer
    return props


def _tail_text(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _tail_file(path: Path, lines: int = 40) -> str:
    try:
        return _tail_text(path.read_text(errors="replace"), lines)
    except OSError:
        return f"(no {path})"


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


class LocalKafka:
    """One broker process in ``workdir``: server.properties, data/, logs/ and kafka.pid."""

    def __init__(
        self,
        workdir: Path,
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "1g",
        secure: SecureListeners | None = None,
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.secure = secure
        # Free ports for the secured listeners, chosen now so tests can read them early.
        self.secure_ports: dict[str, int] = (
            {name: free_port() for name in (SASL_SSL, MTLS, OAUTH)} if secure else {}
        )
        self.port = port
        # None: any free port; the controller listener is internal to this single node.
        self.controller_port = controller_port
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None
        # Measured on the last start(), for docs and slow-start diagnosis.
        self.format_seconds: float | None = None
        self.ready_seconds: float | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def bootstrap(self) -> str:
        """The ``bootstrap_servers`` string clients use."""
        return f"127.0.0.1:{self.port}"

    def listener_bootstrap(self, name: str) -> str:
        """The bootstrap string of a secured listener (``SASL_SSL``, ``SSL`` or ``OAUTH``)."""
        return f"127.0.0.1:{self.secure_ports[name]}"

    def _properties(self) -> dict[str, str]:
        assert self.controller_port is not None
        props = server_properties(self.workdir, self.port, self.controller_port)
        if self.secure is None:
            return props
        names = secure_listener_names(self.secure)
        protocols = {SASL_SSL: "SASL_SSL", MTLS: "SSL", OAUTH: "SASL_SSL"}
        listeners = [f"{name}://127.0.0.1:{self.secure_ports[name]}" for name in names]
        props["listeners"] += "," + ",".join(listeners)
        props["advertised.listeners"] += "," + ",".join(listeners)
        props["listener.security.protocol.map"] += "," + ",".join(
            f"{name}:{protocols[name]}" for name in names
        )
        props.update(secure_properties(self.secure))
        return props

    def _format_args(self) -> list[str]:
        """SCRAM credentials for ``kafka-storage format --add-scram``."""
        if self.secure is None:
            return []
        args: list[str] = []
        for name, password in self.secure.scram_users.items():
            args += ["--add-scram", f"{SCRAM_MECHANISM}=[name={name},password={password}]"]
        return args

    def _system_properties(self) -> list[str]:
        if self.secure is None or not self.secure.jwks_url:
            return []
        return [f"-D{OAUTH_ALLOWED_URLS_PROPERTY}={self.secure.jwks_url}"]

    @property
    def pid_file(self) -> Path:
        return self.workdir / PID_FILE

    @property
    def props_file(self) -> Path:
        return self.workdir / PROPS_FILE

    @property
    def log_dir(self) -> Path:
        return self.workdir / LOG_SUBDIR

    @property
    def server_log(self) -> Path:
        return self.log_dir / SERVER_LOG

    @property
    def stdout_log(self) -> Path:
        return self.log_dir / STDOUT_LOG

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the broker log and the JVM's stdout, for error messages."""
        return (
            f"--- {self.server_log} ---\n{_tail_file(self.server_log, lines)}\n"
            f"--- {self.stdout_log} ---\n{_tail_file(self.stdout_log, lines)}"
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The broker pid if this workdir's broker is alive (from the pid file), else None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) and self._is_our_broker(pid) else None

    def _is_our_broker(self, pid: int) -> bool:
        """Guard against a recycled pid: the process must be kafka.Kafka on our properties."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no procfs: trust the pid file
        return BROKER_MAIN.encode() in argv and str(self.props_file).encode() in argv

    def start(self, timeout: float = 120.0) -> None:
        """Fetch the jars if needed, format storage once, start the broker and wait until ready.

        Raises KafkaLocalError (with the broker's log tail) if the port is taken, the JVM exits,
        or the broker is not usable within ``timeout`` seconds; in the last case it is stopped.
        """
        if self.pid() is not None:
            raise KafkaLocalError(f"a broker is already running from {self.workdir}")
        if _port_in_use(self.port):
            raise KafkaLocalError(f"port {self.port} on 127.0.0.1 is already in use")
        java = shutil.which("java")
        if java is None:
            raise KafkaLocalError("java is not on PATH (Kafka 4.x needs Java 17+)")
        libs = fetch_classpath()
        classpath = str(libs / "*")
        if self.controller_port is None:
            self.controller_port = free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        props = self._properties()
        self.props_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))

        if not (self.workdir / "data" / "meta.properties").exists():
            began = time.monotonic()
            fmt = subprocess.run(
                [
                    java,
                    *TOOL_JVM_FLAGS,
                    f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
                    f"-Dkafka.logs.dir={self.log_dir}",
                    "-cp",
                    classpath,
                    STORAGE_TOOL_MAIN,
                    "format",
                    "-t",
                    new_cluster_id(),
                    "-c",
                    str(self.props_file),
                    *self._format_args(),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            self.format_seconds = time.monotonic() - began
            if fmt.returncode != 0:
                raise KafkaLocalError(
                    f"formatting storage failed (exit {fmt.returncode}):\n"
                    f"{_tail_text(fmt.stdout + fmt.stderr)}"
                )

        cmd = [
            java,
            "-Xms256m",
            f"-Xmx{self.heap}",
            *BROKER_JVM_FLAGS,
            *self._system_properties(),
            f"-Dlog4j2.configurationFile={LOG4J_CONFIG}",
            f"-Dkafka.logs.dir={self.log_dir}",
            "-cp",
            classpath,
            BROKER_MAIN,
            str(self.props_file),
        ]
        began = time.monotonic()
        with self.stdout_log.open("ab") as out:
            # Own session: a Ctrl-C aimed at pytest or the CLI must not kill the broker
            # mid-write; stop() ends it deliberately.
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop(grace=5.0)
            raise
        self.ready_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        """Ready = an admin client gets the cluster description; an open port is not enough."""
        last_error = "port not open yet"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise KafkaLocalError(
                    f"broker exited with code {self._proc.returncode} during startup\n"
                    f"{self.log_tail()}"
                )
            if _port_in_use(self.port):
                try:
                    brokers = _describe_cluster_brokers(self.bootstrap)
                except Exception as exc:  # any client error just means "not yet"
                    last_error = f"{type(exc).__name__}: {exc}"
                else:
                    if brokers >= 1:
                        return
                    last_error = "describe_cluster returned no brokers"
            time.sleep(0.2)
        raise KafkaLocalError(f"broker not ready in time ({last_error})\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the broker (controlled shutdown), SIGKILL only if it outlives ``grace``."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            self._proc = None
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, grace):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10.0):
                raise KafkaLocalError(f"broker pid {pid} survived SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        self._proc = None

    def _wait_exit(self, pid: int, timeout: float) -> bool:
        if self._proc is not None and self._proc.pid == pid:
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
            return True
        return _wait_for(lambda: not _pid_alive(pid), timeout)

    def status(self) -> str:
        """One line: running (and whether it answers on its port) or stopped."""
        pid = self.pid()
        if pid is None:
            return f"stopped ({self.workdir})"
        port = _listener_port(self.props_file) or self.port
        answering = "answering" if _port_in_use(port) else "NOT answering"
        return f"running pid={pid} bootstrap=127.0.0.1:{port} ({answering}) ({self.workdir})"

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def _describe_cluster_brokers(bootstrap: str) -> int:
    """Number of brokers a fresh admin client sees; raises while the broker is not serving."""
    # Imported late so that `fetch` works before kafka-python is installed.
    from kafka import KafkaAdminClient  # noqa: PLC0415

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        bootstrap_timeout_ms=3000,
        request_timeout_ms=5000,
        client_id="kafka-local-readiness",
    )
    try:
        return len(admin.describe_cluster().get("brokers", []))
    finally:
        admin.close()


def _listener_port(props_file: Path) -> int | None:
    """The PLAINTEXT port recorded in a workdir's server.properties (for CLI status)."""
    try:
        lines = props_file.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("listeners="):
            for listener in line.split("=", 1)[1].split(","):
                if listener.startswith("PLAINTEXT://"):
                    return int(listener.rsplit(":", 1)[1])
    return None


def main(argv: list[str] | None = None) -> int:
    """CLI entry point used by the Makefile (fetch, broker-up/down/status)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="resolve the broker jars into deploy/local/.cache/libs")
    start = sub.add_parser("start", help="start a broker in the background and wait until ready")
    start.add_argument("--port", type=int, default=9092)
    start.add_argument("--controller-port", type=int, default=9093)
    start.add_argument("--heap", default="1g")
    start.add_argument("--timeout", type=float, default=120.0)
    for name in ("stop", "status"):
        sub.add_parser(name, help=f"{name} the broker started from --workdir")
    for p in sub.choices.values():
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            began = time.monotonic()
            libs = fetch_classpath()
            jars = list(libs.glob("*.jar"))
            size_mb = sum(j.stat().st_size for j in jars) / 1e6
            took = time.monotonic() - began
            print(f"{len(jars)} jars, {size_mb:.0f} MB in {libs} ({took:.1f} s)")
        elif args.command == "start":
            kafka = LocalKafka(args.workdir, args.port, args.controller_port, args.heap)
            kafka.start(args.timeout)
            print(f"broker ready on {kafka.bootstrap} (pid {kafka.pid()}, log {kafka.server_log})")
            if kafka.format_seconds is not None:
                print(f"format {kafka.format_seconds:.1f} s, ready {kafka.ready_seconds:.1f} s")
        elif args.command == "stop":
            kafka = LocalKafka(args.workdir)
            was = kafka.pid()
            kafka.stop()
            print(f"stopped pid {was}" if was else "not running")
        else:
            print(LocalKafka(args.workdir).status())
    except KafkaLocalError as exc:
        print(f"kafka_local: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
