"""Every YAML file in the repository passes `yamllint --strict` with the repository's .yamllint.

Helm templates are Go templates, not YAML, so .yamllint ignores them; tests/deploy/
test_helm_chart.py lints what they render instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".yamllint"


def yaml_files() -> list[str]:
    """Tracked and new (not ignored) YAML files, as git sees them."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return sorted(p for p in listed if p.endswith((".yml", ".yaml")) and (ROOT / p).exists())


def yamllint(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "--format", "parsable", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_yaml_file_passes_yamllint() -> None:
    files = yaml_files()
    assert "deploy/docker-compose.yml" in files
    assert "deploy/prometheus/prometheus.yml" in files
    result = yamllint("-c", str(CONFIG), *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_config_finds_real_problems() -> None:
    """The config is in force: a duplicate key, a bare `yes` and a long line are all caught."""
    bad = "a: 1\na: 2\nenabled: yes\nlong: " + "x" * 130 + "\n"
    result = yamllint("-c", str(CONFIG), "-", stdin=bad)
    assert result.returncode == 1
    for rule in ("key-duplicates", "truthy", "line-length"):
        assert f"({rule})" in result.stdout, result.stdout
