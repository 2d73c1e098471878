"""python -m training: base model, fine-tune, evaluate, merge, report, publish."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)


@app.callback()
def _setup() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


@app.command("base-model")
def base_model(
    model: str = typer.Option("embedded:smollm2-135m-instruct",
                              help="'embedded:smollm2-135m-instruct', an HF directory or hub id"),
    models_dir: Path = typer.Option(Path("models"), help="Where materialised models live"),
) -> None:
    """Materialise the base model as an HF safetensors directory (cached: a second call is
    instant) and print its path."""
    from training.base_model import resolve_base_model

    typer.echo(resolve_base_model(model, models_dir))
