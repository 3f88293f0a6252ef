"""`make bench` rewrites docs/benchmarks.md's measured part and keeps its hand-written
part (the AWS section) as it is."""

from __future__ import annotations

from pathlib import Path

from bench.serving_bench import HAND_WRITTEN, hand_written

REPO = Path(__file__).resolve().parents[2]


def test_the_hand_written_part_is_kept_from_its_heading_on(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    assert hand_written(report) == ""  # no report yet
    report.write_text(f"# Benchmarks\n\n| measured | 1 |\n\n{HAND_WRITTEN}\n\nby hand\n")
    assert hand_written(report) == f"{HAND_WRITTEN}\n\nby hand\n"
    report.write_text("# Benchmarks\n\nno hand-written part\n")
    assert hand_written(report) == ""


def test_the_docs_have_the_hand_written_part() -> None:
    assert HAND_WRITTEN in hand_written(REPO / "docs" / "benchmarks.md")
