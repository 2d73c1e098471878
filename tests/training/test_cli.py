"""Command-line parsing of the fine-tuning commands (the chain itself is mocked out)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}

    def fake_run_many(bases, recipe, data_dir, models_dir, backend, engine, command):
        seen.update(bases=bases, recipe=recipe, models_dir=models_dir, backend=backend,
                    engine=engine, command=command)
        after = {"accuracy": 0.9, "ece": 0.01}
        return [{"base_model": b, "before": {"accuracy": 0.5}, "after": after,
                 "total_seconds": 1.0, "merged_dir": f"/x/{b}/merged"} for b in bases]

    monkeypatch.setattr("training.run.run_many", fake_run_many)
    return seen


def test_run_takes_several_models_and_overrides(captured: dict, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", "--models", "a", "b", "--set", "train.max_steps=2",
                                      "--set", "template=cancer-yn", "--models-dir",
                                      str(tmp_path), "--backend", "peft"])
    assert result.exit_code == 0, result.output
    assert captured["bases"] == ["a", "b"]
    assert captured["recipe"].train.max_steps == 2
    assert captured["recipe"].template == "cancer-yn"
    assert captured["backend"] == "peft" and captured["models_dir"] == tmp_path
    assert "a: accuracy 0.500 -> 0.900, ECE 0.010" in result.output
    assert "total wall time" in result.output


def test_run_defaults_to_the_recipe_base_model(captured: dict) -> None:
    result = CliRunner().invoke(app, ["run"])
    assert result.exit_code == 0, result.output
    assert captured["bases"] == ["embedded:smollm2-135m-instruct"]


def test_bad_override_is_reported(captured: dict) -> None:
    result = CliRunner().invoke(app, ["run", "--set", "train.max_steps"])
    assert result.exit_code != 0
