"""The package's shape: no import cycle, and no import up the layers its folders show.

Read from the source with ``ast`` (module-level and function-level imports alike), so a
cycle hidden in an import inside a function is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "offline_ingestor"
#: Bottom to top: a module imports its own layer and those below it, never one above.
#: A name is a folder (subpackage) or a top-level module; "" is the package's ``__init__``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "config_paths", "current", "logs", "config", "metrics", "examples"),  # shared leaves
    ("files",),  # reading the data file
    ("scicat",),  # the HTTP client and SciCat's rules
    ("schema",),  # schema files, variables, rendering
    ("ingest",),  # one file's five steps and the executor: no Celery, no Redis
    ("queue",),  # Redis: job store, spool, submission (no Celery)
    ("worker",),  # everything Celery and kombu
    ("producer", "health", "audit"),  # what operators and producers call
    ("dropin", "cli", "demo", "background_ingestor", "testing", ""),  # entry points
)
#: Third-party packages a layer must not import (its folder's promise in the README).
FORBIDDEN = {
    "files": {"celery", "kombu", "redis"},
    "scicat": {"celery", "kombu", "redis"},
    "schema": {"celery", "kombu", "redis"},
    "ingest": {"celery", "kombu", "redis"},
    # queue/ publishes through a function the worker layer passes in; it reads kombu's
    # exception type only, to tell a publish that Redis refused (connection.redis_failure).
    "queue": {"celery"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    nodes: list[ast.AST] = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            nodes += [child for orelse in node.orelse for child in [orelse, *runtime_nodes(orelse)]]
            continue
        nodes += [node, *runtime_nodes(node)]
    return nodes


def imports_of(path: Path) -> set[str]:
    """Every ``offline_ingestor`` module ``path`` imports at run time, wherever the import stands."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found |= {f"{target}.{alias.name}" for alias in node.names} | {target}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
    return {item for item in found if item.startswith("offline_ingestor")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = {target for target in imports_of(path) if target in modules and target != name}
        # `from . import metrics` names the package and its module: the module is the edge.
        edges[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return edges


def test_package_has_no_import_cycle(graph: dict[str, set[str]]) -> None:
    """No module reaches itself through its imports (not even through function-level ones)."""
    done: set[str] = set()

    def visit(name: str, trail: tuple[str, ...]) -> None:
        if name in trail:
            cycle = " -> ".join((*trail[trail.index(name) :], name))
            pytest.fail(f"import cycle: {cycle}")
        if name in done:
            return
        for target in sorted(graph.get(name, ())):
            visit(target, (*trail, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())


def layer_of(module: str) -> int:
    """The rank in :data:`LAYERS` of ``offline_ingestor.<first part>``; unknown names fail."""
    first = module.removeprefix("offline_ingestor").removeprefix(".").partition(".")[0]
    for rank, names in enumerate(LAYERS):
        if first in names:
            return rank
    pytest.fail(f"{module}: its folder or module {first!r} is in no layer of LAYERS; place it there")


def test_every_module_imports_only_its_own_layer_and_those_below(graph: dict[str, set[str]]) -> None:
    """The folders are the architecture: an import up the layers is a design error."""
    upward = sorted(
        f"{name} ({layer_of(name)}) -> {target} ({layer_of(target)})"
        for name, targets in graph.items()
        for target in targets
        if layer_of(target) > layer_of(name)
    )
    assert not upward, "imports up the layers:\n" + "\n".join(upward)


def third_party_imports(path: Path) -> set[str]:
    """Top-level names of the non-package modules ``path`` imports at run time."""
    found: set[str] = set()
    for node in runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.partition(".")[0])
        elif isinstance(node, ast.Import):
            found |= {alias.name.partition(".")[0] for alias in node.names}
    return found


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_lower_layers_run_without_celery_or_redis(folder: str) -> None:
    """ingest/ runs in ``ingest-now`` without a broker; queue/ is Redis without Celery."""
    used = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / folder).rglob("*.py")
        for name in third_party_imports(path) & FORBIDDEN[folder]
    }
    assert not used


def test_tasks_module_holds_no_step_logic() -> None:
    """worker/tasks.py maps executor outcomes onto Celery; it imports no step and no SciCat code."""
    imported = imports_of(PACKAGE / "worker/tasks.py")
    assert not {
        name
        for name in imported
        if name.startswith(("offline_ingestor.ingest.steps", "offline_ingestor.scicat"))
    }
    assert "offline_ingestor.ingest.executor" in imported
