"""The markdown report of a run (before/after side by side, with the classic baselines) and its
figures, written into the run directory next to the model."""

from __future__ import annotations

import json
from pathlib import Path

from training import plots

REPORT = "report.md"
BASELINE_NAMES = {"tfidf_logreg": "TF-IDF + LR", "keyword_rule": "keyword rule"}


def _load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def metrics_table(columns: dict[str, dict]) -> str:
    """Rows of metrics, one column per model (metrics dicts of training.metrics)."""
    rows = [("accuracy", lambda m: m["accuracy"]), ("macro F1", lambda m: m["macro_f1"]),
            ("ROC-AUC", lambda m: m["roc_auc"]), ("ECE (10 bins)", lambda m: m["ece"])]
    for label in ("cancer", "non_cancer"):
        for key in ("precision", "recall", "f1"):
            rows.append((f"{label} {key}",
                         lambda m, label=label, key=key: m["per_class"][label][key]))
    lines = ["| metric | " + " | ".join(columns) + " |",
             "|---|" + "---:|" * len(columns)]
    for name, get in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(get(m)) for m in columns.values()) + " |")
    return "\n".join(lines)


def _errors(after: dict, limit: int = 10, source: str | None = None) -> str:
    wrong = [p for p in after["predictions"] if p["label"] != p["predicted"]
             and source in (None, p.get("source"))]
    wrong.sort(key=lambda p: -abs(p["p_cancer"] - 0.5))
    if not wrong:
        return "No misclassified papers."
    lines = ["| paper id | true | predicted | P(cancer) |", "|---|---|---|---:|"]
    lines += [f"| {p['id']} | {p['label']} | {p['predicted']} | {p['p_cancer']:.3f} |"
              for p in wrong[:limit]]
    return "\n".join(lines)


def _figures(run_dir: Path, before: dict, after: dict, train_log: dict | None) -> list[str]:
    panels = {"before": before["metrics"], "after": after["metrics"]}
    made = [plots.confusion_matrices(panels, run_dir / "confusion_matrices.png"),
            plots.reliability_diagram(panels, run_dir / "reliability.png")]
    if after.get("per_source"):
        made.append(plots.reliability_per_source(
            {s: v["served"] for s, v in after["per_source"].items()},
            run_dir / "reliability_per_source.png"))
    if train_log:
        made.append(plots.loss_curves(train_log["log_history"], run_dir / "loss_curves.png"))
    return [p.name for p in made]


def write_report(run_dir: Path) -> Path:
    before, after = _load(run_dir / "eval_before.json"), _load(run_dir / "eval_after.json")
    if before is None or after is None:
        raise FileNotFoundError(f"{run_dir} lacks eval_before.json / eval_after.json")
    baselines = _load(run_dir / "baselines.json") or {}
    train_log, run = _load(run_dir / "train_log.json"), _load(run_dir / "run.json") or {}
    figures = _figures(run_dir, before, after, train_log)
    columns = {"base (before)": before["metrics"], "fine-tuned (after)": after["metrics"]}
    columns |= {BASELINE_NAMES.get(k, k): v for k, v in baselines.items()}
    text = "\n\n".join([
        f"# Fine-tuning report: {run.get('run_name', run_dir.name)}",
        _summary(run, before, after, train_log),
        f"## Metrics on the {after.get('split', 'test')} split "
        f"({after['metrics']['n']} papers)",
        metrics_table(columns),
        "Baselines are trained on the same train split. ECE: mean gap between confidence "
        "(probability of the predicted label) and accuracy over 10 equal-width bins.",
        *_source_sections(run_dir, before, after),
        "## Figures",
        *[f"![{name}]({name})" for name in figures],
        "## Misclassified after fine-tuning (most confident first)",
        *_errors_per_source(after),
        *label_review_sections(after.get("label_review", {})),
    ]) + "\n"
    path = run_dir / REPORT
    path.write_text(text)
    return path


SOURCE_ROWS = (("accuracy", lambda m: m["accuracy"]),
               ("cancer recall", lambda m: m["per_class"]["cancer"]["recall"]),
               ("cancer precision", lambda m: m["per_class"]["cancer"]["precision"]),
               ("ROC-AUC", lambda m: m["roc_auc"]), ("ECE", lambda m: m["ece"]))


def source_table(rows: dict[str, dict]) -> str:
    """One row per model (name -> metrics of one source), one column per metric."""
    lines = ["| model | n | " + " | ".join(n for n, _ in SOURCE_ROWS) + " |",
             "|---|---:|" + "---:|" * len(SOURCE_ROWS)]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['n']} | "
                     + " | ".join(_fmt(get(m)) for _, get in SOURCE_ROWS) + " |")
    return "\n".join(lines)


def per_source_rows(source: str, before: dict, after: dict, baselines: dict) -> dict:
    """The models compared on one source's test papers."""
    rows = {}
    if source in before.get("per_source", {}):
        rows["base (before)"] = before["per_source"][source]
    mine = after["per_source"][source]
    rows["fine-tuned, capped read"] = mine["capped"]
    rows["fine-tuned, served (second read)"] = mine["served"]
    for name, by_source in baselines.items():
        if source in by_source:
            rows[BASELINE_NAMES.get(name, name)] = by_source[source]
    return rows


