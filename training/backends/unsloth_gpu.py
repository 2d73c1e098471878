"""unsloth: 4-bit base and fused kernels on an NVIDIA GPU. Imported only when chosen (importing
unsloth without a GPU fails, and it patches transformers/trl when imported)."""

from __future__ import annotations

from pathlib import Path

from hardware.precision import Precision, PrecisionChoice
from training.backends import TrainingModel, lora_kwargs
from training.recipe import Recipe


def load(base_dir: Path | str, recipe: Recipe, max_seq_length: int,
         precision: PrecisionChoice) -> TrainingModel:
    # unsloth must be imported before transformers/trl build their classes to patch them
    # (torch first is fine).
    import torch
    from unsloth import FastLanguageModel

    # unsloth computes in bf16 or fp16 only; None lets it pick (the same rule) for fp32.
    dtype = {Precision.BF16: torch.bfloat16, Precision.FP16: torch.float16}.get(
        precision.precision)
    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=max_seq_length,
        dtype=dtype,
        load_in_4bit=True,
    )
    num_layers = model.config.num_hidden_layers
    model = FastLanguageModel.get_peft_model(
        model,
        **lora_kwargs(recipe, num_layers),
        use_gradient_checkpointing="unsloth",
        random_state=recipe.seed,
        use_rslora=False,
        loftq_config=None,
    )
    return TrainingModel(model, tokenizer, "unsloth", precision=precision, use_cpu=False)
