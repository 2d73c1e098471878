"""The whole chain per base model: base -> baselines -> evaluate -> fine-tune -> merge ->
evaluate the merged (served) weights -> manifest -> report; then `models/latest`."""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from training.recipe import Recipe

log = logging.getLogger(__name__)

LATEST = "latest"


def slug(base_model: str) -> str:
    tail = re.split(r"[:/]", base_model.rstrip("/"))[-1]
    return re.sub(r"[^A-Za-z0-9._-]+", "-", tail).strip("-") or "model"


def point_latest(models_dir: Path, merged: Path) -> Path:
    """models/latest -> the merged directory (relative symlink, swapped atomically)."""
    link = models_dir / LATEST
    tmp = models_dir / f".{LATEST}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(os.path.relpath(merged.resolve(), models_dir.resolve()))
    os.replace(tmp, link)
    return link


class StageClock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        log.info("== %s", name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 1)
        log.info("== %s done in %.0f s", name, self.seconds[name])


def run_chain(base_model: str, recipe: Recipe, data_dir: Path, models_dir: Path,
              run_name: str | None = None, backend: str = "auto", engine: str = "auto",
              command: str | None = None) -> dict:
    from model_contract.manifest import write_manifest
    from training.base_model import resolve_base_model
    from training.baselines import baseline_metrics
    from training.data import load_papers, token_lengths
    from training.evaluate import evaluate_papers, headline
    from training.finetune import finetune
    from training.merge import build_manifest, merge_adapter, update_metrics
    from training.prompting import renderer_for
    from training.report import write_report

    start, clock = time.perf_counter(), StageClock()
    recipe = recipe.with_overrides({"base_model": base_model})
    run_name = run_name or f"{slug(base_model)}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_dir = models_dir / "runs" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    seed, ev = recipe.seed, recipe.eval
    test = load_papers(data_dir, "test", ev.max_examples, seed)
    with clock.stage("base model"):
        base = resolve_base_model(base_model, models_dir)
    with clock.stage("baselines"):
        train = load_papers(data_dir, "train", recipe.train.max_examples, seed)
        baselines = baseline_metrics(train, test, seed)
        _dump(run_dir / "baselines.json", baselines)
        lengths = token_lengths(renderer_for(base, recipe.template), train)
    with clock.stage("evaluate before"):
        before = evaluate_papers(base, test, template=recipe.template, engine=engine,
                                 batch_size=ev.batch_size)
        _dump(run_dir / "eval_before.json", {"split": "test", **before})
    with clock.stage("fine-tune"):
        tuned = finetune(recipe, base, data_dir, run_dir, backend=backend)
    merged = run_dir / "merged"
    with clock.stage("merge"):
        merge_adapter(base, tuned.adapter_dir, merged)
        write_manifest(merged, build_manifest(recipe, data_dir, version=run_name))
    with clock.stage("evaluate after"):
        # The merged directory, exactly as served (vLLM where installed).
        after = evaluate_papers(merged, test, engine=engine, batch_size=ev.batch_size)
        _dump(run_dir / "eval_after.json", {"split": "test", **after})
    summary = {"before": headline({"split": "test", **before}),
               "after": headline({"split": "test", **after}),
               "baselines": {k: headline({"split": "test", "metrics": v})
                             for k, v in baselines.items()}}
    update_metrics(merged, summary)
    total = round(time.perf_counter() - start, 1)
    run = {"run_name": run_name, "base_model": base_model, "backend": tuned.backend,
           "precision": tuned.precision, "token_lengths": lengths,
           "stage_seconds": clock.seconds, "total_seconds": total, "command": command,
           "merged_dir": str(merged), **summary}
    _dump(run_dir / "run.json", run)
    write_report(run_dir)
    point_latest(models_dir, merged)
    return run


def run_many(base_models: list[str], recipe: Recipe, data_dir: Path, models_dir: Path,
             backend: str = "auto", engine: str = "auto", command: str | None = None) -> list:
    """One chain per base model, then a comparison table; models/latest ends on the last."""
    from training.report import comparison_table

    runs = [run_chain(m, recipe, data_dir, models_dir, backend=backend, engine=engine,
                      command=command) for m in base_models]
    stamp = f"{datetime.now(UTC):%Y%m%d-%H%M%S}"
    table = comparison_table(runs)
    (models_dir / "runs" / f"comparison-{stamp}.md").write_text(
        f"# Comparison of base models\n\n{table}\n")
    _dump(models_dir / "runs" / f"comparison-{stamp}.json", runs)
    return runs


def _dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2))
