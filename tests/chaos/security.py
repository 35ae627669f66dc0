"""Secrets stay in the process, services stay private, the container is not root.

- The fake API key, SASL password and registry password every replica of every phase ran
  with must appear nowhere they could leak: replica logs, /status /healthz /readyz /metrics
  (sampled every second during the run), and every record (key, value, headers) of the
  result, dead-letter and ledger topics. The key reaches the emulator, its own service.
- The health output carries no prompt text (every prompt holds `PROMPT_MARKER`).
- The emulator, started without `--host`, listens on loopback only (read from /proc).
- A replica started without `CONNECTOR_HEALTH_PORT` listens on no port at all.
- deploy/Dockerfile's final stage ends with a non-root USER (dockerfile-parse).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from typing import Any

from .checks import PhaseResult
from .infra import (
    FAKE_API_KEY,
    PROMPT_MARKER,
    ROOT,
    SECRETS,
    Broker,
    Emulator,
    Raw,
    listening_sockets,
    new_topics,
    read_topics,
    sidecar_env,
    wait_for,
)
from .scenarios import Config, Shared

LOOPBACK = {"127.0.0.1", "::1"}


def _secret_hits(data: bytes | str | None) -> list[str]:
    if not data:
        return []
    raw = data.encode("utf-8", "replace") if isinstance(data, str) else data
    return [name for name, value in SECRETS.items() if value.encode() in raw]


def _record_hits(r: Raw) -> list[str]:
    hits = _secret_hits(r.key) + _secret_hits(r.value)
    for k, v in r.headers:
        hits += _secret_hits(k) + _secret_hits(v)
    return hits


def dockerfile_user() -> tuple[str | None, str]:
    """The USER in effect at the end of the final stage of deploy/Dockerfile."""
    from dockerfile_parse import DockerfileParser

    parser = DockerfileParser(path=str(ROOT / "deploy" / "Dockerfile"))
    user: str | None = None
    for instr in parser.structure:
        if instr["instruction"] == "FROM":
            user = None  # each stage starts as the base image's user (root for python:*)
        elif instr["instruction"] == "USER":
            user = instr["value"].strip()
    return user, parser.baseimage or ""


def _is_root(user: str | None) -> bool:
    if user is None:
        return True
    name = user.split(":", 1)[0].strip()
    return name in ("", "0", "root")


def _health_off_by_default(cfg: Config, broker: Broker, shared: Shared) -> tuple[list[Any], str]:
    """A replica without CONNECTOR_HEALTH_PORT: once running, it listens on nothing."""
    em = Emulator(cfg.workdir / "emulator-security.log")
    shared.emulators.append(em)
    topics = new_topics("sec", 1, bootstrap=broker.bootstrap)
    shared.ledgers.append(f"{topics.group}.ledger")
    env = sidecar_env(topics, broker.bootstrap, em.base_url)
    env.pop("CONNECTOR_HEALTH_PORT", None)
    env.pop("CONNECTOR_HEALTH_HOST", None)
    log_path = cfg.workdir / "security-no-health.log"
    shared.log_paths.append(log_path)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "connector", "run"],
            env=env,
            cwd=str(ROOT),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ok = wait_for(
            lambda: '"running"' in log_path.read_text(errors="replace") or proc.poll() is not None,
            90,
        )
        # Then the loop's first poll joins the group and takes the partition: whatever the
        # process would listen on (its health server starts before "running") is open by now.
        wait_for(
            lambda: (
                "partitions assigned" in log_path.read_text(errors="replace")
                or proc.poll() is not None
            ),
            60,
        )
        sockets = listening_sockets(proc.pid) if proc.poll() is None else []
        state = "running" if ok and proc.poll() is None else f"not running ({proc.poll()})"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        em.close()
    return sockets, state


def security(cfg: Config, broker: Broker | None, shared: Shared) -> PhaseResult:
    res = PhaseResult("security")
    v = res.violations
    # Dockerfile: non-root final USER.
    user, base = dockerfile_user()
    res.figures["dockerfile_final_user"] = user
    if _is_root(user):
        v.append(
            f"container runs as root: the final stage of deploy/Dockerfile ({base}) ends "
            f"with USER {user!r}"
        )
    # The in-process emulator's default bind address.
    from connector.emulator import EmulatorServer

    with EmulatorServer(port=0) as srv:
        default_bind = srv.address[0]
    res.figures["emulator_default_bind"] = default_bind
    if default_bind not in LOOPBACK:
        v.append(f"emulator binds to {default_bind} by default, not loopback")
    # Replica without a health port, while a broker is there to run against.
    if broker is not None:
        sockets, state = _health_off_by_default(cfg, broker, shared)
        res.figures["no_health_port_listening"] = [f"{a}:{p}" for a, p in sockets]
        res.figures["no_health_port_replica"] = state
        if sockets:
            v.append(f"health server on without CONNECTOR_HEALTH_PORT: listening on {sockets}")
        if state != "running":
            res.notes.append(f"the replica without a health port was {state}")
    # Emulator processes started without --host.
    exposed = {
        em.base_url: em.listening
        for em in shared.emulators
        if any(addr not in LOOPBACK for addr, _ in getattr(em, "listening", []))
    }
    res.figures["emulators_checked"] = len(shared.emulators)
    if exposed:
        v.append(f"emulator reachable from other machines: {exposed}")
    # Logs.
    log_hits: Counter[str] = Counter()
    prompt_lines = 0
    for path in dict.fromkeys(shared.log_paths):
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        for name in _secret_hits(text):
            log_hits[f"{path.name}: {name}"] += 1
        prompt_lines += sum(1 for line in text.splitlines() if PROMPT_MARKER in line)
    res.figures["logs_scanned"] = len(set(shared.log_paths))
    res.figures["log_lines_with_prompt_text"] = prompt_lines
    if log_hits:
        v.append(f"secrets in logs: {dict(log_hits)}")
    if prompt_lines:
        res.notes.append(
            f"{prompt_lines} log lines carry prompt text (not a secret, but user data in logs)"
        )
    # Health output sampled during the runs.
    health_secret: Counter[str] = Counter()
    health_prompt: Counter[str] = Counter()
    for where, text in shared.scanned:
        for name in _secret_hits(text):
            health_secret[f"{where}: {name}"] += 1
        if PROMPT_MARKER in text:
            health_prompt[where] += 1
    res.figures["health_responses_scanned"] = len(shared.scanned)
    if health_secret:
        v.append(f"secrets in health output: {dict(health_secret)}")
    if health_prompt:
        v.append(f"prompt text in health output: {dict(health_prompt)}")
    # Topics: results and dead letters (taps of the phases) and every ledger.
    topic_hits: Counter[str] = Counter()
    scanned = 0
    for tap in shared.taps:
        for r in tap.snapshot():
            scanned += 1
            for name in _record_hits(r):
                topic_hits[f"{tap.topic}: {name}"] += 1
    if broker is not None and shared.ledgers:
        for topic, r in read_topics(broker.bootstrap, list(dict.fromkeys(shared.ledgers))):
            scanned += 1
            for name in _record_hits(r):
                topic_hits[f"{topic}: {name}"] += 1
    res.figures["topic_records_scanned"] = scanned
    if topic_hits:
        v.append(f"secrets in topics: {dict(topic_hits)}")
    if FAKE_API_KEY in " ".join(str(x) for x in res.figures.values()):
        v.append("the API key reached the report itself")
    return res
