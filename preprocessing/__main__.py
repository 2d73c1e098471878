"""python -m preprocessing: raw paper files -> clean, split parquet dataset + summary.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

from preprocessing.pipeline import run
from preprocessing.settings import PreprocessSettings

app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def main(
    data_dir: Path = typer.Option(None, help="Folder with Cancer/*.txt and Non-Cancer/*.txt "
                                  "(default: ../shared/data/Dataset; env PREP_DATA_DIR)"),
    out_dir: Path = typer.Option(None, help="Output folder for train/validation/test.parquet "
                                 "and summary.json (default: data/processed)"),
    seed: int = typer.Option(None, help="Seed of the stratified split (default: 42)"),
    val_frac: float = typer.Option(None, help="Share of each label for validation (default: 0.1)"),
    test_frac: float = typer.Option(None, help="Share of each label for test (default: 0.2)"),
    tokenizer_dir: Path = typer.Option(None, help="Model directory whose tokenizer measures "
                                       "token lengths (default: the base model, if built)"),
) -> None:
    """Parse every paper (whole multi-line abstracts), report files that cannot be parsed,
    drop empties and duplicates, split stratified by label, write parquet and a summary."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    given = dict(data_dir=data_dir, out_dir=out_dir, seed=seed, val_frac=val_frac,
                 test_frac=test_frac, tokenizer_dir=tokenizer_dir)
    settings = PreprocessSettings(**{k: v for k, v in given.items() if v is not None})
    if settings.tokenizer_dir is None:
        base = Path("models/base/smollm2-135m-instruct")
        settings.tokenizer_dir = base if base.exists() else None
    summary = run(settings)
    counts = summary["counts"]
    typer.echo(json.dumps({"papers": summary["papers"], "counts": counts,
                           "unparsed": len(summary["unparsed"]),
                           "fingerprint": summary["fingerprint"]}, indent=2))
    typer.echo(f"wrote {settings.out_dir}")


if __name__ == "__main__":
    app()
