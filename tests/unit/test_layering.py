"""Imports point one way: leaves -> core -> shells -> runner -> cli; the emulator stands alone.

Parsed with `ast` (nothing is imported), counting every import statement, including
lazy imports inside functions and imports under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "connector"
EMULATOR = "connector.emulator"

LEAF, CORE, ADAPTER, STAGE, RUNNER, CLI, ENTRY = range(7)
# Layers by module path: a new module lands in its folder's layer, so this stays current.
# Stages sit above the adapters in the order but must not import them (see the test below):
# they are written against the ports in `connector.core.ports`, and the runner wires both.
PREFIXES: tuple[tuple[str, int], ...] = (
    ("connector.core.", CORE),
    ("connector.adapters.", ADAPTER),
    ("connector.stages.", STAGE),
)
TOP_LEVEL: dict[str, int] = {
    "connector": LEAF,  # __init__: the version string only
    "connector.errors": LEAF,
    "connector.defaults": LEAF,
    "connector.config": LEAF,
    "connector.acls": LEAF,  # the ACL list, derived from Settings (pure)
    "connector.redact": LEAF,  # masks secrets in strings; used by logs, sink and status
    "connector.core": CORE,
    "connector.adapters": ADAPTER,
    "connector.stages": STAGE,
    "connector.client": ADAPTER,  # the public publish/read helpers speak kafka-python
    "connector.health": ADAPTER,  # HTTP probes
    "connector.logs": ADAPTER,  # configures structlog and stdlib logging: process-wide I/O
    "connector.dlq": ADAPTER,  # `connector dlq replay`: reads the DLQ, re-publishes
    "connector.metrics": ADAPTER,  # Prometheus series over the published snapshot; port wrappers
    "connector.statusview": ADAPTER,  # /status JSON and the HTML page, from the published view
    "connector.endpoints": ADAPTER,  # wires the health server to a sidecar's snapshot
    "connector.statuscli": RUNNER,  # `connector status`: reads the ledger through the adapters
    "connector.runner": RUNNER,
    "connector.startup": RUNNER,  # start-up wiring: topics, limits, registry, clients
    "connector.testing": RUNNER,  # fakes of the ports, wired like the runner wires adapters
    "connector.testing_group": RUNNER,  # the group, epochs and outages around those fakes
    "connector.cli": CLI,
    "connector.__main__": ENTRY,
}


def layer_of(module: str) -> int | None:
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    for prefix, layer in PREFIXES:
        if module.startswith(prefix):
            return layer
    return None


# Only the CLI may start the emulator (it ships in the same wheel as a subcommand).
MAY_IMPORT_EMULATOR = {"connector.cli", "connector.testing"}
# Third-party I/O libraries that belong in one shell each, never in leaves or the core.
IO_LIBRARIES = {"kafka", "google", "httpx", "httpx2"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / Path(*name.split(".")) / "__init__.py").exists()


def _is_module(name: str) -> bool:
    p = PACKAGE.parent / Path(*name.split("."))
    return p.with_suffix(".py").exists() or (p / "__init__.py").exists()


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file.

    `from pkg import name` counts as importing `pkg.name` when that is a module.
    """
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                yield node.lineno, sub if _is_module(sub) else module


def _sidecar_files() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if "emulator" not in p.relative_to(PACKAGE).parts
    )


def _is_emulator(name: str) -> bool:
    return name == EMULATOR or name.startswith(EMULATOR + ".")


def _internal_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in _sidecar_files():
        me = _module_name(path)
        edges[me] = {
            name
            for _, name in imports_of(path)
            if (name == "connector" or name.startswith("connector."))
            and not _is_emulator(name)
            and name != me
        }
    return edges


