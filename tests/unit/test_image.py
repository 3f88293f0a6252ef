"""The image context: the model's requirements become the serving venv's."""

from __future__ import annotations

from pathlib import Path

from trainship.image import builder_for, serving_requirements


def test_mlflow_becomes_skinny_and_pins_stay(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text(
        "mlflow==3.17.2\ncloudpickle==3.1.1\n# a comment\nscikit-learn==1.9.1\n"
        "pandas==3.1.1\n")
    assert serving_requirements(tmp_path) == [
        "mlflow-skinny==3.17.2", "cloudpickle==3.1.1", "scikit-learn==1.9.1",
        "pandas==3.1.1", "numpy"]


def test_pyfunc_only_model_gets_what_scoring_imports(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow[extras]==3.17.2\ncloudpickle==3.1.1\n")
    assert serving_requirements(tmp_path) == [
        "mlflow-skinny==3.17.2", "cloudpickle==3.1.1", "numpy", "pandas"]


def test_builder_follows_the_target(monkeypatch) -> None:
    monkeypatch.setenv("TRAINSHIP_IMAGE_BUILDERS", "process=bundle,podman=podman")
    monkeypatch.setenv("TRAINSHIP_IMAGE_BUILDER", "docker")
    assert builder_for("podman") == "podman"
    assert builder_for("process") == "bundle"
    assert builder_for("") == "docker"
