"""Where the served model lives and what it says about itself (no torch needed)."""

from __future__ import annotations

import json
from pathlib import Path

from preprocessing.prompts import PromptRenderer
from preprocessing.settings import PROJECT_ROOT

LATEST = PROJECT_ROOT / "models" / "latest"
EMBEDDED_BASE = PROJECT_ROOT / "models" / "base" / "smollm2-135m-instruct"


def resolve_model_dir(explicit: Path | None = None) -> Path:
    """The explicit directory, else the newest fine-tuned model, else the embedded base model."""
    for candidate in (explicit, LATEST, EMBEDDED_BASE):
        if candidate is not None and (candidate / "config.json").exists():
            return candidate.resolve()
    if explicit is not None:
        raise FileNotFoundError(f"{explicit} is not a model directory (no config.json)")
    raise FileNotFoundError(
        "no model found: run `python -m training base-model` (or `make data`) first"
    )


def read_manifest(model_dir: Path) -> dict:
    path = model_dir / "manifest.json"
    if path.exists():
        return json.loads(path.read_text())
    # The untuned base model has no manifest: describe it from what is there.
    return {"name": model_dir.name, "version": "base", "base_model": model_dir.name}


def model_version(manifest: dict) -> str:
    return str(manifest.get("version") or manifest.get("name") or "unknown")


def load_renderer(model_dir: Path) -> PromptRenderer:
    return PromptRenderer.from_model_dir(model_dir)
