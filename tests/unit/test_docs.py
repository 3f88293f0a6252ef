"""Docs stay in step with code: every error name is in docs/troubleshooting.md."""

from __future__ import annotations

from pathlib import Path

from trainship import errors
from trainship.deployments import INTERRUPTED

DOC = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()


def test_every_error_name_is_documented() -> None:
    names = {cls.__name__ for cls in vars(errors).values()
             if isinstance(cls, type) and issubclass(cls, errors.TrainshipError)
             and cls is not errors.TrainshipError}
    assert names == set(errors.ERRORS)
    names.add(INTERRUPTED)
    missing = [n for n in sorted(names) if f"`{n}`" not in DOC]
    assert not missing, missing


def test_every_error_has_its_own_help() -> None:
    helps = [cls.help_text for cls in errors.ERRORS.values()]
    assert len(set(helps)) == len(helps)
    assert all(len(h) > 40 for h in helps)
