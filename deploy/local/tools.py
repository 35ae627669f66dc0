#!/usr/bin/env python3
"""Command-line tools the deployment tests need, built from their package registries.

Helm and promtool come from the Go module proxy (``go install MODULE/cmd/TOOL@VERSION``):
there is no Docker engine and no way to download a release tarball here, but Go is on every
machine. The binaries land in ``deploy/local/.cache/bin`` (git-ignored) and are reused while
their version matches ``HELM_VERSION`` / ``PROMTOOL_VERSION``; Go's own module and build
caches stay where ``go env`` puts them.

Standalone on purpose (stdlib only) so ``.ci/run`` can call it before the venv is used.

CLI::

    python deploy/local/tools.py helm       # build if missing, print the path and the time
    python deploy/local/tools.py promtool   # the same for promtool (alert rule tests)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN_DIR = HERE / ".cache" / "bin"
HELM_MODULE = "helm.sh/helm/v3/cmd/helm"
HELM_VERSION = "v3.22.0"
# Kubernetes minor version of the k8s.io/client-go that helm v3.22.0 is built with (v0.37.0):
# helm's release Makefile stamps it in, so `helm lint` and `helm template` assume Kubernetes
# 1.37 (not the source default 1.20). ensure_helm checks it against the built binary.
HELM_K8S_MINOR = 37
PROMTOOL_MODULE = "github.com/prometheus/prometheus/cmd/promtool"
PROMTOOL_VERSION = "v0.316.0"
# A cold build (empty Go module and build caches) took 2 to 4 minutes on 2 shared cores;
# with a warm Go build cache a few seconds; a cached binary is only version-checked.
BUILD_TIMEOUT_S = 1800.0


class ToolError(RuntimeError):
    """A tool could not be built or does not run; the message says why."""


def helm_path() -> Path:
    return BIN_DIR / "helm"


def helm_version(path: Path) -> str | None:
    """The version a helm binary reports, or None if it does not run."""
    try:
        out = subprocess.run(
            [str(path), "version", "--template", "{{.Version}}"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_helm(log: bool = True) -> Path:
    """Path of helm HELM_VERSION, built with ``go install`` if missing; raises ToolError."""
    path = helm_path()
    if path.exists() and helm_version(path) == HELM_VERSION:
        return path
    go = shutil.which("go")
    if go is None:
        raise ToolError("`go` is not on PATH: helm is built from the Go module proxy")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(BIN_DIR), "CGO_ENABLED": "0"}
    # The -X flags of helm's own release build: without them `go install` makes a helm that
    # reports "v3.22" and assumes Kubernetes 1.20.
    ldflags = " ".join(
        [
            "-s -w",
            f"-X helm.sh/helm/v3/internal/version.version={HELM_VERSION}",
            "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
            *(
                f"-X helm.sh/helm/v3/pkg/{pkg}.k8sVersion{part}={value}"
                for pkg in ("lint/rules", "chartutil")
                for part, value in (("Major", 1), ("Minor", HELM_K8S_MINOR))
            ),
        ]
    )
    cmd = [go, "install", "-trimpath", f"-ldflags={ldflags}", f"{HELM_MODULE}@{HELM_VERSION}"]
    if log:
        print(f"tools: building helm {HELM_VERSION}: {' '.join(cmd)}", file=sys.stderr)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"building helm took longer than {BUILD_TIMEOUT_S:.0f}s") from exc
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise ToolError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    got = helm_version(path)
    if got != HELM_VERSION:
        raise ToolError(f"built helm reports version {got!r}, expected {HELM_VERSION}")
    client_go = _dependency_version(go, path, "k8s.io/client-go")
    if not client_go.startswith(f"v0.{HELM_K8S_MINOR}."):
        raise ToolError(
            f"helm {HELM_VERSION} uses k8s.io/client-go {client_go}: update HELM_K8S_MINOR"
        )
    if log:
        print(f"tools: built helm {HELM_VERSION} in {elapsed:.1f}s -> {path}", file=sys.stderr)
    return path


def promtool_path() -> Path:
    return BIN_DIR / "promtool"


def promtool_version(path: Path) -> str | None:
    """The version a promtool binary reports (``promtool, version X (...)``), or None."""
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=60, check=False
        )
    except OSError:
        return None
    found = re.search(r"version (\S+)", out.stdout + out.stderr)
    return found.group(1) if out.returncode == 0 and found else None


def ensure_promtool(log: bool = True) -> Path:
    """Path of promtool PROMTOOL_VERSION, built with ``go install`` if missing; raises
    ToolError. The Prometheus module's tags are v0.3xx.y for Prometheus 3.xx.y."""
    path = promtool_path()
    if path.exists() and promtool_version(path) == PROMTOOL_VERSION:
        return path
    ldflags = f"-s -w -X github.com/prometheus/common/version.Version={PROMTOOL_VERSION}"
    _go_install(f"{PROMTOOL_MODULE}@{PROMTOOL_VERSION}", ldflags, "promtool", log)
    got = promtool_version(path)
    if got != PROMTOOL_VERSION:
        raise ToolError(f"built promtool reports version {got!r}, expected {PROMTOOL_VERSION}")
    return path


def _go_install(target: str, ldflags: str, name: str, log: bool) -> None:
    """``go install`` `target` into BIN_DIR; raises ToolError with go's own words."""
    go = shutil.which("go")
    if go is None:
        raise ToolError(f"`go` is not on PATH: {name} is built from the Go module proxy")
    BIN_DIR.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOBIN": str(BIN_DIR), "CGO_ENABLED": "0"}
    cmd = [go, "install", "-trimpath", f"-ldflags={ldflags}", target]
    if log:
        print(f"tools: building {name}: {' '.join(cmd)}", file=sys.stderr)
    start = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolError(f"building {name} took longer than {BUILD_TIMEOUT_S:.0f}s") from exc
    if proc.returncode != 0:
        raise ToolError(f"`{' '.join(cmd)}` failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    if log:
        print(f"tools: built {name} in {time.monotonic() - start:.1f}s", file=sys.stderr)


def _dependency_version(go: str, binary: Path, module: str) -> str:
    """The version of `module` compiled into a Go binary (`go version -m`), or ""."""
    out = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == "dep" and fields[1] == module:
            return fields[2]
    return ""


TOOLS = {"helm": (ensure_helm, HELM_VERSION), "promtool": (ensure_promtool, PROMTOOL_VERSION)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tool", choices=sorted(TOOLS), help="the tool to build if missing")
    args = parser.parse_args(argv)
    ensure, version = TOOLS[args.tool]
    start = time.monotonic()
    try:
        path = ensure()
    except ToolError as exc:
        print(f"tools: {exc}", file=sys.stderr)
        return 1
    print(f"{path} ({version}, ready in {time.monotonic() - start:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
