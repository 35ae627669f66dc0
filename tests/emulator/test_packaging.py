"""The emulator stands alone: no imports from the rest of `connector`, and a working CLI."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx2

import connector.emulator
from connector.emulator.cli import build_parser, config_from_args

PACKAGE = Path(connector.emulator.__file__).parent


def test_emulator_imports_nothing_from_connector() -> None:
    """Every import in connector/emulator is stdlib, third-party or relative within emulator."""
    offenders = []
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level > 1 or (
                    node.level == 0 and (node.module or "").startswith("connector")
                ):
                    offenders.append(f"{path.name}: from {'.' * node.level}{node.module}")
            elif isinstance(node, ast.Import):
                offenders += [
                    f"{path.name}: import {a.name}"
                    for a in node.names
                    if a.name.startswith("connector")
                ]
    assert offenders == []


def test_cli_flags_cover_every_knob() -> None:
    """Each EmulatorConfig field has a flag, and flags reach the config."""
    args = build_parser().parse_args(
        ["--port", "0", "--api-key", "k", "--queue-delay-s", "2.5", "--running-slots", "7"]
    )
    cfg = config_from_args(args)
    assert (cfg.api_key, cfg.queue_delay_s, cfg.running_slots) == ("k", 2.5, 7)
    help_text = build_parser().format_help()
    for name in (
        "--transient-error-rate",
        "--max-concurrent-jobs",
        "--file-ttl-s",
        "--expiry-s",
        "--latency-ms",
    ):
        assert name in help_text


def test_python_m_connector_emulator_serves_and_stops(tmp_path: Path) -> None:
    """`python -m connector.emulator --port 0` serves the API and exits 0 on SIGTERM."""
    root = PACKAGE.parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "connector.emulator", "--port", "0", "--api-key", "cli-key"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base = line.rsplit(" ", 1)[1].strip()
        ok = httpx2.get(f"{base}/v1beta/batches", headers={"x-goog-api-key": "cli-key"})
        assert ok.status_code == 200
        assert ok.json() == {"operations": []}
        assert (
            httpx2.get(f"{base}/v1/batches", headers={"x-goog-api-key": "bad"}).status_code == 400
        )
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
    assert proc.returncode == 0


def test_docs_knob_table_covers_every_knob() -> None:
    """docs/emulator.md has a row for each EmulatorConfig field, so no knob goes undocumented."""
    import dataclasses

    from connector.emulator import EmulatorConfig

    docs = (PACKAGE.parent.parent / "docs" / "emulator.md").read_text()
    rows = {line.split("|")[1].strip(" `") for line in docs.splitlines() if line.startswith("| `")}
    missing = [f.name for f in dataclasses.fields(EmulatorConfig) if f.name not in rows]
    assert missing == []
