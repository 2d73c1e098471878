"""python -m preprocessing: raw paper files -> clean, split parquet dataset + summary.json."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from commandline.options import option, settings_from
from preprocessing.pipeline import run
from preprocessing.settings import PreprocessSettings

app = typer.Typer(add_completion=False, help=__doc__)
S = PreprocessSettings


@app.command()
def main(
    source: Annotated[list[str] | None, option(S, "sources", "--source")] = None,
    out_dir: Annotated[Path | None, option(S, "out_dir")] = None,
    seed: Annotated[int | None, option(S, "seed")] = None,
    val_frac: Annotated[float | None, option(S, "val_frac")] = None,
    test_frac: Annotated[float | None, option(S, "test_frac")] = None,
) -> None:
    """Parse every paper of each labelled source (whole multi-line abstracts), report files
    that cannot be parsed, drop empties and duplicates, split each source stratified by label,
    write parquet and a summary. Repeat --source for several sources, e.g.
    `--source assignment --source mine=/data/my-labelled-papers`."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    settings = settings_from(S, sources=source or None, out_dir=out_dir, seed=seed,
                             val_frac=val_frac, test_frac=test_frac)
    try:
        summary = run(settings)
    except (ValueError, FileNotFoundError) as e:
        raise typer.BadParameter(str(e), param_hint="--source") from None
    typer.echo(json.dumps({"papers": summary["papers"], "counts": summary["counts"],
                           "sources": {k: v["counts"] for k, v in summary["sources"].items()},
                           "unparsed": len(summary["unparsed"]),
                           "fingerprint": summary["fingerprint"]}, indent=2))
    typer.echo(f"wrote {settings.out_dir}")
