"""The import graph: service/ has no cycle and imports its own modules at the top only (that no
product code imports tests/ is tests/test_layout.py's).

Read from the source (ast), not by importing: what counts is what the code says, on every path."""

import ast
from pathlib import Path

from service.config import PROJECT_ROOT

# The one import of a service module inside a function, and why it must stay there: prometheus_client
# chooses multiprocess mode when first imported, and service.app imports it, so `serve` names the
# metrics folder first (server.metrics_folder) and imports the app after.
LATE_IMPORTS = {("service.server", "service.app")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PROJECT_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(node: ast.Import | ast.ImportFrom, importer: str, is_package: bool, known: set[str]) -> set[str]:
    """The modules an import statement names: `from . import db` names service.db when that is a
    module, else service itself."""
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names}
    package = importer if is_package else importer.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    base = ".".join(part for part in (package if node.level else "", node.module or "") if part)
    submodules = {f"{base}.{alias.name}" for alias in node.names} & known
    return submodules or {base}


def imports_of(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(module, whether the import sits inside a function) for each import in the file."""
    importer, tree = module_name(path), ast.parse(path.read_text(), str(path))
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.extend((module, in_function)
                             for module in imported_modules(child, importer, path.name == "__init__.py", known))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def python_files(folder: str) -> list[Path]:
    return sorted((PROJECT_ROOT / folder).rglob("*.py"))


def service_graph() -> dict[str, list[tuple[str, bool]]]:
    """service module -> the service modules it imports (and whether inside a function)."""
    files = python_files("service")
    known = {module_name(path) for path in files}
    return {module_name(path): [(module, late) for module, late in imports_of(path, known) if module in known]
            for path in files}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle found by a depth-first walk, as the path that closes it (a, b, ..., a)."""
    found, done, path = [], set(), []

    def walk(module: str) -> None:
        if module in path:
            found.append(path[path.index(module):] + [module])
            return
        if module in done:
            return
        path.append(module)
        for imported in sorted(edges.get(module, ())):
            walk(imported)
        path.pop()
        done.add(module)

    for module in sorted(edges):
        walk(module)
    return found


def test_the_cycle_walk_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_service_modules_import_each_other_without_a_cycle():
    graph = service_graph()
    # Every import counts, the late ones too: importing late only hides a cycle.
    edges = {module: {imported for imported, _ in imports} for module, imports in graph.items()}
    assert cycles(edges) == []


def test_service_modules_import_service_modules_at_the_top_only():
    late = {(module, imported) for module, imports in service_graph().items() for imported, in_function in imports
            if in_function}
    assert late == LATE_IMPORTS
