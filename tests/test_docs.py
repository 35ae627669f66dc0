"""The docs cite only what the repository has, and no file names a developer's machine.

Every tracked Markdown file is read: its relative links (`[text](docs/x.md)`, resolved from
the file's folder) and the repository paths it puts in backticks (`deploy/Dockerfile`,
resolved from the root) must exist. A path that names something built or written at run time
(`.venv`, `.run/...`, `connector/_avro`) is not a citation; those are listed below.
"""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOP = ("connector/", "deploy/", "docs/", "tests/", "bench/", "avro/", "requirements/", ".ci/")
TOP_FILES = {"Makefile", "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE"}
MADE_AT_RUN_TIME = (
    ".run/",
    "connector/_avro",  # the wheel's copy of avro/ (pyproject's force-include)
    "deploy/local/.cache",
    "deploy/local/.run",
    "bench/results/",  # bench/run.py writes its figures there
)
"""Paths the docs name that the build, a run or a tool creates."""
MACHINE_PATHS = re.compile(r"(?<![\w.])/(?:work|home|root|Users)/")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
TICKED = re.compile(r"`([^`\s]+)`")


@cache
def tracked() -> tuple[str, ...]:
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return tuple(p for p in out.splitlines() if (ROOT / p).is_file())


def markdown() -> list[str]:
    return [p for p in tracked() if p.endswith(".md")]


def links(text: str) -> list[str]:
    """Relative link targets, without anchors; web, mail and same-page links left out."""
    out = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        out.append(target.split("#", 1)[0])
    return [t for t in out if t]


def cited_paths(text: str) -> list[str]:
    """Backticked repository paths: under a top-level folder, or a top-level file."""
    found = []
    for raw in TICKED.findall(text):
        path = raw.rstrip(".,;:)").split(":", 1)[0] if not raw.startswith(".ci/") else raw
        path = path.rstrip(".,;:)")
        if any(ch in path for ch in "*<>{}$|=?") or path.startswith(MADE_AT_RUN_TIME):
            continue
        if path.startswith(TOP) or path in TOP_FILES:
            found.append(path)
    return found


@pytest.mark.parametrize("doc", markdown())
def test_relative_links_point_at_files_that_exist(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    base = (ROOT / doc).parent
    missing = [t for t in links(text) if not (base / t).exists()]
    assert not missing, f"{doc} links to what the repository lacks: {missing}"


@pytest.mark.parametrize("doc", markdown())
def test_backticked_repository_paths_exist(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = sorted({p for p in cited_paths(text) if not (ROOT / p).exists()})
    assert not missing, f"{doc} cites paths the repository lacks: {missing}"


def test_no_file_names_a_machine_specific_path() -> None:
    """Absolute paths under a home or work folder belong to one machine, not the repository."""
    offenders = []
    for path in tracked():
        try:
            text = (ROOT / path).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        offenders += [
            f"{path}:{n}"
            for n, line in enumerate(text.splitlines(), 1)
            if MACHINE_PATHS.search(line)
        ]
    assert not offenders, f"machine-specific paths: {offenders}"


def test_the_checks_see_what_they_should() -> None:
    """The extractors find links and paths (so a pass above means something)."""
    sample = "See [the design](docs/design.md#x), [web](https://e.x) and `deploy/Dockerfile`, "
    sample += "`connector/core/` and `.run/chaos/<time>/report.json`; `" + "/wo" + "rk/x` is bad."
    assert links(sample) == ["docs/design.md"]
    assert cited_paths(sample) == ["deploy/Dockerfile", "connector/core/"]
    assert MACHINE_PATHS.search(sample)
    assert not MACHINE_PATHS.search("a ./work/ folder and http://host/home/")
