"""Evaluate a model on a split: label probabilities -> metrics, with per-paper predictions."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from model_contract.layout import load_manifest
from model_contract.manifest import Manifest
from model_contract.prompts import PromptRenderer
from model_contract.reading import (
    PromptScorer,
    ReadingRule,
    calibrated_probability,
    needs_reread,
    read_batch,
    score_from_logit,
)
from preprocessing.papers import Paper
from training.calibration import TwoReads, served_logit
from training.data import load_papers
from training.label_review import label_review
from training.metrics import classification_metrics, predicted
from training.prompting import renderer_for
from training.scoring import EngineName, score_papers, scoring_session

ADAPTER_PROMPT_FILE = "prompt_template.json"  # written beside an adapter by finetune


def adapter_template(adapter: Path | None) -> str | None:
    if adapter is not None and (adapter / ADAPTER_PROMPT_FILE).exists():
        return json.loads((adapter / ADAPTER_PROMPT_FILE).read_text())["template"]
    return None


def evaluate_papers(model: Path | str, papers: list[Paper], adapter: Path | None = None,
                    template: str | None = None, engine: EngineName = "auto",
                    batch_size: int = 16) -> dict:
    """The capped read of each paper. Template: the argument, else the adapter's, else the
    model's manifest, else the default. Probabilities under the manifest's calibration (none
    for a base model or an adapter)."""
    renderer = renderer_for(model, template or adapter_template(adapter))
    start = time.perf_counter()
    scores, used = score_papers(model, papers, renderer, adapter, engine, batch_size)
    seconds = time.perf_counter() - start
    temperature = _reading_rule(model, adapter).temperature
    p_cancer = [calibrated_probability(s.logit, temperature) for s in scores]
    return {
        "model": str(model),
        "adapter": str(adapter) if adapter else None,
        "engine": used,
        "template": renderer.template.name,
        "template_version": renderer.template.version,
        "seconds": round(seconds, 2),
        "metrics": classification_metrics([p.label for p in papers], p_cancer),
        "temperature": temperature,
        "predictions": [{"id": p.id, "source": p.source, "label": p.label,
                         "predicted": predicted(pc), "p_cancer": pc}
                        for p, pc in zip(papers, p_cancer, strict=True)],
    }


def _reading_rule(model: Path | str, adapter: Path | None,
                  reread_below: float | None = None) -> ReadingRule:
    """The rule the gateway builds for this model (`reread_below` overrides the threshold, as
    GATEWAY_REREAD_BELOW does): the manifest's, or a base model's defaults for a directory
    without one, an adapter or a hub id."""
    manifest = (load_manifest(Path(model)) if adapter is None and Path(model).is_dir()
                else Manifest.for_base_model(str(model)))
    return manifest.reading_rule(reread_below)


def evaluate_served(model: Path | str, papers: list[Paper], engine: EngineName = "auto",
                    batch_size: int = 16, reread_below: float | None = None) -> dict:
    """Each paper read as the gateway serves it: the capped prompt, then the whole abstract
    where the model's reading rule asks: the manifest's temperature and second-read threshold,
    or for a model without a manifest (a base model) the defaults the gateway serves it with.
    `metrics` are the served read's, `capped_metrics` the first read's. The model's own
    template: a second read is only defined for it. `reread_below` replaces the threshold, as
    GATEWAY_REREAD_BELOW does for a gateway."""
    rule = _reading_rule(model, None, reread_below)
    renderer = renderer_for(model)
    start = time.perf_counter()
    with scoring_session(model, renderer.served_max_prompt_tokens(), engine,
                         batch_size) as (score, used):
        reads = read_twice(score, renderer, papers, rule_asks(rule))
    return {"model": str(model), "adapter": None, "engine": used,
            "template": renderer.template.name,
            "template_version": renderer.template.version,
            "seconds": round(time.perf_counter() - start, 2),
            **served_evaluation(papers, reads, rule)}


def check_served_arguments(adapter: Path | str | None, template: str | None) -> None:
    """Raises ValueError when a served read is asked with an adapter or a template (empty
    strings included): what is served is a merged model with its own template and rule."""
    if adapter is not None or template is not None:
        raise ValueError("--served reads a merged model with its own template and reading "
                         "rule: drop --adapter and --template")


def evaluate_split(model: Path | str, data_dir: Path, split: str = "test",
                   adapter: Path | None = None, template: str | None = None,
                   engine: EngineName = "auto", limit: int | None = None, seed: int = 42,
                   batch_size: int = 16, title_only: bool = False,
                   served: bool = False, reread_below: float | None = None) -> dict:
    """`title_only`: score each paper with its abstract removed, as records without one
    (letters, editorials, PubMed's CSV download) are read. `served`: read as the gateway
    serves (`evaluate_served`). The result carries each source's `label_review`
    (training/label_review.py). Raises ValueError as `check_served_arguments` does."""
    if served:
        check_served_arguments(adapter, template)
    papers = load_papers(data_dir, split, limit, seed)
    if title_only:
        papers = [replace(p, abstract="") for p in papers]
    result = (evaluate_served(model, papers, engine, batch_size, reread_below) if served
              else evaluate_papers(model, papers, adapter, template, engine, batch_size))
    return {"split": split, "title_only": title_only, "served": served, **result,
            "label_review": label_review(papers, result["predictions"])}


def headline(result: dict) -> dict:
    """The few numbers a manifest or a table carries."""
    m = result["metrics"]
    return {"split": result.get("split"), "n": m["n"], "accuracy": round(m["accuracy"], 4),
            "macro_f1": round(m["macro_f1"], 4), "ece": round(m["ece"], 4),
            "roc_auc": None if m["roc_auc"] is None else round(m["roc_auc"], 4),
            "engine": result.get("engine"), "template": result.get("template_version")}


def read_twice(score: PromptScorer, renderer: PromptRenderer, papers: list[Paper],
               second: Callable[[float], bool] = lambda _logit: True) -> list[TwoReads]:
    """Each paper read as serving reads it (`read_batch`): the capped prompt, then the whole
    abstract where the cap cut it and `second(capped logit)` says so (all cut papers by
    default). Raw logits, no temperature."""
    reads = read_batch(renderer, [(p.title, p.abstract) for p in papers], score,
                       lambda capped: second(capped.logit))
    return [TwoReads(r.capped.logit, r.capped_truncated,
                     None if r.whole is None else r.whole.logit) for r in reads]


def rule_asks(rule: ReadingRule) -> Callable[[float], bool]:
    """`read_twice`'s `second` under a reading rule: a cut paper whose capped read, calibrated,
    is less sure than the rule's threshold."""
    return lambda logit: needs_reread(score_from_logit(logit, rule.temperature), True,
                                      rule.reread_below)


def served_evaluation(papers: list[Paper], reads: list[TwoReads], rule: ReadingRule) -> dict:
    """Metrics of the capped read and of the served read (second read by `rule`), both with the
    rule's temperature, overall and per source; per-paper predictions."""
    capped = [calibrated_probability(r.capped, rule.temperature) for r in reads]
    served = [served_logit(r, rule.temperature, rule.reread_below) for r in reads]
    p_served = [calibrated_probability(z, rule.temperature) for z, _ in served]
    predictions = [{"id": p.id, "source": p.source, "label": p.label, "predicted": predicted(ps),
                    "p_cancer": ps, "p_cancer_capped": pc, "reread": reread}
                   for p, ps, pc, (_, reread) in zip(papers, p_served, capped, served,
                                                     strict=True)]
    sources = list(dict.fromkeys(p.source for p in papers))
    return {
        "rule": {"temperature": rule.temperature, "reread_below": rule.reread_below},
        "metrics": classification_metrics([p.label for p in papers], p_served),
        "capped_metrics": classification_metrics([p.label for p in papers], capped),
        "reread_share": sum(r for _, r in served) / len(papers),
        "per_source": {s: source_metrics(predictions, s) for s in sources},
        "predictions": predictions,
    }


def source_metrics(predictions: list[dict], source: str | None = None,
                   key: str = "p_cancer") -> dict:
    """Metrics of the predictions of one source (all when None), from `key`'s probability."""
    rows = [p for p in predictions if source in (None, p.get("source"))]
    out = {"served": classification_metrics([p["label"] for p in rows], [p[key] for p in rows])}
    if rows and "p_cancer_capped" in rows[0]:
        out["capped"] = classification_metrics([p["label"] for p in rows],
                                               [p["p_cancer_capped"] for p in rows])
        out["reread_share"] = sum(p["reread"] for p in rows) / len(rows)
    return out


def by_source(papers: list[Paper], p_cancer: list[float]) -> dict[str, dict]:
    """{source: metrics} of one score per paper (base model, baselines)."""
    out = {}
    for source in dict.fromkeys(p.source for p in papers):
        idx = [i for i, p in enumerate(papers) if p.source == source]
        out[source] = classification_metrics([papers[i].label for i in idx],
                                             [p_cancer[i] for i in idx])
    return out
