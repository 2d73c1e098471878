"""python -m training: base model, fine-tune, evaluate, merge, calibrate, report, publish.

Reads the processed dataset of `python -m preprocessing`; writes under the models folder
(models/runs/<run>/ and the models/latest link). Machine-dependent options also come from
TRAINING_* environment variables (training/settings.py); hyper-parameters come from the recipe
(training/recipes/*.toml, changed per run with --set)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from commandline.options import option, settings_from
from model_contract.layout import EMBEDDED_SPEC, SERVED_NAME
from preprocessing.settings import PreprocessSettings
from training.settings import TrainingSettings

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
T = TrainingSettings


@app.callback()
def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


# Options shared by several commands. Those backed by a settings field take their default and
# help from it (None = not given: the environment variable, else the field's default).
ModelsDirOpt = Annotated[Path | None, option(T, "models_dir", "--models-dir")]
DataDirOpt = Annotated[Path | None, option(PreprocessSettings, "out_dir", "--data-dir")]
BackendOpt = Annotated[str | None, option(T, "backend", "--backend")]
EngineOpt = Annotated[str | None, option(T, "scoring_engine", "--engine")]
RecipeOpt = Annotated[Path | None, typer.Option(
    "--recipe", help="Recipe TOML: base model, prompt template, LoRA and training "
    "hyper-parameters (default: training/recipes/smollm2-135m.toml)")]
SetOpt = Annotated[list[str] | None, typer.Option(
    "--set", help="Override one recipe value as dotted.key=TOML value, e.g. "
    "--set train.max_steps=4 --set template=cancer-yn (repeatable)")]
BaseOpt = Annotated[str | None, typer.Option(
    "--base", help="Base model: 'embedded:...', an HF directory or hub id (default: the "
    "recipe's base_model)")]


def _data_dir(given: Path | None) -> Path:
    """The processed dataset's folder. Raises typer.BadParameter when it holds no dataset."""
    data_dir = settings_from(PreprocessSettings, out_dir=given).out_dir
    if not (data_dir / "summary.json").is_file():
        raise typer.BadParameter(f"{data_dir} holds no processed dataset (summary.json); "
                                 "make one with python -m preprocessing (or make data)",
                                 param_hint="--data-dir")
    return data_dir


def _parse_value(raw: str) -> object:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare string


def _recipe(path: Path | None, overrides: list[str] | None):
    """The recipe with its profile for this machine's training precision (`on_precision`),
    then the `--set` overrides."""
    from training.recipe import load_recipe
    from training.settings import TrainingSettings

    pairs = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set wants key=value, got {item!r}")
        pairs[key.strip()] = _parse_value(value.strip())
    precision = TrainingSettings().choose_precision().precision.value
    try:
        recipe = load_recipe(path, pairs, precision)
    except KeyError as err:  # an unknown dotted key
        raise typer.BadParameter(f"--set: {err.args[0]}") from None
    except ValueError as err:  # pydantic's ValidationError: a value of the wrong kind
        raise typer.BadParameter(f"recipe: {err}") from None
    if precision in recipe.on_precision:
        typer.echo(f"recipe {recipe.name}: the {precision} profile applies "
                   f"{recipe.on_precision[precision]}", err=True)
    return recipe


@app.command("base-model")
def base_model(
    model: Annotated[str, typer.Option(
        help=f"'{EMBEDDED_SPEC}' (the SmolLM2-135M-Instruct shipped as GGUF), an HF "
        "directory or a hub id")] = EMBEDDED_SPEC,
    models_dir: ModelsDirOpt = None,
) -> None:
    """Materialise the base model as an HF safetensors directory under the models folder and
    print its path. Cached: a second call is instant. An HF directory or hub id is printed as
    it is (transformers loads it directly)."""
    from training.base_model import resolve_base_model

    settings = settings_from(T, models_dir=models_dir)
    typer.echo(resolve_base_model(model, settings.models_dir))


# ---- fine-tuning stage (recipe -> adapter -> merged model -> report) -------------------------


