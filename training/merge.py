"""Merge a LoRA adapter into its base weights: a bf16 directory vLLM serves as it is, with the
tokenizer, generation config, prompt frame and a manifest saying where it came from."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from model_contract.layout import SERVED_NAME
from model_contract.manifest import (
    Calibration,
    DatasetRef,
    Manifest,
    PromptRef,
    SourceRef,
    read_manifest,
    write_manifest,
)
from model_contract.prompts import FRAME_FILE, get_template, write_prompt_frame
from preprocessing.dataset import load_summary
from training.data import count_by_source, training_papers
from training.recipe import Recipe

log = logging.getLogger(__name__)


def code_version() -> str:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=root,
                             capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def merge_adapter(base: Path | str, adapter: Path, out_dir: Path, template: str) -> Path:
    """Merge in fp32 (one rounding, at the end) and save bf16 safetensors, the output rows
    centred on the answer tokens of `template` (`centre_output_rows`, which unties the LM
    head)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from training.prompting import renderer_for

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    centre_output_rows(merged, list(renderer_for(base, template).label_token_ids.values()))
    merged = merged.to(torch.bfloat16)
    merged.config.use_cache = True  # training turned it off; generation wants it
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    tokenizer = AutoTokenizer.from_pretrained(base)
    tokenizer.save_pretrained(out_dir)
    frame = Path(base) / FRAME_FILE if Path(base).is_dir() else None
    if frame is not None and frame.exists():
        shutil.copyfile(frame, out_dir / FRAME_FILE)
    else:
        write_prompt_frame(out_dir, tokenizer)
    return out_dir


def centre_output_rows(model: Any, token_ids: Sequence[int]) -> None:
    """Give `model` its own LM head (vocab x hidden) whose rows are the old ones minus the mean
    of the `token_ids` rows. Every next-token log-probability is unchanged: at each position
    all logits move by the same amount, which softmax ignores. The label logits, though, move
    from about 40 to about 1, where bf16 resolves 0.008 instead of 0.25 (bf16 keeps 8
    significant bits): served in bf16, the tied head put the label logit on a 0.25 grid (about
    80 distinct probabilities, and exact ties at 0.5). Raises ValueError without token ids."""
    import torch

    if not token_ids:
        raise ValueError("no label token ids to centre the output rows on")
    weight = model.get_output_embeddings().weight.detach().clone()
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    head.weight = torch.nn.Parameter(weight - weight[list(token_ids)].mean(dim=0))
    model.config.tie_word_embeddings = False
    model.set_output_embeddings(head)


def build_manifest(recipe: Recipe, data_dir: Path, metrics: dict | None = None,
                   name: str = SERVED_NAME, version: str | None = None,
                   created_at: datetime | None = None) -> Manifest:
    created = created_at or datetime.now(UTC)
    template = get_template(recipe.template)
    summary = load_summary(data_dir)
    return Manifest(
        name=name,
        version=version or created.strftime("%Y%m%d-%H%M%S"),
        base_model=recipe.base_model,
        recipe=recipe.model_dump(),
        # load_renderer reads prompt.template: serving renders what training did.
        prompt=PromptRef(template=template.name, version=template.version),
        dataset=DatasetRef(fingerprint=summary["fingerprint"]),
        sources=source_refs(summary, count_by_source(training_papers(data_dir, recipe))),
        metrics=metrics or {"before": {}, "after": {}},
        created_at=created.replace(microsecond=0),
        code_version=code_version(),
    )


def source_refs(summary: dict, trained: dict[str, dict[str, int]]) -> dict[str, SourceRef]:
    """Each source of the dataset summary, with the papers per label trained on."""
    return {name: SourceRef(label_meaning=s["label_meaning"], fingerprint=s["fingerprint"],
                            train=trained.get(name, dict.fromkeys(s["label_meaning"], 0)))
            for name, s in summary.get("sources", {}).items()}


def set_calibration(out_dir: Path, calibration: Calibration) -> Manifest:
    """Store the fitted calibration in the manifest (every reader of the model applies it)."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise FileNotFoundError(f"{out_dir} has no manifest")
    manifest.calibration = calibration
    write_manifest(out_dir, manifest)
    return manifest


def update_metrics(out_dir: Path, metrics: dict) -> Manifest:
    """Merge `metrics` into the manifest's metrics. Raises FileNotFoundError without one."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise FileNotFoundError(f"{out_dir} has no manifest")
    manifest.metrics = {**manifest.metrics, **metrics}
    write_manifest(out_dir, manifest)
    return manifest
