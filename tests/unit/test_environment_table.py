"""docs/environment.md stays in step with the code: every ``TRAINSHIP_*`` variable the
sources mention has a row, and the doc names no variable the sources no longer mention."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "environment.md"
SOURCE_DIRS = ("trainship", "lambdas", "infra", "buildspecs")
SOURCE_SUFFIXES = (".py", ".yml", ".yaml", ".json")
NAME = re.compile(r"\bTRAINSHIP_[A-Z0-9_]+\b")


def source_names() -> dict[str, list[str]]:
    """Each ``TRAINSHIP_*`` name in the sources, with the files that mention it."""
    names: dict[str, list[str]] = {}
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*")):
            if not path.is_file() or path.suffix not in SOURCE_SUFFIXES \
                    or "__pycache__" in path.parts:
                continue
            for name in set(NAME.findall(path.read_text(errors="replace"))):
                names.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return names


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row, header and separator rows left out."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if all(set(cell) <= set("-: ") for cell in cells) or cells[0] == "name":
            continue
        rows.append(cells)
    return rows


def documented_names(text: str) -> list[str]:
    """The ``TRAINSHIP_*`` names in the first column (one per row), duplicates kept."""
    return [name for cells in table_rows(text) for name in NAME.findall(cells[0])]


def test_the_table_parses() -> None:
    rows = table_rows(DOC.read_text())
    assert len(rows) > 40
    assert all(len(cells) == 4 and all(cells) for cells in rows), \
        [cells for cells in rows if len(cells) != 4 or not all(cells)]
    names = documented_names(DOC.read_text())
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_every_variable_in_the_code_has_a_row() -> None:
    documented = set(documented_names(DOC.read_text()))
    missing = {name: files for name, files in source_names().items() if name not in documented}
    assert not missing, f"add a row to docs/environment.md for: {missing}"


def test_the_doc_names_no_variable_the_code_dropped() -> None:
    mentioned = set(NAME.findall(DOC.read_text()))
    stale = sorted(mentioned - set(source_names()))
    assert not stale, f"no source mentions these any more; drop them from the doc: {stale}"


def test_the_check_catches_a_missing_row() -> None:
    text = DOC.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| `TRAINSHIP_API`"))
    names = set(documented_names(text.replace(row + "\n", "")))
    assert "TRAINSHIP_API" not in names
    assert "TRAINSHIP_API" in source_names()
