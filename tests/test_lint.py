"""The code stays ruff-clean and mypy-strict-clean: CI runs this with the rest of the suite."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.lint


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_check_and_format() -> None:
    """No lint findings and no unformatted file anywhere in the repository."""
    check = _run("ruff", "check", ".")
    assert check.returncode == 0, check.stdout + check.stderr
    fmt = _run("ruff", "format", "--check", ".")
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_mypy_strict_on_the_package() -> None:
    """`connector/` type-checks under mypy --strict (configured in pyproject.toml)."""
    result = _run("mypy", "connector")
    assert result.returncode == 0, result.stdout + result.stderr
