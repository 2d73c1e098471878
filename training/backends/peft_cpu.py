"""peft + trl: the backend for machines without an NVIDIA GPU (and the reference path)."""

from __future__ import annotations

from pathlib import Path

from hardware.precision import PrecisionChoice
from training.backends import TrainingModel, lora_kwargs
from training.recipe import Recipe


def load(base_dir: Path | str, recipe: Recipe, max_seq_length: int,
         precision: PrecisionChoice) -> TrainingModel:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(recipe.seed)  # the LoRA initialisation draws from it
    use_cpu = not torch.cuda.is_available()
    # fp32 master weights; a lower precision enters through autocast only, which keeps the
    # optimiser exact.
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.config.use_cache = False
    config = LoraConfig(task_type="CAUSAL_LM",
                        **lora_kwargs(recipe, model.config.num_hidden_layers))
    peft_model = get_peft_model(model, config)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    return TrainingModel(peft_model, tokenizer, "peft", precision=precision, use_cpu=use_cpu)
