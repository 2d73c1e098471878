"""The fine-tuning recipe: every hyper-parameter lives in a TOML file, validated here."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from model_contract.prompts import TEMPLATES
from preprocessing.papers import LABELS
from training.calibration import DEFAULT_MAX_REREAD_SHARE

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = RECIPES_DIR / "smollm2-135m.toml"


class _Strict(BaseModel):
    # A typo in a recipe must fail loudly, not fall back to a default.
    model_config = ConfigDict(extra="forbid", frozen=True)


class LoraSpec(_Strict):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)
    # Adapt only the top N decoder layers: backward then stops there, which is what makes
    # CPU training cheap. None = every layer.
    top_layers: int | None = Field(None, gt=0)


class TrainSpec(_Strict):
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["constant", "linear", "cosine", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    epochs: float = Field(gt=0)
    batch_size: int = Field(8, gt=0)
    grad_accum: int = Field(1, gt=0)
    max_grad_norm: float = Field(1.0, gt=0)
    max_examples: int | None = Field(None, gt=0, description="Balanced subset of train")
    max_eval_examples: int | None = Field(None, gt=0, description="Balanced subset of validation")
    max_steps: int = Field(-1, description="Stop after this many steps (-1: run all epochs)")
    eval_steps: int = Field(20, gt=0)
    save_steps: int = Field(20, gt=0)
    logging_steps: int = Field(5, gt=0)
    append_eos: bool = Field(False, description="Also train the end-of-turn token after the answer")
    # group_by_length batches prompts of like length together (transformers' LengthGroupedSampler):
    # with whole-abstract examples in the mix, a random batch pads every prompt to the longest.
    sampling: Literal["random", "group_by_length"] = "random"
    # Cost-sensitive loss: label -> weight of its answer (others 1), e.g. {cancer = 2.0} to buy
    # cancer recall with precision. CPU (peft) backend only.
    label_weights: dict[Literal[LABELS], PositiveFloat] = Field(default_factory=dict)
    # LoRA+ (Hayou et al. 2024, arXiv 2402.12354): the B matrices learn this many times faster
    # than the A matrices (which use learning_rate). None: one learning rate for both.
    loraplus_lr_ratio: float | None = Field(None, ge=1)


class SourceSampling(_Strict):
    """How many of a source's train papers to train on, and with which label mix."""

    max_train: int | None = Field(None, gt=0, description="Cap on this source's train papers")
    balance: Literal["balanced", "natural"] = Field(
        "balanced", description="balanced: as even across labels as the source allows; "
        "natural: the source's own label shares (a stratified sample)")
    # Weighting a source without paying for more steps: with train.epochs = 1, repeat = 2
    # shows these papers twice while another source's papers are each seen once.
    repeat: int = Field(1, gt=0, description="Times each sampled paper is trained on per epoch")


class DataSpec(_Strict):
    # Empty: every source in the dataset, all its train papers, balanced (one source = the
    # behaviour before sources existed). A named source missing from the dataset is skipped
    # with a warning, so a recipe naming extra sources still runs on the 800 papers alone.
    sources: dict[str, SourceSampling] = Field(default_factory=dict)
    # Serving reads a cut paper a second time, whole, when the capped read is unsure. A model
    # trained on capped prompts only has never seen that prompt; this share of the cut train
    # papers is also trained on as the second read renders it (each costs ~2.7x a capped one).
    reread_share: float = Field(0.0, ge=0, le=1, description="Share of cut train papers also "
                                "trained on as the whole-abstract second read")


class EvalSpec(_Strict):
    batch_size: int = Field(16, gt=0)
    max_examples: int | None = Field(None, gt=0, description="Balanced subset of the split")
    # The untuned base model's reading is a reference only, and reading every test paper costs
    # as much as a sixth of the run on a CPU without native bf16.
    before_max_per_source: int | None = Field(
        None, gt=0, description="Test papers per source the base model reads (a stratified "
        "sample keeping each label's share); None = all")
    max_validation_per_source: int | None = Field(
        None, gt=0, description="Validation papers per source read to fit the calibration "
        "(stratified as above); None = all")
    max_reread_share: float = Field(
        DEFAULT_MAX_REREAD_SHARE, gt=0, le=1,
        description="Share of validation papers the second-read threshold may read twice: a "
        "second read costs about 2.7 capped reads, so this is the serving budget")


class Recipe(_Strict):
    name: str
    base_model: str
    template: str
    seed: int = 42
    lora: LoraSpec
    train: TrainSpec
    data: DataSpec = DataSpec()
    eval: EvalSpec = EvalSpec()
    # Dotted overrides (as `--set`) applied when training computes in that precision: a CPU
    # without native bf16 trains in fp32, about 3x slower per step, so its time budget buys
    # fewer steps and reads. `for_precision` applies them; `load_recipe` does when told.
    on_precision: dict[Literal["bfloat16", "float16", "float32"], dict[str, Any]] = Field(
        default_factory=dict)

    @field_validator("template")
    @classmethod
    def _known_template(cls, name: str) -> str:
        if name not in TEMPLATES:
            raise ValueError(f"unknown prompt template {name!r}; known: {sorted(TEMPLATES)}")
        return name

    @model_validator(mode="after")
    def _profiles_apply(self) -> Recipe:
        # A typo in a profile must fail when the recipe loads, not on the one machine kind
        # that applies it.
        for precision, overrides in self.on_precision.items():
            try:
                data = self._overridden(overrides)
            except KeyError as err:
                raise ValueError(f"on_precision.{precision}: {err.args[0]}") from None
            try:
                Recipe.model_validate({**data, "on_precision": {}})
            except ValidationError as err:
                raise ValueError(f"on_precision.{precision}: {err}") from None
        return self

    def for_precision(self, precision: str) -> Recipe:
        """This recipe with the overrides of `precision` (e.g. "float32") applied, if any."""
        overrides = self.on_precision.get(precision)
        return self.with_overrides(overrides) if overrides else self

    def with_overrides(self, overrides: dict[str, Any]) -> Recipe:
        """Dotted keys (`train.max_steps`) replace values; the result is validated again."""
        return Recipe.model_validate(self._overridden(overrides))

    def _overridden(self, overrides: dict[str, Any]) -> dict[str, Any]:
        data = self.model_dump()
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = data
            for key in parents:
                if not isinstance(node.get(key), dict):
                    raise KeyError(f"unknown recipe key {dotted!r}")
                node = node[key]
            if leaf not in node:
                raise KeyError(f"unknown recipe key {dotted!r}")
            node[leaf] = value
        return data


def load_recipe(path: Path | None = None, overrides: dict[str, Any] | None = None,
                precision: str | None = None) -> Recipe:
    """The recipe at `path` (default: the shipped SmolLM2 one), then its `on_precision`
    profile for `precision` (None: no profile), then `overrides` (dotted keys).

    Raises KeyError on an unknown dotted key, pydantic's ValidationError on a bad value."""
    with open(path or DEFAULT_RECIPE, "rb") as f:
        recipe = Recipe.model_validate(tomllib.load(f))
    if precision:
        recipe = recipe.for_precision(precision)
    return recipe.with_overrides(overrides) if overrides else recipe
