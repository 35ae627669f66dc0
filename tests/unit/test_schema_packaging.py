"""The wheel ships the Avro schemas and an installed sidecar finds them without the repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the project's wheel once, offline, with the hatchling already in the venv.

    It builds from a copy of what the wheel needs, so the build never writes into
    the shared checkout and does not depend on unrelated files being present.
    """
    src = tmp_path_factory.mktemp("src")
    shutil.copy(REPO / "pyproject.toml", src)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "connector", src / "connector", ignore=ignore)
    shutil.copytree(REPO / "avro", src / "avro", ignore=ignore)
    readme = REPO / "README.md"
    if readme.exists():
        shutil.copy(readme, src)
    else:  # pyproject names a readme; its absence is not what this test is about
        (src / "README.md").write_text("placeholder\n")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(src),
        ],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("*.whl")
    return built


@pytest.mark.slow
def test_wheel_contains_every_schema_version(wheel: Path) -> None:
    """Every avro/<name>/v<N>.avsc of the repo is in the wheel under connector/_avro."""
    expected = {
        f"connector/_avro/{p.relative_to(REPO / 'avro').as_posix()}"
        for p in (REPO / "avro").rglob("*.avsc")
    }
    assert expected, "the repo has no schemas"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert expected <= names


@pytest.mark.slow
def test_installed_wheel_loads_schemas_from_the_package(wheel: Path, tmp_path: Path) -> None:
    """Installed into a bare target dir and run outside the repo, the codec uses connector/_avro."""
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    script = (
        "import json, connector, connector.core.schemas as s\n"
        "from connector.core.codec import Codec\n"
        "Codec()\n"
        "from connector.core.pricing import load_price_table\n"
        "assert load_price_table().models, 'the shipped price table is missing'\n"
        "print(json.dumps({'package': connector.__file__, 'root': str(s.schema_root()),"
        " 'versions': {n: len(s.load_schemas(n)) for n in s.SCHEMA_NAMES}}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,  # outside the repo, so the checkout's avro/ cannot be found by accident
        env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    found = json.loads(run.stdout)
    assert Path(found["package"]).is_relative_to(target)
    assert Path(found["root"]) == target / "connector" / "_avro"
    assert all(count >= 1 for count in found["versions"].values())
