"""deploy/local/tools.py: a tool that cannot be built is an error with a reason, never a skip."""

from __future__ import annotations

from pathlib import Path

import pytest
import tools  # deploy/local, put on sys.path by this folder's conftest


def test_missing_go_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tools, "BIN_DIR", tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(tools.ToolError, match="`go` is not on PATH"):
        tools.ensure_helm(log=False)


def test_a_helm_of_another_version_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale binary in the cache (here one that reports v0.0.1) is rebuilt, not trusted."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "helm"
    fake.write_text("#!/bin/sh\necho v0.0.1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(tools, "BIN_DIR", bin_dir)
    assert tools.helm_version(fake) == "v0.0.1"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # so the rebuild fails fast
    with pytest.raises(tools.ToolError):
        tools.ensure_helm(log=False)


def test_cli_exits_1_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tools, "BIN_DIR", tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert tools.main(["helm"]) == 1
    assert "`go` is not on PATH" in capsys.readouterr().err


def test_promtool_missing_go_is_an_error_that_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tools, "BIN_DIR", tmp_path / "bin")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert tools.main(["promtool"]) == 1
    assert "`go` is not on PATH: promtool is built" in capsys.readouterr().err


def test_a_promtool_of_another_version_is_not_reused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "promtool"
    fake.write_text("#!/bin/sh\necho 'promtool, version v0.0.1 (branch: , revision: )'\n")
    fake.chmod(0o755)
    monkeypatch.setattr(tools, "BIN_DIR", bin_dir)
    assert tools.promtool_version(fake) == "v0.0.1"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # so the rebuild fails fast
    with pytest.raises(tools.ToolError):
        tools.ensure_promtool(log=False)
