"""The recipe file loads and validates; mistakes in it fail loudly."""

from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from model_contract.prompts import TEMPLATES
from training.recipe import DEFAULT_RECIPE, RECIPES_DIR, Recipe, load_recipe


def test_default_recipe_loads_with_its_values() -> None:
    recipe = load_recipe()
    raw = tomllib.loads(DEFAULT_RECIPE.read_text())
    assert recipe.name == "smollm2-135m"
    assert recipe.base_model == "embedded:smollm2-135m-instruct"
    assert recipe.template in TEMPLATES
    assert recipe.template == raw["template"]
    assert recipe.lora.r == raw["lora"]["r"] and recipe.lora.alpha == raw["lora"]["alpha"]
    assert recipe.train.learning_rate == raw["train"]["learning_rate"]
    assert recipe.train.epochs == raw["train"]["epochs"]
    assert recipe.train.max_steps == -1  # the default recipe trains whole epochs


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_recipe_validates(path) -> None:
    assert isinstance(load_recipe(path), Recipe)


def _raw() -> dict:
    return tomllib.loads(DEFAULT_RECIPE.read_text())


def test_unknown_key_is_rejected() -> None:
    raw = _raw()
    raw["train"]["learning_rte"] = 1e-3
    with pytest.raises(ValidationError, match="learning_rte"):
        Recipe.model_validate(raw)


def test_unknown_template_is_rejected() -> None:
    raw = _raw() | {"template": "no-such-template"}
    with pytest.raises(ValidationError, match="unknown prompt template"):
        Recipe.model_validate(raw)


@pytest.mark.parametrize(("key", "value"), [("lora.r", 0), ("train.learning_rate", -1.0),
                                            ("lora.dropout", 1.5), ("train.batch_size", 0),
                                            ("data.reread_share", 1.5),
                                            ("train.sampling", "by_label"),
                                            ("train.label_weights", {"cancer": 0.0}),
                                            ("train.label_weights", {"tumour": 2.0}),
                                            ("train.loraplus_lr_ratio", 0.5)])
def test_out_of_range_values_are_rejected(key: str, value: float) -> None:
    with pytest.raises(ValidationError):
        load_recipe(None, {key: value})


def test_label_weights_default_to_none_and_load_from_set() -> None:
    assert load_recipe().train.label_weights == {}
    assert load_recipe(None, {"train.label_weights": {"cancer": 2.0}}).train.label_weights == {
        "cancer": 2.0}


def test_overrides_replace_values_and_revalidate() -> None:
    recipe = load_recipe(None, {"train.max_steps": 4, "seed": 3})
    assert recipe.train.max_steps == 4 and recipe.seed == 3
    assert recipe.lora == load_recipe().lora  # the rest is untouched
    with pytest.raises(KeyError, match="train.nope"):
        load_recipe(None, {"train.nope": 1})


def test_default_recipe_trains_on_catalogued_sources() -> None:
    """Recipes are data tested against the code: every source a shipped recipe names is one
    the dataset stage knows, so a typo cannot silently train without it."""
    from preprocessing.sources import catalogue

    for path in RECIPES_DIR.glob("*.toml"):
        assert set(load_recipe(path).data.sources) <= set(catalogue()), path.name
    assert set(load_recipe().data.sources) == {"assignment", "ohsumed"}


@pytest.mark.parametrize("sampling", ["random", "group_by_length"])
def test_the_trainer_gets_the_recipe_values(tmp_path, sampling: str) -> None:
    from hardware.precision import Precision, PrecisionChoice
    from training.backends import TrainingModel
    from training.finetune import sft_config

    recipe = load_recipe(None, {"train.sampling": sampling})
    fp32 = PrecisionChoice(Precision.FP32, "cpu", "test CPU", "no native bf16")
    args = sft_config(recipe, TrainingModel(None, None, "peft", fp32, True), tmp_path)
    assert args.train_sampling_strategy == sampling
    assert args.num_train_epochs == recipe.train.epochs
    assert args.per_device_train_batch_size == recipe.train.batch_size
    assert args.learning_rate == recipe.train.learning_rate
    assert not args.bf16 and not args.fp16


def _tiny_lora_model():
    import torch
    from peft import LoraConfig, get_peft_model

    base = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    return get_peft_model(base, LoraConfig(r=2, lora_alpha=4, target_modules=["0", "2"]))


def test_loraplus_gives_the_b_matrices_the_ratio_times_the_rate() -> None:
    from training.finetune import loraplus_optimizer

    model = _tiny_lora_model()
    assert loraplus_optimizer(model, load_recipe()) is None  # the trainer's own AdamW
    recipe = load_recipe(None, {"train.loraplus_lr_ratio": 16.0, "train.learning_rate": 5e-4})
    optimizer = loraplus_optimizer(model, recipe)
    names = {id(p): n for n, p in model.named_parameters()}
    rates = {names[id(p)]: g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert rates and all(
        rate == (8e-3 if "lora_B" in name else 5e-4) for name, rate in rates.items())
    assert sum("lora_B" in n for n in rates) == sum("lora_A" in n for n in rates) == 2


def _with_profile(profile: dict) -> dict:
    return _raw() | {"on_precision": {"float32": profile}}


def test_a_precision_profile_applies_only_to_its_precision() -> None:
    recipe = Recipe.model_validate(_with_profile({"train.max_steps": 7, "eval.batch_size": 4}))
    fp32 = recipe.for_precision("float32")
    assert fp32.train.max_steps == 7 and fp32.eval.batch_size == 4
    assert fp32.lora == recipe.lora and fp32.train.epochs == recipe.train.epochs
    assert recipe.for_precision("bfloat16") == recipe
    assert recipe.for_precision("float16") == recipe


def test_set_overrides_win_over_the_profile(tmp_path) -> None:
    path = tmp_path / "r.toml"
    path.write_text('''name = "tiny"
base_model = "embedded:smollm2-135m-instruct"
template = "cancer-yn-short"
[lora]
target_modules = ["q_proj"]
[train]
learning_rate = 1e-3
epochs = 1
[on_precision.float32]
"train.max_steps" = 7
''')
    assert load_recipe(path, precision="float32").train.max_steps == 7
    assert load_recipe(path, {"train.max_steps": 3}, "float32").train.max_steps == 3
    assert load_recipe(path).train.max_steps == -1  # no precision given: no profile


@pytest.mark.parametrize(("profile", "message"), [
    ({"train.nope": 1}, "on_precision.float32: unknown recipe key 'train.nope'"),
    ({"nope.max_steps": 1}, "unknown recipe key 'nope.max_steps'"),
    ({"train.max_steps": "many"}, "on_precision.float32"),
    ({"lora.r": 0}, "greater than 0")])
def test_a_broken_profile_fails_when_the_recipe_loads(profile: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Recipe.model_validate(_with_profile(profile))


def test_shipped_profiles_set_what_they_name() -> None:
    """Recipes are data tested against the code: each shipped profile applies cleanly and
    every key it names ends up with its value."""
    for path in sorted(RECIPES_DIR.glob("*.toml")):
        recipe = load_recipe(path)
        for precision, overrides in recipe.on_precision.items():
            applied = recipe.for_precision(precision).model_dump()
            for dotted, value in overrides.items():
                node = applied
                for key in dotted.split("."):
                    node = node[key]
                assert node == value, (path.name, precision, dotted)
