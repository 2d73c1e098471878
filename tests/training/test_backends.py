"""Backend choice: peft on a machine without an NVIDIA GPU, and unsloth never imported there."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training.backends import choose_backend, has_nvidia_gpu, lora_kwargs
from training.recipe import load_recipe

no_gpu = pytest.mark.skipif(has_nvidia_gpu(), reason="checks the CPU path")


@no_gpu
def test_auto_picks_peft_without_a_gpu() -> None:
    assert choose_backend("auto") == "peft"
    assert choose_backend("peft") == "peft"


@no_gpu
def test_forcing_unsloth_without_a_gpu_fails_early() -> None:
    with pytest.raises(RuntimeError, match="NVIDIA GPU"):
        choose_backend("unsloth")


@no_gpu
def test_cpu_path_never_imports_unsloth() -> None:
    code = (
        "import sys\n"
        "import training.cli, training.finetune, training.run, training.merge\n"
        "import training.backends.peft_cpu, training.scoring.transformers_forward\n"
        "from training.backends import choose_backend\n"
        "assert choose_backend('auto') == 'peft'\n"
        "print(sorted(m for m in sys.modules if 'unsloth' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_top_layers_become_the_last_layer_indices() -> None:
    recipe = load_recipe(None, {"lora.top_layers": 3})
    kwargs = lora_kwargs(recipe, num_layers=30)
    assert kwargs["layers_to_transform"] == [27, 28, 29]
    assert kwargs["r"] == recipe.lora.r and kwargs["lora_alpha"] == recipe.lora.alpha
    assert "layers_to_transform" not in lora_kwargs(load_recipe(None, {"lora.top_layers": None}),
                                                    num_layers=30)
