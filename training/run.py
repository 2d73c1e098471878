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

from training.data import load_papers, per_source_sample
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
    from training.data import token_lengths, training_papers
    from training.finetune import finetune
    from training.merge import build_manifest, merge_adapter
    from training.prompting import renderer_for
    from training.report import write_report

    start, clock = time.perf_counter(), StageClock()
    recipe = recipe.with_overrides({"base_model": base_model})
    run_name = run_name or f"{slug(base_model)}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    run_dir = models_dir / "runs" / run_name
    run_dir.mkdir(parents=True, exist_ok=True)
    test = load_papers(data_dir, "test", recipe.eval.max_examples, recipe.seed)
    with clock.stage("base model"):
        base = resolve_base_model(base_model, models_dir)
    with clock.stage("baselines"):
        train = training_papers(data_dir, recipe)
        _baselines(run_dir, train, test, recipe.seed)
        lengths = token_lengths(renderer_for(base, recipe.template), train)
    with clock.stage("evaluate before"):
        before = _evaluate_before(run_dir, base, test, recipe, engine, models_dir / "cache")
    with clock.stage("fine-tune"):
        tuned = finetune(recipe, base, data_dir, run_dir, backend=backend)
    merged = run_dir / "merged"
    with clock.stage("merge"):
        merge_adapter(base, tuned.adapter_dir, merged, recipe.template)
        write_manifest(merged, build_manifest(recipe, data_dir, version=run_name))
    with clock.stage("calibrate and evaluate after"):
        after = calibrate_and_evaluate(run_dir, merged, data_dir, test, recipe, engine)
    summary = _store_metrics(run_dir, merged, before, after)
    total = round(time.perf_counter() - start, 1)
    run = {"run_name": run_name, "base_model": base_model, "backend": tuned.backend,
           "precision": tuned.precision, "token_lengths": lengths,
           "stage_seconds": clock.seconds, "total_seconds": total, "command": command,
           "merged_dir": str(merged), **summary}
    _dump(run_dir / "run.json", run)
    write_report(run_dir)
    point_latest(models_dir, merged)
    return run


def _baselines(run_dir: Path, train: list, test: list, seed: int) -> None:
    """baselines.json (all test papers) and baselines_by_source.json, trained on `train`."""
    from training.baselines import baseline_scores
    from training.evaluate import by_source
    from training.metrics import classification_metrics

    scores = baseline_scores(train, test, seed)
    labels = [p.label for p in test]
    _dump(run_dir / "baselines.json",
          {k: classification_metrics(labels, v) for k, v in scores.items()})
    _dump(run_dir / "baselines_by_source.json",
          {k: by_source(test, v) for k, v in scores.items()})


def _evaluate_before(run_dir: Path, base: Path, test: list, recipe: Recipe,
                     engine: str, cache_dir: Path) -> dict:
    """The untuned base model's capped read of the test papers (at most
    `eval.before_max_per_source` of each source), per source too; reused from
    `cache_dir` when the same base model, template, papers, precision and engine were read."""
    from model_contract.prompts import TEMPLATES
    from training.eval_cache import cached_reading, reading_key
    from training.evaluate import by_source, evaluate_papers
    from training.settings import TrainingSettings

    papers = per_source_sample(test, recipe.eval.before_max_per_source, recipe.seed)

    def read() -> dict:
        before = evaluate_papers(base, papers, template=recipe.template, engine=engine,
                                 batch_size=recipe.eval.batch_size)
        return {"split": "test", **before,
                "per_source": by_source(papers, [p["p_cancer"] for p in before["predictions"]])}

    precision = TrainingSettings().choose_precision().precision.value
    key = reading_key(base, TEMPLATES[recipe.template], papers, precision, engine)
    before = cached_reading(cache_dir / "eval_before", key, read)
    _dump(run_dir / "eval_before.json", before)
    return before


