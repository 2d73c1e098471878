"""Fixtures of the fine-tuning tests: one smoke run of the whole chain per session (a handful of
papers, three steps), shared by the tests that inspect what it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.recipe import RECIPES_DIR, Recipe, load_recipe

SMOKE_RECIPE = RECIPES_DIR / "smoke.toml"


@pytest.fixture(scope="session")
def smoke_recipe() -> Recipe:
    return load_recipe(SMOKE_RECIPE)


@pytest.fixture(scope="session")
def smoke_models_dir(tmp_path_factory: pytest.TempPathFactory, base_model_dir: Path) -> Path:
    """A models/ folder whose base/ is the session's materialised base model."""
    models = tmp_path_factory.mktemp("models")
    (models / "base").mkdir()
    (models / "base" / base_model_dir.name).symlink_to(base_model_dir)
    return models


@pytest.fixture(scope="session")
def smoke_run(smoke_recipe: Recipe, smoke_models_dir: Path, processed_dir: Path) -> dict:
    """`python -m training run` in miniature: baselines, evaluate, fine-tune, merge, evaluate
    the merged model with vLLM, manifest, report, models/latest."""
    from training.base_model import EMBEDDED
    from training.run import run_chain

    run = run_chain(EMBEDDED, smoke_recipe, processed_dir, smoke_models_dir, run_name="smoke",
                    command="pytest smoke run")
    return {**run, "run_dir": smoke_models_dir / "runs" / "smoke",
            "models_dir": smoke_models_dir}
