"""python -m training: base model, fine-tune, evaluate, merge, report, publish."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from model_contract.layout import EMBEDDED_SPEC, SERVED_NAME

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@app.command("base-model")
def base_model(
    model: str = typer.Option(EMBEDDED_SPEC, help=f"'{EMBEDDED_SPEC}', an HF directory or hub id"),
    models_dir: Path = typer.Option(Path("models"), help="Where materialised models live"),
) -> None:
    """Materialise the base model as an HF safetensors directory (cached: a second call is
    instant) and print its path."""
    from training.base_model import resolve_base_model

    typer.echo(resolve_base_model(model, models_dir))


# ---- fine-tuning stage (recipe -> adapter -> merged model -> report) -------------------------

def _data_dir_default() -> Path:
    from preprocessing.settings import PreprocessSettings

    return PreprocessSettings().out_dir


def _parse_value(raw: str) -> object:
    import tomllib

    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw  # a bare string


def _recipe(path: Path | None, overrides: list[str] | None):
    from training.recipe import load_recipe

    pairs = {}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"--set wants key=value, got {item!r}")
        pairs[key.strip()] = _parse_value(value.strip())
    return load_recipe(path, pairs)


RecipeOpt = typer.Option(None, "--recipe", help="Recipe TOML (default: the SmolLM2 recipe)")
SetOpt = typer.Option(None, "--set", help="Override a recipe value: train.max_steps=4 (repeat)")
DataOpt = typer.Option(None, "--data-dir", help="Processed dataset (default: data/processed)")
ModelsDirOpt = typer.Option(Path("models"), "--models-dir", help="Where models and runs live")


@app.command()
def finetune(
    recipe_path: Path | None = RecipeOpt,
    overrides: list[str] | None = SetOpt,
    base: str | None = typer.Option(None, help="Base model (default: the recipe's)"),
    data_dir: Path | None = DataOpt,
    models_dir: Path = ModelsDirOpt,
    out: Path | None = typer.Option(None, help="Output dir (default: models/runs/<recipe>)"),
    backend: str = typer.Option("auto", help="auto | unsloth | peft"),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint"),
) -> None:
    """LoRA fine-tune on the train split (loss on the answer token, validation loss logged)."""
    from training.base_model import resolve_base_model
    from training.finetune import finetune as run_finetune

    recipe = _recipe(recipe_path, overrides)
    base_dir = resolve_base_model(base or recipe.base_model, models_dir)
    out_dir = out or models_dir / "runs" / recipe.name
    result = run_finetune(recipe, base_dir, data_dir or _data_dir_default(), out_dir,
                          backend=backend, resume=resume)  # type: ignore[arg-type]
    typer.echo(f"backend={result.backend} steps={result.global_step} "
               f"seconds={result.train_seconds:.0f} adapter={result.adapter_dir}")


@app.command()
def evaluate(
    model: str = typer.Option(..., help="Model directory (base or merged) or hub id"),
    adapter: Path | None = typer.Option(None, help="LoRA adapter on top of --model"),
    split: str = typer.Option("test", help="train | validation | test"),
    data_dir: Path | None = DataOpt,
    engine: str = typer.Option("auto", help="auto | vllm | transformers"),
    template: str | None = typer.Option(None, help="Prompt template (default: the model's)"),
    limit: int | None = typer.Option(None, help="Balanced subset of this many papers"),
    seed: int = typer.Option(42),
    out: Path | None = typer.Option(None, help="Write the full result (with predictions) here"),
) -> None:
    """Score a split by the label-token probabilities (one forward pass per paper)."""
    import json

    from training.evaluate import evaluate_split, headline

    result = evaluate_split(model, data_dir or _data_dir_default(), split, adapter, template,
                            engine, limit, seed)  # type: ignore[arg-type]
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
    typer.echo(json.dumps({**headline(result), "seconds": result["seconds"]}))


@app.command()
def merge(
    adapter: Path = typer.Option(..., help="Adapter directory written by finetune"),
    out: Path = typer.Option(..., help="Merged model directory to write"),
    recipe_path: Path | None = RecipeOpt,
    overrides: list[str] | None = SetOpt,
    base: str | None = typer.Option(None, help="Base model (default: the recipe's)"),
    data_dir: Path | None = DataOpt,
    models_dir: Path = ModelsDirOpt,
    before: Path | None = typer.Option(None, help="evaluate --out JSON of the base model"),
    after: Path | None = typer.Option(None, help="evaluate --out JSON of the tuned model"),
    name: str = typer.Option(SERVED_NAME, help="Model name in the manifest"),
    version: str | None = typer.Option(None, help="Version (default: a UTC timestamp)"),
) -> None:
    """Merge the adapter into bf16 base weights; write tokenizer, prompt frame, manifest."""
    import json

    from model_contract.manifest import write_manifest
    from training.base_model import resolve_base_model
    from training.evaluate import headline
    from training.merge import build_manifest, merge_adapter

    recipe = _recipe(recipe_path, overrides)
    base_model = base or recipe.base_model
    merge_adapter(resolve_base_model(base_model, models_dir), adapter, out)
    metrics = {tag: headline(json.loads(path.read_text())) if path else {}
               for tag, path in (("before", before), ("after", after))}
    manifest = build_manifest(recipe.with_overrides({"base_model": base_model}),
                              data_dir or _data_dir_default(), metrics, name, version)
    typer.echo(write_manifest(out, manifest))


@app.command()
def report(run_dir: Path = typer.Argument(..., help="A run directory (models/runs/<run>)")) -> None:
    """(Re)write report.md and the figures of a run."""
    from training.report import write_report

    typer.echo(write_report(run_dir))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def run(
    ctx: typer.Context,
    models: list[str] | None = typer.Option(
        None, "--models", help="Base models: --models A B (default: the recipe's)"),
    recipe_path: Path | None = RecipeOpt,
    overrides: list[str] | None = SetOpt,
    data_dir: Path | None = DataOpt,
    models_dir: Path = ModelsDirOpt,
    backend: str = typer.Option("auto", help="auto | unsloth | peft"),
    engine: str = typer.Option("auto", help="Scoring engine: auto | vllm | transformers"),
) -> None:
    """base -> evaluate -> fine-tune -> merge -> evaluate -> report, per base model; points
    models/latest at the newest merged model."""
    import shlex
    import sys
    import time

    from training.run import run_many

    start = time.perf_counter()
    recipe = _recipe(recipe_path, overrides)
    bases = [*(models or []), *(a for a in ctx.args if not a.startswith("-"))]
    command = "python -m training " + shlex.join(sys.argv[1:])
    runs = run_many(bases or [recipe.base_model], recipe, data_dir or _data_dir_default(),
                    models_dir, backend=backend, engine=engine, command=command)
    for r in runs:
        a = r["after"]
        typer.echo(f"{r['base_model']}: accuracy {r['before']['accuracy']:.3f} -> "
                   f"{a['accuracy']:.3f}, ECE {a['ece']:.3f}, wall {r['total_seconds']:.0f} s, "
                   f"report {Path(r['merged_dir']).parent / 'report.md'}")
    typer.echo(f"total wall time: {time.perf_counter() - start:.0f} s; "
               f"{models_dir / 'latest'} -> {runs[-1]['merged_dir']}")


def _register_publish() -> None:
    from model_registry.cli import publish_command

    app.command("publish", help="Upload a merged model directory to s3://BUCKET/models/NAME/"
                "VERSION/ with sha256 checksums; refuses to overwrite a version.")(publish_command)


_register_publish()