def calibrate_and_evaluate(run_dir: Path, merged: Path, data_dir: Path, test: list,
                           recipe: Recipe, engine: str = "auto") -> dict:
    """Read the validation papers of every source as serving does (the whole abstract of every
    cut one, for the threshold table), fit the calibration and store it in the manifest, then
    read the test papers under it (a second read only where the rule asks); one engine start.
    Writes calibration.json and eval_after.json (with each source's `label_review`)."""
    from training.calibration import fit_calibration
    from training.evaluate import read_twice, rule_asks, served_evaluation
    from training.label_review import label_review
    from training.merge import set_calibration
    from training.prompting import renderer_for
    from training.scoring import scoring_session

    started = time.perf_counter()
    validation = per_source_sample(
        load_papers(data_dir, "validation", recipe.eval.max_examples, recipe.seed),
        recipe.eval.max_validation_per_source, recipe.seed)
    renderer = renderer_for(merged)
    longest = renderer.served_max_prompt_tokens()
    with scoring_session(merged, longest, engine, recipe.eval.batch_size) as (score, used):
        validation_reads = read_twice(score, renderer, validation)
        calibration, record = fit_calibration(validation, validation_reads,
                                              recipe.eval.max_reread_share)
        manifest = set_calibration(merged, calibration)
        rule = manifest.reading_rule()
        test_reads = read_twice(score, renderer, test, rule_asks(rule))
    # The validation figures under the fitted rule: what a recipe is chosen on (never the test).
    validation_eval = served_evaluation(validation, validation_reads, rule)
    record["validation"] = {k: validation_eval[k] for k in ("per_source", "predictions")}
    _dump(run_dir / "calibration.json", record)
    after = {"split": "test", "model": str(merged), "engine": used,
             "template": manifest.prompt.template, "template_version": manifest.prompt.version,
             "seconds": round(time.perf_counter() - started, 2),
             **served_evaluation(test, test_reads, rule)}
    after["label_review"] = label_review(test, after["predictions"])
    _dump(run_dir / "eval_after.json", after)
    return after


def recalibrate(run_dir: Path, recipe: Recipe, data_dir: Path, engine: str = "auto") -> dict:
    """Fit a finished run's calibration again and re-evaluate its test split under it (a
    changed `eval.max_reread_share`, or a model trained before the rule changed), without
    training. Rewrites calibration.json, eval_after.json and run.json in `run_dir`, the merged
    model's manifest (calibration and metrics) and the report; returns run.json's content.

    Raises FileNotFoundError, before changing anything, when `run_dir` lacks a file a finished
    run leaves (merged/manifest.json, run.json, eval_before.json, baselines.json)."""
    from training.report import write_report

    merged = run_dir / "merged"
    needed = [merged / "manifest.json", *(run_dir / f"{name}.json"
                                          for name in ("run", "eval_before", "baselines"))]
    missing = [str(path) for path in needed if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"not a finished run directory: missing {', '.join(missing)}")
    test = load_papers(data_dir, "test", recipe.eval.max_examples, recipe.seed)
    after = calibrate_and_evaluate(run_dir, merged, data_dir, test, recipe, engine)
    summary = _store_metrics(run_dir, merged, _load(run_dir / "eval_before.json"), after)
    run = {**_load(run_dir / "run.json"), **summary}
    _dump(run_dir / "run.json", run)
    write_report(run_dir)
    return run


def _store_metrics(run_dir: Path, merged: Path, before: dict, after: dict) -> dict:
    """The headline metrics of the base, the served and capped reads and the baselines, also
    written into the merged model's manifest."""
    from training.merge import update_metrics

    summary = _summary(before, after, _load(run_dir / "baselines.json"))
    update_metrics(merged, summary)
    return summary


def _summary(before: dict, after: dict, baselines: dict) -> dict:
    from training.evaluate import headline

    return {"before": headline(before), "after": headline(after),
            "after_capped": headline({"split": "test", "metrics": after["capped_metrics"]}),
            "after_by_source": {s: {read: headline({"split": "test", "metrics": m})
                                    for read, m in v.items() if read in ("served", "capped")}
                                for s, v in after["per_source"].items()},
            "calibration": after["rule"],
            "baselines": {k: headline({"split": "test", "metrics": v})
                          for k, v in baselines.items()}}


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


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
