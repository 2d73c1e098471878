"""Resuming picks the newest complete checkpoint (a kill mid-save leaves an incomplete one)."""

from __future__ import annotations

from pathlib import Path

from training.finetune import last_checkpoint


def _checkpoint(root: Path, step: int, complete: bool) -> Path:
    path = root / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text("{}")
    return path


def test_newest_complete_checkpoint_wins(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2, complete=True)
    ten = _checkpoint(tmp_path, 10, complete=True)  # numeric order, not text order
    _checkpoint(tmp_path, 9, complete=True)
    _checkpoint(tmp_path, 12, complete=False)  # killed while saving
    assert last_checkpoint(tmp_path) == ten


def test_no_checkpoint(tmp_path: Path) -> None:
    assert last_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 1, complete=False)
    assert last_checkpoint(tmp_path) is None
