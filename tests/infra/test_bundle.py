"""Issue 10 item 10: the Lambda code, bundled for real (pip for the Lambda platform, as
`make synth` does), stays well under Lambda's 250 MiB unzipped limit ("Lambda quotas":
deployment package size, unzipped, including layers) and carries no bytecode compiled
by this machine's interpreter (the runtime's Python 3.14 ignores cpython-311 .pyc)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.infra.helpers import Synth, synth
from trainship.pipeline import LAMBDA_STEPS

LIMIT = 250 * 1024 * 1024
WELL_UNDER = 200 * 1024 * 1024  # 80 %: room for a dependency to grow


@pytest.fixture(scope="session")
def bundled(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """One synth with the real local bundling (needs the package index; about 30 s)."""
    return synth(tmp_path_factory.mktemp("bundled"), lambdaBundling="local")


def _size(root: Path) -> int:
    total = 0
    for folder, _, files in os.walk(root):
        total += sum((Path(folder) / name).lstat().st_size for name in files)
    return total


def _asset_dirs(template: dict[str, Any], outdir: Path) -> dict[str, Path]:
    """function logical id -> the asset directory its code is zipped from."""
    found = {}
    for fid, res in template["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        key = res["Properties"]["Code"]["S3Key"]  # <asset hash>.zip
        found[fid] = outdir / f"asset.{key.removesuffix('.zip')}"
    return found


def test_every_lambda_bundle_is_well_under_the_unzipped_limit(bundled: Synth) -> None:
    _, template, outdir = bundled
    dirs = _asset_dirs(template, outdir)
    assert len(dirs) == len(LAMBDA_STEPS) + 1 == 14  # the pipeline's functions and the API's
    for fid, directory in dirs.items():
        assert (directory / "lambdas").is_dir() and (directory / "trainship").is_dir(), fid
        assert (directory / "mlflow").is_dir() and (directory / "kubernetes").is_dir(), fid
        size = _size(directory)
        assert size < WELL_UNDER < LIMIT, f"{fid}: {size / 2**20:.0f} MiB unzipped"


def test_bundle_has_no_host_bytecode(bundled: Synth) -> None:
    _, template, outdir = bundled
    for directory in set(_asset_dirs(template, outdir).values()):
        compiled = [p for p in directory.rglob("*.pyc")]
        assert compiled == [], compiled[:5]
        assert not list(directory.rglob("__pycache__"))
