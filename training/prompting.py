"""The prompt renderer of a base model: from its directory, or built from its HF tokenizer."""

from __future__ import annotations

from pathlib import Path

from model_contract.layout import load_renderer
from model_contract.prompts import FRAME_FILE, PromptRenderer, chat_frame, get_template


def renderer_for(model: Path | str, template: str | None = None) -> PromptRenderer:
    """A model directory with `prompt_frame.json` renders on its own; anything else (a hub id,
    a directory written by other tools) gets its frame from its transformers tokenizer."""
    if Path(model).is_dir() and (Path(model) / FRAME_FILE).exists():
        return load_renderer(Path(model), template)
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    hf_tokenizer = AutoTokenizer.from_pretrained(model)
    fast = Tokenizer.from_str(hf_tokenizer.backend_tokenizer.to_str())
    chosen = get_template(template) if template else get_template()
    return PromptRenderer(chosen, chat_frame(hf_tokenizer), fast)