@app.command()
def finetune(
    recipe_path: RecipeOpt = None,
    overrides: SetOpt = None,
    base: BaseOpt = None,
    data_dir: DataDirOpt = None,
    models_dir: ModelsDirOpt = None,
    out: Annotated[Path | None, typer.Option(
        help="Run directory to write adapter/ and checkpoints/ into (default: "
        "MODELS_DIR/runs/<recipe name>)")] = None,
    backend: BackendOpt = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue from the newest checkpoint in OUT/checkpoints instead of "
        "starting over")] = False,
) -> None:
    """LoRA fine-tune the base model on the train split (loss on the answer token only,
    validation loss logged every eval_steps). Reads DATA_DIR/{train,validation}.parquet;
    writes OUT/adapter (a standard peft adapter) and OUT/checkpoints; prints the backend, the
    steps and the training time in seconds."""
    from training.base_model import resolve_base_model
    from training.finetune import finetune as run_finetune

    settings = settings_from(T, models_dir=models_dir, backend=backend)
    recipe = _recipe(recipe_path, overrides)
    base_dir = resolve_base_model(base or recipe.base_model, settings.models_dir)
    out_dir = out or settings.models_dir / "runs" / recipe.name
    result = run_finetune(recipe, base_dir, _data_dir(data_dir), out_dir,
                          backend=settings.backend, resume=resume)
    typer.echo(f"backend={result.backend} steps={result.global_step} "
               f"seconds={result.train_seconds:.0f} adapter={result.adapter_dir}")


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(
        help="Model to score: a model directory (base or merged) or a hub id")],
    adapter: Annotated[Path | None, typer.Option(
        help="LoRA adapter directory applied on top of --model (needs --engine "
        "transformers or auto)")] = None,
    split: Annotated[str, typer.Option(help="Split to score: train | validation | test")] = "test",
    data_dir: DataDirOpt = None,
    engine: EngineOpt = None,
    template: Annotated[str | None, typer.Option(
        help="Prompt template name (default: the one finetune recorded beside --adapter, "
        "else the model's)")] = None,
    limit: Annotated[int | None, typer.Option(
        help="Score a label-balanced subset of this many papers instead of the whole "
        "split")] = None,
    seed: Annotated[int, typer.Option(help="Seed that draws the --limit subset")] = 42,
    out: Annotated[Path | None, typer.Option(
        help="Write the full result (metrics and every prediction) as JSON here")] = None,
    title_only: Annotated[bool, typer.Option(
        "--title-only", help="Remove every abstract first: the accuracy on records that have "
        "only a title")] = False,
    served: Annotated[bool, typer.Option(
        "--served", help="Read as the gateway serves: the capped read, then the whole "
        "abstract where the model's manifest rule asks (a merged model with its own "
        "template; the figures are the served read's, plus the capped accuracy and the "
        "share read twice)")] = False,
    reread_below: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="With --served: the second-read threshold instead of the "
        "manifest's, as GATEWAY_REREAD_BELOW sets it for a gateway (0 = never read twice)")]
    = None,
    batch_size: Annotated[int, typer.Option(
        min=1, help="Papers per forward pass of the transformers engine (vLLM's engine "
        "schedules its own batches); lower it where memory is short")] = 16,
) -> None:
    """Score a split by the label-token probabilities (one forward pass per paper) and print
    accuracy, macro F1, ECE, ROC-AUC and the wall time in seconds as one JSON line. Reads
    DATA_DIR/<split>.parquet; writes only --out (every prediction, and per source the label
    review: recall on papers that name a neoplasm and on those that name none)."""
    import json

    from training.evaluate import check_served_arguments, evaluate_split, headline

    if reread_below is not None and not served:
        raise typer.BadParameter("--reread-below sets the served read's threshold: add --served")
    if served:
        try:
            check_served_arguments(adapter, template)
        except ValueError as err:
            raise typer.BadParameter(str(err)) from err
    settings = settings_from(T, scoring_engine=engine)
    result = evaluate_split(model, _data_dir(data_dir), split, adapter, template,
                            settings.scoring_engine, limit, seed, batch_size, title_only,
                            served=served, reread_below=reread_below)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    line = {**headline(result), "seconds": result["seconds"]}
    if served:
        line |= {"capped_accuracy": round(result["capped_metrics"]["accuracy"], 4),
                 "reread_share": round(result["reread_share"], 4)}
    typer.echo(json.dumps(line))


@app.command()
def merge(
    adapter: Annotated[Path, typer.Option(
        help="Adapter directory written by finetune (RUN/adapter)")],
    out: Annotated[Path, typer.Option(help="Merged model directory to write")],
    recipe_path: RecipeOpt = None,
    overrides: SetOpt = None,
    base: BaseOpt = None,
    data_dir: DataDirOpt = None,
    models_dir: ModelsDirOpt = None,
    before: Annotated[Path | None, typer.Option(
        help="`evaluate --out` JSON of the base model: its headline metrics go into the "
        "manifest")] = None,
    after: Annotated[Path | None, typer.Option(
        help="`evaluate --out` JSON of the tuned model: its headline metrics go into the "
        "manifest")] = None,
    name: Annotated[str, typer.Option(
        help="Model name recorded in manifest.json (the name it is published and served "
        "under)")] = SERVED_NAME,
    version: Annotated[str | None, typer.Option(
        help="Version recorded in manifest.json (default: a UTC timestamp)")] = None,
) -> None:
    """Merge the adapter into the bf16 base weights and write a servable model directory:
    safetensors weights, tokenizer, prompt_frame.json and manifest.json (recipe, dataset
    fingerprint of DATA_DIR, metrics). Prints the manifest's path."""
    import json

    from model_contract.manifest import write_manifest
    from training.base_model import resolve_base_model
    from training.evaluate import headline
    from training.merge import build_manifest, merge_adapter

    settings = settings_from(T, models_dir=models_dir)
    recipe = _recipe(recipe_path, overrides)
    base_model = base or recipe.base_model
    merge_adapter(resolve_base_model(base_model, settings.models_dir), adapter, out,
                  recipe.template)
    metrics = {tag: headline(json.loads(path.read_text())) if path else {}
               for tag, path in (("before", before), ("after", after))}
    manifest = build_manifest(recipe.with_overrides({"base_model": base_model}),
                              _data_dir(data_dir), metrics, name, version)
    typer.echo(write_manifest(out, manifest))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(
        help="A run directory (MODELS_DIR/runs/<run>) with eval_before.json and "
        "eval_after.json")],
) -> None:
    """(Re)write RUN_DIR/report.md and its figures (*.png) from the JSON files a run left
    there; prints the report's path."""
    from training.report import write_report

    typer.echo(write_report(run_dir))


