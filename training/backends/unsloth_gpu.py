"""unsloth: 4-bit base and fused kernels on an NVIDIA GPU. Imported only when chosen (importing
unsloth without a GPU fails, and it patches transformers/trl when imported)."""

from __future__ import annotations

from pathlib import Path

from training.backends import TrainingModel, lora_kwargs
from training.recipe import Recipe


def load(base_dir: Path | str, recipe: Recipe, max_seq_length: int) -> TrainingModel:
    # unsloth must be imported before transformers/trl build their classes to patch them.
    from unsloth import FastLanguageModel, is_bfloat16_supported

    model, tokenizer = FastLanguageModel.from_pretrained(
        model_name=str(base_dir),
        max_seq_length=max_seq_length,
        dtype=None,  # unsloth picks bf16 where supported, else fp16
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
    bf16 = recipe.train.bf16 and is_bfloat16_supported()
    return TrainingModel(model, tokenizer, "unsloth", bf16=bf16, use_cpu=False)
