"""Training backends behind one recipe: `unsloth` (NVIDIA GPU, 4-bit base) or `peft` (+ trl on
CPU). Both return a peft-wrapped model whose adapter is a standard peft adapter, so merge and
evaluation do not care which one trained it. unsloth is imported only by its own module."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hardware.precision import PrecisionChoice
from training.recipe import Recipe

log = logging.getLogger(__name__)

BackendName = Literal["auto", "unsloth", "peft"]


@dataclass
class TrainingModel:
    model: Any  # a peft model ready for trl's SFTTrainer
    tokenizer: Any
    backend: str
    precision: PrecisionChoice  # autocast precision; master weights stay fp32
    use_cpu: bool


def has_nvidia_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and torch.version.cuda is not None


def choose_backend(requested: BackendName = "auto") -> str:
    """`auto`: unsloth on an NVIDIA GPU where it is installed, else peft. A forced backend
    that cannot run here fails now rather than mid-way."""
    unsloth_installed = importlib.util.find_spec("unsloth") is not None
    if requested == "peft":
        return "peft"
    if requested == "unsloth":
        if not has_nvidia_gpu():
            raise RuntimeError("the unsloth backend needs an NVIDIA GPU")
        if not unsloth_installed:
            raise RuntimeError("the unsloth backend needs `pip install .[train-gpu]`")
        return "unsloth"
    if has_nvidia_gpu() and unsloth_installed:
        return "unsloth"
    if has_nvidia_gpu():
        log.warning("NVIDIA GPU found but unsloth is not installed: training with peft")
    return "peft"


def lora_kwargs(recipe: Recipe, num_layers: int) -> dict[str, Any]:
    """LoRA settings shared by both backends (peft.LoraConfig and unsloth take these names)."""
    spec = recipe.lora
    kwargs: dict[str, Any] = {
        "r": spec.r,
        "lora_alpha": spec.alpha,
        "lora_dropout": spec.dropout,
        "target_modules": list(spec.target_modules),
        "bias": "none",
    }
    if spec.top_layers is not None and spec.top_layers < num_layers:
        kwargs["layers_to_transform"] = list(range(num_layers - spec.top_layers, num_layers))
    return kwargs


def load_for_training(backend: str, base_dir: Path | str, recipe: Recipe,
                      max_seq_length: int, precision: PrecisionChoice) -> TrainingModel:
    if backend == "unsloth":
        from training.backends.unsloth_gpu import load
    else:
        from training.backends.peft_cpu import load
    return load(base_dir, recipe, max_seq_length, precision)
