"""Test modules share code through tests/helpers.py (and fixtures through conftest.py),
never by importing another test module or a conftest."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def forbidden(module: str) -> bool:
    last = module.rsplit(".", 1)[-1]
    return module.startswith("tests.") and (last == "conftest" or last.startswith("test_"))


def test_no_test_module_imports_another_or_a_conftest() -> None:
    found = {f"{path.relative_to(REPO)}: {module}"
             for path in (REPO / "tests").rglob("*.py")
             for module in imported_modules(path) if forbidden(module)}
    assert not found, sorted(found)


def test_the_check_sees_such_an_import(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text("from tests.e2e.conftest import deploy\nimport tests.unit.test_steps\n"
                      "from tests.helpers import deploy\n")
    assert {m for m in imported_modules(module) if forbidden(m)} == {
        "tests.e2e.conftest", "tests.unit.test_steps"}
