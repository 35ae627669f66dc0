"""Fixtures for the deployment tests: real tools, built or installed, never faked.

- ``helm``, ``promtool``: the paths of helm and promtool, built from the Go module proxy by
  deploy/local/tools.py if they are not in deploy/local/.cache/bin yet (a few minutes the
  first time). If one cannot be built the tests that need it ERROR, never skip: CI calls
  tools.py before the tests, so a failure there is a real one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_DEPLOY_LOCAL = ROOT / "deploy" / "local"
if str(_DEPLOY_LOCAL) not in sys.path:
    sys.path.insert(0, str(_DEPLOY_LOCAL))

import tools  # noqa: E402  (stdlib only)


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm tools.HELM_VERSION; raises tools.ToolError (a test error) if it cannot be built."""
    return tools.ensure_helm()


@pytest.fixture(scope="session")
def promtool() -> Path:
    """promtool tools.PROMTOOL_VERSION; raises tools.ToolError (a test error) if it cannot be
    built."""
    return tools.ensure_promtool()