def test_the_import_parser_sees_lazy_relative_and_from_imports() -> None:
    """The checker must see every kind of import this package uses, or it proves nothing."""
    cli = {name for _, name in imports_of(PACKAGE / "cli.py")}
    assert "connector.runner" in cli  # imported lazily inside a function
    assert "connector.config" in cli  # `from connector import config`
    assert "connector" in cli  # `from connector import __version__`
    assert "connector.emulator.cli" in cli
    emu_cli = {name for _, name in imports_of(PACKAGE / "emulator" / "cli.py")}
    assert "connector.emulator.config" in emu_cli  # `from .config import ...`


def test_every_module_has_a_layer() -> None:
    """A new module must sit in a layer's folder or be named at the top level."""
    missing = sorted(m for m in map(_module_name, _sidecar_files()) if layer_of(m) is None)
    assert not missing, f"place these in a layer folder or TOP_LEVEL: {missing}"


def test_layer_folders_hold_what_the_design_says() -> None:
    """The folders match docs/design.md's layers: the decisions, the I/O, the stages."""
    core = {_module_name(p) for p in (PACKAGE / "core").glob("*.py")}
    adapters = {_module_name(p) for p in (PACKAGE / "adapters").glob("*.py")}
    stages = {_module_name(p) for p in (PACKAGE / "stages").glob("*.py")}
    assert {"connector.core.batcher", "connector.core.policy", "connector.core.ports"} <= core
    assert {"connector.adapters.kafka", "connector.adapters.gemini"} <= adapters
    assert {"connector.stages.submitter", "connector.stages.tracker"} <= stages


@pytest.mark.parametrize("path", _sidecar_files(), ids=_module_name)
def test_imports_point_down(path: Path) -> None:
    """A module imports only its own layer or lower ones: the core never reaches a shell."""
    me = _module_name(path)
    mine = layer_of(me)
    if mine is None:
        pytest.fail(f"{me} has no layer")
    wrong = []
    for line, name in sorted(set(imports_of(path))):
        if _is_emulator(name):
            if me not in MAY_IMPORT_EMULATOR:
                wrong.append(f"{me}:{line} imports {name}")
            continue
        if name != "connector" and not name.startswith("connector."):
            continue
        theirs = layer_of(name)
        if theirs is None:
            wrong.append(f"{me}:{line} imports unknown {name}")
        elif theirs > mine:
            wrong.append(f"{me}:{line} ({mine}) imports {name} ({theirs})")
        elif mine == STAGE and theirs == ADAPTER:
            wrong.append(f"{me}:{line}: a stage imports the adapter {name}; use a port")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles_inside_a_layer() -> None:
    """Same-layer imports are allowed, but must still point one way (no cycles)."""
    edges = _internal_edges()
    done: set[str] = set()
    stack: list[str] = []

    def visit(m: str) -> None:
        if m in stack:
            cycle = [*stack[stack.index(m) :], m]
            pytest.fail("import cycle: " + " -> ".join(cycle))
        if m in done:
            return
        stack.append(m)
        for n in sorted(edges.get(m, ())):
            visit(n)
        stack.pop()
        done.add(m)

    for m in sorted(edges):
        visit(m)


@pytest.mark.parametrize(
    "path",
    [p for p in _sidecar_files() if layer_of(_module_name(p)) in (LEAF, CORE, STAGE)],
    ids=_module_name,
)
def test_leaves_core_and_stages_import_no_io_library(path: Path) -> None:
    """Kafka, google-genai and HTTP types stay in the adapters, never in decisions or stages."""
    module = _module_name(path)
    bad = [f"{line}: {n}" for line, n in imports_of(path) if n.split(".")[0] in IO_LIBRARIES]
    assert not bad, f"{module} imports I/O libraries: {bad}"


def test_emulator_imports_nothing_from_the_sidecar() -> None:
    """The emulator must not share the sidecar's code, or it could share its bugs."""
    files = sorted((PACKAGE / "emulator").rglob("*.py"))
    assert files, "emulator sources not found"
    wrong = [
        f"{p.relative_to(PACKAGE)}:{line} imports {name}"
        for p in files
        for line, name in imports_of(p)
        if (name == "connector" or name.startswith("connector.")) and not _is_emulator(name)
    ]
    assert not wrong, "\n".join(wrong)
