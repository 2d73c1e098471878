"""peft + trl: the backend for machines without an NVIDIA GPU (and the reference path)."""

from __future__ import annotations

from pathlib import Path

from training.backends import TrainingModel, lora_kwargs
from training.recipe import Recipe


def bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def load(base_dir: Path | str, recipe: Recipe, max_seq_length: int) -> TrainingModel:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed

    set_seed(recipe.seed)  # the LoRA initialisation draws from it
    use_cpu = not torch.cuda.is_available()
    # fp32 master weights; bf16 enters through autocast only, which keeps the optimiser exact.
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.config.use_cache = False
    config = LoraConfig(task_type="CAUSAL_LM",
                        **lora_kwargs(recipe, model.config.num_hidden_layers))
    peft_model = get_peft_model(model, config)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    bf16 = recipe.train.bf16 and bf16_supported()
    return TrainingModel(peft_model, tokenizer, "peft", bf16=bf16, use_cpu=use_cpu)