@app.command()
def calibrate(
    run_dir: Annotated[Path, typer.Argument(
        help="A finished run directory (MODELS_DIR/runs/<run>) with merged/manifest.json, "
        "run.json, eval_before.json and baselines.json")],
    recipe_path: RecipeOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
    engine: EngineOpt = None,
) -> None:
    """Fit the run's calibration again (the temperature and the second-read threshold, on the
    validation papers of every source) and re-evaluate its test split under it, without
    training: after changing the read-twice budget (--set eval.max_reread_share=0.3) or for a
    model calibrated by an older rule. Rewrites RUN_DIR/{calibration,eval_after,run}.json, the
    merged model's manifest and the report; prints the threshold, the temperature and the
    served accuracy and read-twice share per source."""
    import json

    from training.run import recalibrate

    settings = settings_from(T, scoring_engine=engine)
    try:
        run = recalibrate(run_dir, _recipe(recipe_path, overrides), _data_dir(data_dir),
                          settings.scoring_engine)
    except FileNotFoundError as err:
        raise typer.BadParameter(str(err), param_hint="RUN_DIR") from None
    after = json.loads((run_dir / "eval_after.json").read_text())
    typer.echo(json.dumps({"rule": after["rule"], "accuracy": run["after"]["accuracy"],
                           "per_source": {s: {"accuracy": v["served"]["accuracy"],
                                              "reread_share": v["reread_share"]}
                                          for s, v in after["per_source"].items()}}))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def run(
    ctx: typer.Context,
    models: Annotated[list[str] | None, typer.Option(
        "--models", help="Base models to fine-tune, each 'embedded:...', an HF directory or a "
        "hub id: --models A B (default: the recipe's base_model)")] = None,
    recipe_path: RecipeOpt = None,
    overrides: SetOpt = None,
    data_dir: DataDirOpt = None,
    models_dir: ModelsDirOpt = None,
    backend: BackendOpt = None,
    engine: EngineOpt = None,
) -> None:
    """The whole chain per base model: materialise -> evaluate -> fine-tune -> merge ->
    evaluate -> report. Writes MODELS_DIR/runs/<run>/{adapter,merged,report.md,*.png}, a
    comparison table of the bases in MODELS_DIR/runs/comparison-<UTC time>.md, and points
    MODELS_DIR/latest at the newest merged model. Prints accuracy before -> after, ECE and the
    wall time in seconds per base."""
    import shlex
    import sys
    import time

    from training.run import run_many

    start = time.perf_counter()
    settings = settings_from(T, models_dir=models_dir, backend=backend, scoring_engine=engine)
    recipe = _recipe(recipe_path, overrides)
    bases = [*(models or []), *(a for a in ctx.args if not a.startswith("-"))]
    command = "python -m training " + shlex.join(sys.argv[1:])
    runs = run_many(bases or [recipe.base_model], recipe, _data_dir(data_dir),
                    settings.models_dir, backend=settings.backend,
                    engine=settings.scoring_engine, command=command)
    for r in runs:
        a = r["after"]
        typer.echo(f"{r['base_model']}: accuracy {r['before']['accuracy']:.3f} -> "
                   f"{a['accuracy']:.3f}, ECE {a['ece']:.3f}, wall {r['total_seconds']:.0f} s, "
                   f"report {Path(r['merged_dir']).parent / 'report.md'}")
    typer.echo(f"total wall time: {time.perf_counter() - start:.0f} s; "
               f"{settings.models_dir / 'latest'} -> {runs[-1]['merged_dir']}")


def _register_publish() -> None:
    from model_registry.cli import publish_command

    app.command("publish", help="Upload a merged model directory to s3://BUCKET/models/NAME/"
                "VERSION/ with sha256 checksums (checksums.json written last); refuses to "
                "overwrite a version. Prints the version's URI.")(publish_command)


_register_publish()
