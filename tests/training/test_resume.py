"""A fine-tune killed mid-run resumes from its last complete checkpoint and ends where an
uninterrupted run ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.recipe import RECIPES_DIR

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6  # two epochs of the smoke recipe's 12 papers in batches of 4


def _finetune_cmd(out: Path, models_dir: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "training", "finetune", "--recipe",
            str(RECIPES_DIR / "smoke.toml"), "--set", f"train.max_steps={STEPS}",
            "--set", "train.eval_steps=100", "--out", str(out), "--models-dir", str(models_dir),
            "--data-dir", str(data), *extra]


def _kill_after_checkpoint(cmd: list[str], checkpoint: Path, timeout: float = 600) -> None:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not (checkpoint / "trainer_state.json").exists():
            assert proc.poll() is None, "the fine-tune ended before its checkpoint"
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # a hard kill: no clean-up runs
        proc.wait()


def _losses(log: dict) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in log["log_history"] if "loss" in e}


def test_killed_finetune_resumes_from_its_checkpoint(
        smoke_models_dir: Path, processed_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    _kill_after_checkpoint(_finetune_cmd(out, smoke_models_dir, processed_dir),
                           out / "checkpoints" / "checkpoint-2")
    assert not (out / "adapter").exists()  # it really died mid-run
    done = subprocess.run(_finetune_cmd(out, smoke_models_dir, processed_dir, "--resume"),
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    log = json.loads((out / "train_log.json").read_text())
    resumed_at = int(log["resumed_from"].rsplit("-", 1)[1])
    assert 2 <= resumed_at < STEPS
    assert log["global_step"] == STEPS
    assert sorted(_losses(log)) == list(range(1, STEPS + 1))  # no step twice, none missing

    reference = tmp_path / "reference"
    subprocess.run(_finetune_cmd(reference, smoke_models_dir, processed_dir), cwd=ROOT,
                   check=True, capture_output=True, timeout=900)
    ref = json.loads((reference / "train_log.json").read_text())
    assert ref["resumed_from"] is None
    # Same data order, optimiser and scheduler state after the resume: the same losses.
    assert _losses(log) == pytest.approx(_losses(ref), rel=1e-3)
