"""Evaluate a model on a split: label probabilities -> metrics, with per-paper predictions."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

from preprocessing.papers import Paper
from training.data import load_papers
from training.metrics import classification_metrics, predicted
from training.prompting import renderer_for
from training.scoring import EngineName, score_papers

ADAPTER_PROMPT_FILE = "prompt_template.json"  # written beside an adapter by finetune


def adapter_template(adapter: Path | None) -> str | None:
    if adapter is not None and (adapter / ADAPTER_PROMPT_FILE).exists():
        return json.loads((adapter / ADAPTER_PROMPT_FILE).read_text())["template"]
    return None


def evaluate_papers(model: Path | str, papers: list[Paper], adapter: Path | None = None,
                    template: str | None = None, engine: EngineName = "auto",
                    batch_size: int = 16) -> dict:
    """Template: the argument, else the adapter's, else the model's manifest, else the default."""
    renderer = renderer_for(model, template or adapter_template(adapter))
    start = time.perf_counter()
    scores, used = score_papers(model, papers, renderer, adapter, engine, batch_size)
    seconds = time.perf_counter() - start
    p_cancer = [s.cancer_probability for s in scores]
    return {
        "model": str(model),
        "adapter": str(adapter) if adapter else None,
        "engine": used,
        "template": renderer.template.name,
        "template_version": renderer.template.version,
        "seconds": round(seconds, 2),
        "metrics": classification_metrics([p.label for p in papers], p_cancer),
        "predictions": [{"id": p.id, "label": p.label, "predicted": predicted(pc),
                         "p_cancer": pc} for p, pc in zip(papers, p_cancer, strict=True)],
    }


def evaluate_split(model: Path | str, data_dir: Path, split: str = "test",
                   adapter: Path | None = None, template: str | None = None,
                   engine: EngineName = "auto", limit: int | None = None, seed: int = 42,
                   batch_size: int = 16, title_only: bool = False) -> dict:
    """`title_only`: score each paper with its abstract removed, as records without one
    (letters, editorials, PubMed's CSV download) are read."""
    papers = load_papers(data_dir, split, limit, seed)
    if title_only:
        papers = [replace(p, abstract="") for p in papers]
    return {"split": split, "title_only": title_only,
            **evaluate_papers(model, papers, adapter, template, engine, batch_size)}


def headline(result: dict) -> dict:
    """The few numbers a manifest or a table carries."""
    m = result["metrics"]
    return {"split": result.get("split"), "n": m["n"], "accuracy": round(m["accuracy"], 4),
            "macro_f1": round(m["macro_f1"], 4), "ece": round(m["ece"], 4),
            "roc_auc": None if m["roc_auc"] is None else round(m["roc_auc"], 4),
            "engine": result.get("engine"), "template": result.get("template_version")}
