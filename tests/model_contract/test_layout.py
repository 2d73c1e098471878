"""Which model a command runs when it is given one, and when it is not."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest

from model_contract import layout


def _model(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / layout.CONFIG_FILE).write_text("{}")
    return path


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A models folder with a fine-tuned model behind `latest` and the embedded base model."""
    _model(tmp_path / "runs" / "r1" / "merged")
    (tmp_path / "latest").symlink_to(tmp_path / "runs" / "r1" / "merged")
    _model(layout.embedded_base_dir(tmp_path))
    monkeypatch.setattr(layout, "LATEST", tmp_path / "latest")
    monkeypatch.setattr(layout, "embedded_base_dir", partial(layout.embedded_base_dir, tmp_path))
    return tmp_path


def test_an_explicit_model_is_the_one_run(models: Path) -> None:
    base = layout.embedded_base_dir()
    assert layout.resolve_model_dir(base) == base.resolve()


def test_an_explicit_folder_that_is_no_model_is_refused_not_replaced(models: Path) -> None:
    # Seen: `--model models/base` (the folder above the model) silently ran models/latest.
    with pytest.raises(FileNotFoundError, match="is not a model directory"):
        layout.resolve_model_dir(models / "base")


def test_without_one_the_newest_fine_tuned_model_then_the_base_model(models: Path) -> None:
    assert layout.resolve_model_dir() == (models / "runs" / "r1" / "merged").resolve()
    (models / "latest").unlink()
    assert layout.resolve_model_dir() == layout.embedded_base_dir().resolve()
    for config in models.rglob(layout.CONFIG_FILE):
        config.unlink()
    with pytest.raises(FileNotFoundError, match="no model found"):
        layout.resolve_model_dir()
