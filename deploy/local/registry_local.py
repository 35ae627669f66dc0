#!/usr/bin/env python3
"""A Confluent-compatible schema registry (Apicurio Registry 3, in-memory) from Maven Central.

Why: the sidecar writes Avro in the Confluent wire format, so tests need a real registry that
speaks the Confluent REST API, and this machine (like CI) has Java and Maven but no Docker.
Apicurio publishes its runnable Quarkus distribution as the ``all`` tar.gz of
``io.apicurio:apicurio-registry-app``; Maven unpacks it from ``registry/pom.xml`` into
``.cache/registry`` and this module runs ``quarkus-run.jar`` on 127.0.0.1 with the default
storage (SQL on an in-memory H2 database: every start is empty, nothing is written to disk).
The Confluent API is served under ``/apis/ccompat/v7`` (see ``LocalRegistry.url``).

Apicurio 3.3 is compiled for Java 21, so a JDK >= 21 is looked up (``REGISTRY_JAVA_HOME``,
``JAVA_HOME``, ``java`` on PATH, then ``/usr/lib/jvm/*``); the broker keeps the default Java 17.

Standalone on purpose (stdlib only, never the ``connector`` package), like kafka_local.py.

CLI::

    python deploy/local/registry_local.py fetch
    python deploy/local/registry_local.py start [--port 8081] [--workdir .run/registry]
    python deploy/local/registry_local.py status|stop [--workdir .run/registry]

API::

    with LocalRegistry(tmp_dir, port=free_port()) as registry:
        use(registry.url)  # http://127.0.0.1:PORT/apis/ccompat/v7
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

HERE = Path(__file__).resolve().parent
POM = HERE / "registry" / "pom.xml"
CACHE_DIR = HERE / ".cache"
DIST_DIR = CACHE_DIR / "registry"
# Holds the sha256 of registry/pom.xml the cache was unpacked from, so a version bump refetches.
STAMP = CACHE_DIR / "registry.stamp"
RUN_JAR = "quarkus-run.jar"
DEFAULT_WORKDIR = Path(".run/registry")

PID_FILE = "registry.pid"
STATE_FILE = "registry.json"  # ports and URL of the running server, for status
LOG_SUBDIR = "logs"
SERVER_LOG = "registry.log"  # Quarkus logs to the console: the JVM's stdout/stderr
CCOMPAT_PATH = "/apis/ccompat/v7"
# A marker in the JVM's argv, so a recycled pid is never taken for our server.
WORKDIR_PROPERTY = "registry.local.workdir"

MIN_JAVA = 21  # apicurio-registry-app 3.3.x classes are version 65 (Java 21)
JAVA_HOME_ENV = "REGISTRY_JAVA_HOME"
JVM_ROOT = Path("/usr/lib/jvm")

# Small heap and the serial GC: the registry holds a handful of schemas in tests, and the
# 2-core CI box also runs the broker, pytest, the emulator and the connector.
JVM_FLAGS = (
    "-Xms64m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-Xss512k",
    "-Djava.awt.headless=true",
)

# Environment variables that Quarkus/Apicurio read as configuration (ordinal 300): dropped so a
# developer's shell cannot turn the test registry into something else (storage, auth, ports).
_CONFIG_ENV_PREFIXES = ("QUARKUS_", "APICURIO_", "REGISTRY_", "SMALLRYE_")


class RegistryLocalError(RuntimeError):
    """The local registry could not be fetched, started or stopped."""


# -- fetch ------------------------------------------------------------------------------------
def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def _cache_is_valid() -> bool:
    if not STAMP.is_file() or not (DIST_DIR / RUN_JAR).is_file():
        return False
    return STAMP.read_text().strip() == _pom_digest()


def apicurio_version() -> str:
    """The Apicurio version pinned in registry/pom.xml."""
    match = re.search(r"<apicurio\.version>([^<]+)</apicurio\.version>", POM.read_text())
    return match.group(1) if match else "unknown"


def fetch_distribution(force: bool = False) -> Path:
    """Unpack the Apicurio distribution with Maven unless a cache from the current pom exists.

    Maven unpacks into a temporary sibling folder that is renamed into place only after it
    succeeded, so an interrupted or concurrent fetch never leaves a half-filled distribution.
    Returns the folder holding ``quarkus-run.jar``.
    """
    if not force and _cache_is_valid():
        return DIST_DIR
    mvn = shutil.which("mvn")
    if mvn is None:
        raise RegistryLocalError("Maven (mvn) is not on PATH; it is needed once to fetch it")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="registry-", dir=CACHE_DIR))
    try:
        cmd = [mvn, "-B", "-q", "-f", str(POM), f"-Dregistry.dir={staging}", "dependency:unpack"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RegistryLocalError(
                f"mvn failed (exit {proc.returncode}):\n{_tail_text(proc.stdout + proc.stderr)}"
            )
        if not (staging / RUN_JAR).is_file():
            raise RegistryLocalError(f"mvn succeeded but there is no {RUN_JAR} in {staging}")
        if DIST_DIR.exists():
            shutil.rmtree(DIST_DIR)
        staging.rename(DIST_DIR)
        STAMP.write_text(_pom_digest() + "\n")
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return DIST_DIR


# -- java -------------------------------------------------------------------------------------
def jdk_major(home: Path) -> int | None:
    """The feature version of the JDK at ``home`` from its ``release`` file (None if unknown)."""
    try:
        text = (home / "release").read_text()
    except OSError:
        return None
    match = re.search(r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', text, re.MULTILINE)
    if not match:
        return None
    major = int(match.group(1))
    # "1.8.0" style (Java 8 and older).
    return int(match.group(2) or 0) if major == 1 else major


def find_java(minimum: int = MIN_JAVA) -> Path:
    """A ``java`` executable of version >= ``minimum``.

    Looked up in order: ``$REGISTRY_JAVA_HOME`` (must qualify if set), ``$JAVA_HOME``, the
    ``java`` on PATH, then the newest JDK under /usr/lib/jvm.
    """
    forced = os.environ.get(JAVA_HOME_ENV, "").strip()
    if forced:
        home = Path(forced)
        major = jdk_major(home)
        if major is None or major < minimum or not (home / "bin" / "java").is_file():
            raise RegistryLocalError(
                f"{JAVA_HOME_ENV}={forced} is not a JDK >= {minimum} (found {major})"
            )
        return home / "bin" / "java"
    homes: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        homes.append(Path(os.environ["JAVA_HOME"]))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    if JVM_ROOT.is_dir():
        found = [(jdk_major(p) or 0, p) for p in JVM_ROOT.iterdir() if not p.is_symlink()]
        homes.extend(p for _, p in sorted(found, key=lambda mp: (-mp[0], mp[1].name)))
    seen: list[str] = []
    for home in homes:
        major = jdk_major(home)
        seen.append(f"{home} ({major})")
        if major is not None and major >= minimum and (home / "bin" / "java").is_file():
            return home / "bin" / "java"
    raise RegistryLocalError(
        f"Apicurio Registry needs Java >= {minimum}; none found (set {JAVA_HOME_ENV}). "
        f"Looked at: {', '.join(seen) or 'nothing'}"
    )


# -- helpers ----------------------------------------------------------------------------------
def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


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


def _http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes]:
    """(status, body) of a GET; HTTP errors are returned, connection errors raised."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def rss_kib(pid: int) -> int | None:
    """Resident set size of ``pid`` in KiB (from /proc), for measurements."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def server_properties(port: int, management_port: int) -> dict[str, str]:
    """Quarkus/Apicurio settings, passed as -D (the highest-priority config source)."""
    return {
        "quarkus.http.host": "127.0.0.1",
        "quarkus.http.port": str(port),
        # The health endpoints live on Quarkus' management interface (0.0.0.0:9000 by default,
        # which would collide between two registries and listen on every interface).
        "quarkus.management.host": "127.0.0.1",
        "quarkus.management.port": str(management_port),
        # In-memory storage is Apicurio 3's default; spelled out so it cannot drift.
        "apicurio.storage.kind": "sql",
        "apicurio.storage.sql.kind": "h2",
        # Confluent's default global compatibility level (Apicurio's own default is NONE), so
        # compatibility checks behave as they would against a Confluent registry.
        "apicurio.rules.global.compatibility": "BACKWARD",
        # The shipped format prints dates as "2026-11+00-30"; the audit log repeats every
        # failed request that the access log already shows.
        "quarkus.log.console.format": "%d{yyyy-MM-dd HH:mm:ss,SSS} %-5p [%c{3.}] (%t) %s%e%n",
        'quarkus.log.category."io.apicurio.registry.logging.audit".level': "WARN",
    }


class LocalRegistry:
    """One registry process in ``workdir``: logs/registry.log, registry.pid and registry.json."""

    def __init__(
        self,
        workdir: Path,
        port: int = 8081,
        management_port: int | None = None,
        heap: str = "384m",
    ) -> None:
        self.workdir = Path(workdir).resolve()
        self.port = port
        # None: any free port; health checks are all that is served there.
        self.management_port = management_port
        self.heap = heap
        self._proc: subprocess.Popen[bytes] | None = None
        # Measured on the last start(), for docs and slow-start diagnosis.
        self.ready_seconds: float | None = None

    # -- paths -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """The server root (Apicurio's own v3 API is under /apis/registry/v3)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The Confluent-compatible base URL clients use as ``url``."""
        return f"{self.base_url}{CCOMPAT_PATH}"

    @property
    def pid_file(self) -> Path:
        return self.workdir / PID_FILE

    @property
    def state_file(self) -> Path:
        return self.workdir / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.workdir / LOG_SUBDIR

    @property
    def server_log(self) -> Path:
        return self.log_dir / SERVER_LOG

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log, for error messages."""
        return f"--- {self.server_log} ---\n{_tail_file(self.server_log, lines)}"

    # -- lifecycle ---------------------------------------------------------------------------
    def pid(self) -> int | None:
        """The server pid if this workdir's registry is alive (from the pid file), else None."""
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        try:
            pid = int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) and self._is_our_server(pid) else None

    def _is_our_server(self, pid: int) -> bool:
        """Guard against a recycled pid: the process must be a registry JVM for our workdir."""
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return True  # no procfs: trust the pid file
        marker = f"-D{WORKDIR_PROPERTY}={self.workdir}".encode()
        return marker in argv and any(arg.endswith(RUN_JAR.encode()) for arg in argv)

    def command(self, java: Path, dist: Path) -> list[str]:
        """The JVM command line (exposed for docs and tests)."""
        assert self.management_port is not None
        props = server_properties(self.port, self.management_port)
        return [
            str(java),
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            f"-D{WORKDIR_PROPERTY}={self.workdir}",
            *(f"-D{key}={value}" for key, value in props.items()),
            "-jar",
            str(dist / RUN_JAR),
        ]

    def start(self, timeout: float = 120.0) -> None:
        """Fetch the distribution if needed, start the server and wait until it is ready.

        Raises RegistryLocalError (with the server's log tail) if a port is taken, the JVM
        exits, or the API does not answer within ``timeout`` seconds; in the last case the
        server is stopped.
        """
        if self.pid() is not None:
            raise RegistryLocalError(f"a registry is already running from {self.workdir}")
        if _port_in_use(self.port):
            raise RegistryLocalError(f"port {self.port} on 127.0.0.1 is already in use")
        java = find_java()
        dist = fetch_distribution()
        if self.management_port is None:
            self.management_port = free_port()
        elif _port_in_use(self.management_port):
            raise RegistryLocalError(f"port {self.management_port} on 127.0.0.1 is in use")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_ENV_PREFIXES)}
        began = time.monotonic()
        with self.server_log.open("ab") as out:
            # Own session: a Ctrl-C aimed at pytest or the CLI must not kill the server
            # mid-request; stop() ends it deliberately.
            self._proc = subprocess.Popen(
                self.command(java, dist),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )
        self.pid_file.write_text(f"{self._proc.pid}\n")
        self.state_file.write_text(
            json.dumps(
                {"port": self.port, "management_port": self.management_port, "url": self.url}
            )
            + "\n"
        )
        try:
            self._wait_ready(began + timeout)
        except BaseException:
            self.stop(grace=5.0)
            raise
        self.ready_seconds = time.monotonic() - began

    def _wait_ready(self, deadline: float) -> None:
        """Ready = health says UP and the Confluent API answers; an open port is not enough."""
        last_error = "port not open yet"
        health = f"http://127.0.0.1:{self.management_port}/health/ready"
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise RegistryLocalError(
                    f"registry exited with code {self._proc.returncode} during startup\n"
                    f"{self.log_tail()}"
                )
            if _port_in_use(self.port):
                try:
                    status, body = _http_get(health)
                    if status != 200:
                        last_error = f"{health} -> {status} {body[:200]!r}"
                    else:
                        status, body = _http_get(f"{self.url}/subjects")
                        if status == 200 and body.strip().startswith(b"["):
                            return
                        last_error = f"GET {self.url}/subjects -> {status} {body[:200]!r}"
                except (OSError, ValueError) as exc:  # refused, reset, timeout: not yet
                    last_error = f"{type(exc).__name__}: {exc}"
            time.sleep(0.2)
        raise RegistryLocalError(f"registry not ready in time ({last_error})\n{self.log_tail()}")

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM the server (Quarkus shuts down cleanly), SIGKILL only after ``grace``."""
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
                raise RegistryLocalError(f"registry pid {pid} survived SIGKILL")
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
        """One line: running (and whether its API answers) or stopped."""
        pid = self.pid()
        if pid is None:
            return f"stopped ({self.workdir})"
        url = self.url
        with contextlib.suppress(OSError, ValueError):
            url = str(json.loads(self.state_file.read_text())["url"])
        try:
            answering = "answering" if _http_get(f"{url}/subjects")[0] == 200 else "NOT answering"
        except OSError:
            answering = "NOT answering"
        return f"running pid={pid} url={url} ({answering}) ({self.workdir})"

    def __enter__(self) -> LocalRegistry:
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


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (fetch, start, stop, status)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="unpack the registry into deploy/local/.cache/registry")
    start = sub.add_parser("start", help="start a registry in the background and wait until ready")
    start.add_argument("--port", type=int, default=8081)
    start.add_argument("--management-port", type=int, default=None)
    start.add_argument("--heap", default="384m")
    start.add_argument("--timeout", type=float, default=120.0)
    for name in ("stop", "status"):
        sub.add_parser(name, help=f"{name} the registry started from --workdir")
    for p in sub.choices.values():
        p.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    args = parser.parse_args(argv)

    try:
        if args.command == "fetch":
            began = time.monotonic()
            dist = fetch_distribution()
            took = time.monotonic() - began
            jars = list(dist.rglob("*.jar"))
            size_mb = sum(j.stat().st_size for j in jars) / 1e6
            print(
                f"apicurio-registry-app {apicurio_version()}: {len(jars)} jars, {size_mb:.0f} MB "
                f"in {dist} ({took:.1f} s); java {find_java()}"
            )
        elif args.command == "start":
            registry = LocalRegistry(args.workdir, args.port, args.management_port, args.heap)
            registry.start(args.timeout)
            pid = registry.pid()
            rss = rss_kib(pid) if pid else None
            print(f"registry ready at {registry.url} (pid {pid}, log {registry.server_log})")
            print(f"ready in {registry.ready_seconds:.1f} s, RSS {(rss or 0) / 1024:.0f} MiB")
        elif args.command == "stop":
            registry = LocalRegistry(args.workdir)
            was = registry.pid()
            registry.stop()
            print(f"stopped pid {was}" if was else "not running")
        else:
            print(LocalRegistry(args.workdir).status())
    except RegistryLocalError as exc:
        print(f"registry_local: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
