"""Same seed, same recipe: the same papers, the same losses, the same metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.data import load_papers
from training.evaluate import evaluate_split
from training.finetune import finetune
from training.recipe import Recipe

pytestmark = pytest.mark.slow


def _train_and_score(recipe: Recipe, base: Path, data: Path, out: Path) -> tuple[dict, dict]:
    result = finetune(recipe, base, data, out)
    log = json.loads((out / "train_log.json").read_text())
    scores = evaluate_split(base, data, "test", adapter=result.adapter_dir,
                            engine="transformers", limit=8, seed=recipe.seed)
    return log, scores


def test_same_seed_same_split_and_metrics(smoke_recipe: Recipe, base_model_dir: Path,
                                          processed_dir: Path, tmp_path: Path) -> None:
    log_a, eval_a = _train_and_score(smoke_recipe, base_model_dir, processed_dir, tmp_path / "a")
    log_b, eval_b = _train_and_score(smoke_recipe, base_model_dir, processed_dir, tmp_path / "b")
    assert log_a["train_ids"] == log_b["train_ids"] and len(log_a["train_ids"]) == 12
    losses = [[e.get("loss"), e.get("eval_loss")] for e in log_a["log_history"]]
    assert losses == [[e.get("loss"), e.get("eval_loss")] for e in log_b["log_history"]]
    assert [p["id"] for p in eval_a["predictions"]] == [p["id"] for p in eval_b["predictions"]]
    assert [p["p_cancer"] for p in eval_a["predictions"]] == \
        [p["p_cancer"] for p in eval_b["predictions"]]
    assert eval_a["metrics"] == eval_b["metrics"]


def test_another_seed_draws_other_papers(processed_dir: Path) -> None:
    a = [p.id for p in load_papers(processed_dir, "train", 12, seed=7)]
    assert a == [p.id for p in load_papers(processed_dir, "train", 12, seed=7)]
    assert a != [p.id for p in load_papers(processed_dir, "train", 12, seed=8)]
