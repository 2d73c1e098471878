"""Command-line parsing of the fine-tuning commands (the chain itself is mocked out)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from preprocessing.settings import PreprocessSettings
from training.cli import app
from training.settings import TrainingSettings

WIDE = {"COLUMNS": "200"}


@pytest.fixture(autouse=True)
def dataset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A processed-dataset folder (summary.json is what the commands check for), as
    PREP_OUT_DIR: a fresh clone has none until the suite's data fixtures make one."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    (folder / "summary.json").write_text("{}")
    monkeypatch.setenv("PREP_OUT_DIR", str(folder))
    return folder


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    seen: dict = {}

    def fake_run_many(bases, recipe, data_dir, models_dir, backend, engine, command):
        seen.update(bases=bases, recipe=recipe, data_dir=data_dir, models_dir=models_dir,
                    backend=backend, engine=engine, command=command)
        after = {"accuracy": 0.9, "ece": 0.01}
        return [{"base_model": b, "before": {"accuracy": 0.5}, "after": after,
                 "total_seconds": 1.0, "merged_dir": f"/x/{b}/merged"} for b in bases]

    monkeypatch.setattr("training.run.run_many", fake_run_many)
    for name in ("TRAINING_MODELS_DIR", "TRAINING_BACKEND", "TRAINING_SCORING_ENGINE"):
        monkeypatch.delenv(name, raising=False)
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
    # Every other option falls back to its settings field's default.
    assert captured["models_dir"] == Path("models")
    assert captured["backend"] == "auto" and captured["engine"] == "auto"
    assert captured["data_dir"] == PreprocessSettings().out_dir


def test_bad_override_is_reported(captured: dict) -> None:
    result = CliRunner().invoke(app, ["run", "--set", "train.max_steps"], env=WIDE)
    assert result.exit_code == 2
    assert "--set wants key=value, got 'train.max_steps'" in result.output
    assert not captured  # nothing ran


def test_unknown_recipe_key_is_reported_without_a_traceback(captured: dict) -> None:
    result = CliRunner().invoke(app, ["run", "--set", "train.nope=1"], env=WIDE)
    assert result.exit_code == 2
    assert "unknown recipe key 'train.nope'" in result.output
    assert "Traceback" not in result.output and not captured


def test_invalid_setting_names_the_field(captured: dict) -> None:
    result = CliRunner().invoke(app, ["run", "--backend", "tpu"], env=WIDE)
    assert result.exit_code == 2
    assert "backend: Input should be 'auto', 'unsloth' or 'peft'" in result.output
    assert not captured


@pytest.mark.parametrize(("command", "flag", "field"), [
    ("run", "--backend", "backend"),
    ("run", "--models-dir", "models_dir"),
    ("evaluate", "--engine", "scoring_engine"),
])
def test_help_and_default_come_from_the_settings_field(command: str, flag: str,
                                                       field: str) -> None:
    out = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "400"}).output
    info = TrainingSettings.model_fields[field]
    line = next(line for line in out.splitlines() if line.lstrip("│ *").startswith(flag + " "))
    assert info.description in line
    assert f"(env TRAINING_{field.upper()})" in line
    assert f"[default: ({info.default})]" in line


def test_environment_sets_an_option_left_out(captured: dict, tmp_path: Path) -> None:
    env = {"TRAINING_BACKEND": "peft", "TRAINING_MODELS_DIR": str(tmp_path),
           "TRAINING_SCORING_ENGINE": "transformers", "PREP_OUT_DIR": str(tmp_path / "data")}
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 2 and "summary.json" in result.output
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "summary.json").write_text("{}")
    result = CliRunner().invoke(app, ["run"], env=env)
    assert result.exit_code == 0, result.output
    assert captured["backend"] == "peft" and captured["engine"] == "transformers"
    assert captured["models_dir"] == tmp_path and captured["data_dir"] == tmp_path / "data"
    # ... and the option, when given, wins over the environment.
    result = CliRunner().invoke(app, ["run", "--backend", "auto"], env=env)
    assert result.exit_code == 0, result.output
    assert captured["backend"] == "auto"


def test_every_command_explains_itself() -> None:
    for command in ("base-model", "finetune", "evaluate", "merge", "report", "run", "publish"):
        result = CliRunner().invoke(app, [command, "--help"], env=WIDE)
        assert result.exit_code == 0, (command, result.output)
        assert "Show this message" in result.output


def test_calibrate_refuses_an_unfinished_run_before_changing_anything(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "merged").mkdir(parents=True)
    (run_dir / "merged" / "manifest.json").write_text("{}")
    (run_dir / "run.json").write_text("{}")
    result = CliRunner().invoke(app, ["calibrate", str(run_dir)], env=WIDE)
    assert result.exit_code == 2
    assert "not a finished run directory" in result.output
    assert "eval_before.json" in result.output and "baselines.json" in result.output
    assert sorted(p.name for p in run_dir.rglob("*")) == ["manifest.json", "merged", "run.json"]


def test_calibrate_rejects_a_read_twice_budget_outside_0_1(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["calibrate", str(tmp_path), "--set",
                                      "eval.max_reread_share=2"], env=WIDE)
    assert result.exit_code == 2
    assert "max_reread_share" in result.output and "less than or equal to 1" in result.output


@pytest.mark.parametrize("extra", [["--template", "cancer-yn-short"], ["--template", ""],
                                   ["--adapter", "adapter"]])
def test_served_evaluation_refuses_an_adapter_or_a_template(extra: list[str],
                                                            tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path), "--served", *extra],
                                env=WIDE)
    assert result.exit_code == 2, result.output
    assert "--served reads a merged model with its own template" in result.output


def test_reread_below_needs_served_and_a_probability(tmp_path: Path) -> None:
    runner = CliRunner()
    alone = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--reread-below", "0.9"],
                          env=WIDE)
    assert alone.exit_code == 2 and "add --served" in alone.output
    above = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--served",
                                "--reread-below", "1.5"], env=WIDE)
    assert above.exit_code == 2 and "--reread-below" in above.output


def test_evaluate_passes_its_batch_size_and_refuses_zero(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    seen: dict = {}

    def fake_evaluate_split(model, data_dir, split, adapter, template, engine, limit, seed,
                            batch_size, title_only, served, reread_below):
        seen.update(batch_size=batch_size, engine=engine)
        metrics = {"n": 2, "accuracy": 1.0, "macro_f1": 1.0, "ece": 0.0, "roc_auc": None}
        return {"split": split, "metrics": metrics, "seconds": 0.1}

    monkeypatch.setattr("training.evaluate.evaluate_split", fake_evaluate_split)
    runner = CliRunner()
    ok = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--engine", "transformers",
                             "--batch-size", "4"], env=WIDE)
    assert ok.exit_code == 0, ok.output
    assert seen == {"batch_size": 4, "engine": "transformers"}
    assert '"accuracy": 1.0' in ok.output
    zero = runner.invoke(app, ["evaluate", "--model", str(tmp_path), "--batch-size", "0"],
                         env=WIDE)
    assert zero.exit_code == 2 and "--batch-size" in zero.output
