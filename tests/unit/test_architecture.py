"""The package's shape: no import cycle, domain code never imports the Celery glue.

Read from the source with ``ast`` (module-level and function-level imports alike), so a
cycle hidden in an import inside a function is found too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "offline_ingestor"
#: The Celery layer (``proj/celery.py + proj/tasks.py``) and what only it uses.
GLUE = {
    "offline_ingestor.worker",
    "offline_ingestor.tasks",
    "offline_ingestor.chain",
    "offline_ingestor.celery_config",
    "offline_ingestor.envelope",
    "offline_ingestor.worker_signals",
    "offline_ingestor.kombu_patches",
    "offline_ingestor.worker_stop",
}
#: The layers above the domain: they may import the glue.
ENTRY_POINTS = ("offline_ingestor.cli", "offline_ingestor.background_ingestor", "offline_ingestor.producer")


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


def test_domain_modules_do_not_import_the_celery_glue(graph: dict[str, set[str]]) -> None:
    """Steps, executor, store, client … run without Celery: only the glue and entry points use it."""
    upward = {
        f"{name} -> {target}"
        for name, targets in graph.items()
        for target in targets
        if target in GLUE
        and name not in GLUE
        and not name.startswith(ENTRY_POINTS)
        and name != "offline_ingestor"
    }
    assert not upward


def test_tasks_module_holds_no_step_logic() -> None:
    """tasks.py maps executor outcomes onto Celery; it imports no step and no SciCat code."""
    imported = imports_of(PACKAGE / "tasks.py")
    assert not {
        name for name in imported if name.startswith(("offline_ingestor.steps", "offline_ingestor.scicat"))
    }
    assert "offline_ingestor.executor" in imported