def _source_sections(run_dir: Path, before: dict, after: dict) -> list[str]:
    if not after.get("per_source"):
        return []
    baselines = _load(run_dir / "baselines_by_source.json") or {}
    calibration = _load(run_dir / "calibration.json") or {}
    out = ["## Per source (test split of each source)",
           "Probabilities under the fitted calibration (temperature "
           f"{after['rule']['temperature']}, second read below "
           f"{after['rule']['reread_below']}). The keyword rule and TF-IDF + LR are trained on "
           "the papers the model was trained on."]
    for source, m in after["per_source"].items():
        out += [f"### {source} ({m['served']['n']} papers, {m['reread_share']:.1%} read twice)",
                source_table(per_source_rows(source, before, after, baselines))]
    if calibration:
        nll = calibration["nll"]
        out += ["### Calibration (fitted on the validation papers of every source)",
                f"Temperature {calibration['temperature']} on {calibration['reads']} reads of "
                f"{sum(calibration['fitted_on'].values())} papers {calibration['fitted_on']}: "
                f"NLL {nll['before']:.4f} -> {nll['after']:.4f}. Second-read threshold "
                f"{calibration['reread_below']}: {_threshold_rule(calibration)}.",
                _threshold_table(calibration["thresholds"])]
    for source, m in calibration.get("validation", {}).get("per_source", {}).items():
        out += [f"#### Validation: {source} ({m['served']['n']} papers, "
                f"{m['reread_share']:.1%} read twice)",
                source_table({"fine-tuned, capped read": m["capped"],
                              "fine-tuned, served (second read)": m["served"]})]
    return out


def _threshold_rule(calibration: dict) -> str:
    if "max_reread_share" not in calibration:  # runs before the read-twice budget
        return "the lowest with the best validation accuracy"
    return (f"the highest that reads at most {calibration['max_reread_share']:.0%} of validation "
            "papers twice and where the second read does not break significantly more papers "
            "than it fixes")


def _threshold_table(rows: list[dict]) -> str:
    lines = ["| read again below | validation accuracy | read twice | fixed | broken |",
             "|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['below']} | {r['accuracy']:.4f} | {r['reread_share']:.1%} "
              f"| {r.get('fixed', '')} | {r.get('broken', '')} |" for r in rows]
    return "\n".join(lines)


def _errors_per_source(after: dict) -> list[str]:
    sources = list(after.get("per_source", {})) or [None]
    if sources == [None]:
        return [_errors(after)]
    return [part for s in sources for part in (f"### {s}", _errors(after, source=s))]


def _cell(text: str, width: int = 100) -> str:
    """One markdown table cell: no pipe, at most `width` characters."""
    text = text.replace("|", "/")
    return text if len(text) <= width else text[:width - 1] + "…"


def _share(hits: int, n: int) -> str:
    return f"{hits} of {n} ({hits / n:.1%})" if n else "-"


def label_review_sections(review: dict[str, dict], limit: int = 10) -> list[str]:
    """Markdown blocks for the report and the notebook: a heading, an explanation, one table
    (a row per source) and per source a heading and its first `limit` papers to review."""
    if not review:
        return []
    table = ["| source | cancer papers naming a neoplasm: found | naming none: found "
             "| non-cancer papers with one in the title: called cancer | false positives |",
             "|---|---:|---:|---:|---:|"]
    for source, r in review.items():
        c, o = r["cancer"], r["non_cancer"]
        table.append(f"| {source} | {_share(c['named_found'], c['named'])} "
                     f"| {_share(c['unnamed_found'], c['n'] - c['named'])} "
                     f"| {_share(o['title_named_called_cancer'], o['title_named'])} "
                     f"| {o['false_positives']} |")
    out = ["## Labels to review (served read)",
           "A source's label is its own definition: OHSUMED's cancer is the MeSH category C04 "
           "its indexers gave the paper after reading the full text, one category a paper. "
           "A neoplasm is named when the text holds a stem of a MeSH C04 (Neoplasms) heading "
           "or an \"-oma\" word other than the listed non-neoplasms (glaucoma, hematoma...); "
           "the lists are the misread papers where the text sides with the model: labelled "
           "cancer and naming no neoplasm, or labelled otherwise and naming one in the title.",
           "\n".join(table)]
    for source, r in review.items():
        out.append(f"### {source}: {len(r['to_review'])} to review")
        rows = [f"| {p['id']} | {p['label']} | {p['p_cancer']:.3f} "
                f"| {_cell(p['title'])} |" for p in r["to_review"][:limit]]
        if rows:
            out.append("\n".join(["| paper id | label | P(cancer) | title |",
                                   "|---|---|---:|---|", *rows]))
    return out


def _summary(run: dict, before: dict, after: dict, train_log: dict | None) -> str:
    lines = [f"- base model: `{run.get('base_model', before['model'])}`",
             f"- prompt template: `{after['template_version']}`",
             f"- scoring engine: before `{before['engine']}`, after `{after['engine']}`"]
    if train_log:
        lines += [f"- training backend: `{train_log['backend']}`, {train_log['global_step']} "
                  f"steps on {train_log['train_examples']} papers in "
                  f"{train_log['train_seconds']:.0f} s"]
    for stage, seconds in run.get("stage_seconds", {}).items():
        lines.append(f"- {stage}: {seconds:.0f} s")
    if "total_seconds" in run:
        lines.append(f"- total wall time: {run['total_seconds']:.0f} s")
    if "command" in run:
        lines.append(f"- command: `{run['command']}`")
    return "\n".join(lines)


def comparison_table(summaries: list[dict]) -> str:
    """One row per base model of a multi-model run."""
    lines = ["| base model | accuracy before | accuracy after | ECE after | ROC-AUC after | "
             "wall time (s) | merged model |", "|---|---:|---:|---:|---:|---:|---|"]
    for s in summaries:
        b, a = s["before"], s["after"]
        lines.append(f"| `{s['base_model']}` | {_fmt(b['accuracy'])} | {_fmt(a['accuracy'])} | "
                     f"{_fmt(a['ece'])} | {_fmt(a['roc_auc'])} | {s['total_seconds']:.0f} | "
                     f"`{s['merged_dir']}` |")
    return "\n".join(lines)
