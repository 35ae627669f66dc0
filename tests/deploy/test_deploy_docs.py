"""The README's Deployment section names files that exist and the commands the files expect."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def deployment_section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## Deployment\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert m, "README.md has no '## Deployment' section"
    return m.group(1)


def test_every_deploy_path_in_the_section_exists() -> None:
    paths = set(re.findall(r"deploy/[\w./-]+", deployment_section()))
    assert "deploy/Dockerfile" in paths
    missing = [p for p in sorted(paths) if not (ROOT / p.rstrip(".")).exists()]
    assert missing == []


def test_section_gives_the_build_command_and_says_how_ci_checks() -> None:
    section = deployment_section()
    assert "docker build -f deploy/Dockerfile" in section
    assert "docker compose -f deploy/docker-compose.yml up" in section
    assert "kubectl apply -f deploy/kubernetes/" in section
    assert "helm install" in section
    assert "no Docker engine in CI" in section
