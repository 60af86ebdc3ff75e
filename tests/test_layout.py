"""Product code does not live in tests/: nothing outside tests/ imports from it, and no make target runs it
but pytest. (The tests import the product and tools/, never the other way round.)"""

import ast
import subprocess
from pathlib import PurePosixPath

from service.config import PROJECT_ROOT


def python_files_outside_tests() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if not name.startswith("tests/")]


def imported_modules(path: str) -> set[str]:
    """Every module `path` imports, relative imports resolved against its package."""
    package = PurePosixPath(path).parent.parts
    modules = set()
    for node in ast.walk(ast.parse((PROJECT_ROOT / path).read_text(), path)):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            modules.add(".".join([*base, *([node.module] if node.module else [])]))
    return modules


def test_no_module_outside_tests_imports_from_tests():
    files = python_files_outside_tests()
    # The walk sees the service, the SQL and migrations packages, bench/ and tools/.
    assert {"service/app.py", "sql/__init__.py", "bench/ha.py", "tools/ha/cluster.py", "tools/ha/run.py"} <= set(files)
    assert any(name.startswith("migrations/") for name in files)
    offending = sorted(f"{path}: {module}" for path in files for module in imported_modules(path)
                       if module == "tests" or module.startswith("tests."))
    assert offending == []


def test_relative_imports_are_resolved_against_the_package():
    assert imported_modules("tools/ha/run.py") >= {"tools.ha.cluster", "service.migrations"}


def test_no_make_target_runs_a_module_of_tests():
    assert "-m tests" not in (PROJECT_ROOT / "Makefile").read_text()
